"""Log-Mel against Kaldi (kaldi-native-fbank), batching, and global normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechrq.data.corpus import load_cuts
from speechrq.features import FeatureNormalizer, FeatureStats, LogMel, compute_stats, lengths_to_padding_mask, num_frames
from speechrq.errors import SpeechrqError


def _kaldi_fbank(audio: np.ndarray) -> np.ndarray:
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = False
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = 80
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = -400.0
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, (audio * 32768.0).tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


@pytest.fixture(scope="module")
def utterances(tiny_corpus):
    return [c.load_audio()[0] for c in list(load_cuts(tiny_corpus, "dev"))[:4]]


def test_logmel_matches_kaldi(utterances):
    logmel = LogMel()
    for audio in utterances:
        ours, lens = logmel(torch.from_numpy(audio)[None])
        ref = _kaldi_fbank(audio)
        assert ours.shape[1] == ref.shape[0] == int(lens[0]) == num_frames(len(audio))
        # Kaldi works on int16-scaled samples: log energies differ by a constant.
        a = ours[0].numpy().ravel()
        b = ref.ravel() - 2 * np.log(32768.0)
        corr = np.corrcoef(a, b)[0, 1]
        assert corr > 0.999, corr
        assert np.median(np.abs(a - b)) < 0.05


def test_batched_equals_one_by_one(utterances):
    logmel = LogMel()
    lens = torch.tensor([len(a) for a in utterances])
    batch = torch.zeros(len(utterances), int(lens.max()))
    for i, a in enumerate(utterances):
        batch[i, : len(a)] = torch.from_numpy(a)
    feats, flens = logmel(batch, lens)
    for i, a in enumerate(utterances):
        single, slen = logmel(torch.from_numpy(a)[None])
        n = int(slen[0])
        assert int(flens[i]) == n
        # all but the last frame, which sees padding zeros instead of Kaldi's reflection
        torch.testing.assert_close(feats[i, : n - 1], single[0, : n - 1], atol=1e-4, rtol=1e-4)
        assert (feats[i, n:] == 0).all()


def test_an_utterance_gets_the_same_features_alone_and_batched(utterances):
    # every frame, the last ones too: a shorter utterance's end is reflected as it is alone (Kaldi's rule)
    logmel = LogMel()
    lens = torch.tensor([len(a) for a in utterances] + [561])  # and one of a single encoder frame
    extra = np.random.default_rng(0).standard_normal(561).astype(np.float32) * 0.1
    batch = torch.zeros(len(lens), int(lens.max()))
    for i, a in enumerate([*utterances, extra]):
        batch[i, : len(a)] = torch.from_numpy(a)
    feats, flens = logmel(batch, lens)
    for i, a in enumerate([*utterances, extra]):
        single, slen = logmel(torch.from_numpy(a)[None])
        n = int(slen[0])
        assert int(flens[i]) == n
        # to float rounding (LogMel's docstring): the batched FFT and Mel matmul may sum in another order by batch shape
        # (1.9e-6 on one Xeon, 0 on others); a shorter utterance's end reflected wrong differs by whole units
        torch.testing.assert_close(feats[i, :n], single[0, :n], rtol=1e-6, atol=1e-5, msg=lambda m: f"utterance {i}: {m}")


def test_global_stats_and_normaliser(tiny_corpus, tmp_path):
    cuts = load_cuts(tiny_corpus, "train")
    stats = compute_stats(cuts, max_utterances=30, seed=0, progress=False)
    assert stats.utterances == 30 and len(stats.mean) == 80
    again = compute_stats(cuts, max_utterances=30, seed=0, progress=False)
    assert again.mean == stats.mean, "same seed, same sample, same statistics"
    stats.save(tmp_path / "stats.json")
    loaded = FeatureStats.load(tmp_path / "stats.json")
    assert loaded == stats

    norm = FeatureNormalizer.from_stats(loaded)
    assert set(norm.state_dict()) == {"mean", "std"}, "saved with any model that holds it"
    logmel = LogMel()
    audio = torch.from_numpy(next(iter(cuts)).load_audio())
    feats, lens = logmel(audio)
    padded = torch.cat([feats, torch.zeros(1, 7, 80)], dim=1)
    out = norm(padded, lens)
    assert (out[0, -7:] == 0).all()
    torch.testing.assert_close(out[0, :-7], (feats[0] - norm.mean) / norm.std)


def test_normalised_training_frames_are_standardised(tiny_corpus):
    cuts = load_cuts(tiny_corpus, "train")
    stats = compute_stats(cuts, max_utterances=len(cuts), progress=False)
    norm, logmel = FeatureNormalizer.from_stats(stats), LogMel()
    frames = []
    for cut in cuts:
        feats, lens = logmel(torch.from_numpy(cut.load_audio()))
        frames.append(norm(feats)[0])
    x = torch.cat(frames)
    torch.testing.assert_close(x.mean(0), torch.zeros(80), atol=1e-3, rtol=0)
    torch.testing.assert_close(x.std(0), torch.ones(80), atol=1e-2, rtol=0)


def test_bad_stats_file_is_a_one_line_error(tmp_path):
    (tmp_path / "s.json").write_text('{"mean": [0.0]}')
    with pytest.raises(SpeechrqError, match="not a feature statistics file"):
        FeatureStats.load(tmp_path / "s.json")
    with pytest.raises(SpeechrqError, match="no such file"):
        FeatureStats.load(tmp_path / "missing.json")


def test_padding_mask():
    mask = lengths_to_padding_mask(torch.tensor([3, 1]), 4)
    assert mask.tolist() == [[False, False, False, True], [False, True, True, True]]


# ---------------------------------------------------------------- numbers entering: statistics refuse what is not finite


def _stats_json(path, mean=0.0, std=1.0, bin_=3):
    """A statistics file of 80 bins whose bin ``bin_`` has ``mean``/``std`` (written as JSON's NaN/Infinity tokens)."""
    import json

    means, stds = [0.5] * 80, [1.0] * 80
    means[bin_], stds[bin_] = mean, std
    path.write_text(json.dumps({"kind": "logmel-global-meanvar", "mean": means, "std": stds, "frames": 100, "utterances": 2}))
    return path


@pytest.mark.parametrize("mean, std, word", [
    (float("nan"), 1.0, "mean of bin 3 is nan"), (float("inf"), 1.0, "mean of bin 3 is inf"), (0.0, float("nan"), "std of bin 3 is nan"),
    (0.0, float("-inf"), "std of bin 3 is -inf"), (0.0, 0.0, "std of bin 3 is 0"), (0.0, -2.0, "std of bin 3 is -2"),
    (0.0, 1e-12, "std of bin 3 is 1e-12"), (1e30, 1.0, "mean of bin 3 is 1e+30"), (0.0, "nan", "std of bin 3 is nan")])
def test_a_statistics_file_with_non_finite_or_absurd_numbers_is_refused_naming_it(tmp_path, mean, std, word):
    path = _stats_json(tmp_path / "feature_stats.json", mean, std)
    with pytest.raises(SpeechrqError) as e:
        FeatureStats.load(path)
    assert str(e.value).startswith(f"{path}: {word}") and "\n" not in str(e.value), str(e.value)


def test_statistics_that_are_not_finite_are_never_written(tmp_path):
    FeatureStats.load(_stats_json(tmp_path / "ok.json"))  # the helper writes valid files otherwise
    bad = FeatureStats(mean=[0.0, float("nan")], std=[1.0, 1.0], frames=10, utterances=1)
    with pytest.raises(SpeechrqError, match=r"bad\.json: refusing to write feature statistics: mean of bin 1 is nan"):
        bad.save(tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def _folder_corpus(tmp_path, n=4):
    import soundfile as sf

    from speechrq.data.recipes import import_corpus

    root = tmp_path / "src"
    root.mkdir()
    g = np.random.default_rng(0)
    for i in range(n):
        sf.write(root / f"utt{i}.wav", (0.1 * g.standard_normal(16000)).astype(np.float32), 16000, subtype="FLOAT")
    import_corpus("folder", root, tmp_path / "corpus", workers=1, progress=False)
    return root, load_cuts(tmp_path / "corpus", "train")


def test_statistics_skip_audio_that_turned_absurd_and_stay_finite(tmp_path, caplog):
    """Issue 21: `features stats` wrote NaN mean and std for a corpus holding white noise x 1e20, without a word."""
    import soundfile as sf

    root, cuts = _folder_corpus(tmp_path)
    sf.write(root / "utt2.wav", np.random.default_rng(1).standard_normal(16000) * 1e20, 16000, subtype="FLOAT")
    stats = compute_stats(cuts, progress=False)
    assert stats.utterances == 3 and stats.problem() is None
    assert all(np.isfinite(stats.mean)) and all(np.isfinite(stats.std)) and max(stats.mean) < 10
    assert any("utt2.wav" in r.getMessage() and "absurd amplitude" in r.getMessage() for r in caplog.records)


def test_non_finite_log_mel_is_named_with_its_utterance_file_and_peak(tmp_path):
    from speechrq.features import check_logmel

    _, cuts = _folder_corpus(tmp_path, n=3)
    cuts = list(cuts)
    audio = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 16000)).astype(np.float32)) * 0.1
    audio[1] *= 1e21  # log-Mel overflows float32 past about 1e12
    lens = torch.full((3,), 16000)
    feats, flens = LogMel()(audio, lens)
    assert not torch.isfinite(feats[1]).all() and torch.isfinite(feats[[0, 2]]).all()
    with pytest.raises(SpeechrqError) as e:
        check_logmel(feats, flens, audio, cuts, where="feature statistics: ")
    msg = str(e.value)
    peak = float(audio[1].abs().max())
    assert msg.startswith(f"feature statistics: non-finite log-Mel from utterance {cuts[1].id} ({cuts[1].recording.sources[0].source}), "
                          f"whose audio peaks at {peak:.3g}"), msg
    assert cuts[0].id not in msg and cuts[2].id not in msg and "at most at 1000" in msg
    check_logmel(feats[[0, 2]], flens[[0, 2]], audio[[0, 2]], [cuts[0], cuts[2]])  # the others pass
    # NaN only in the padding of a shorter utterance is no fault: padding is never looked at
    padded = torch.cat([feats[[0]], torch.full((1, 5, 80), float("nan"))], dim=1)
    check_logmel(padded, flens[[0]], audio[[0]], [cuts[0]])


def test_moments_refuse_rows_that_are_not_finite():
    from speechrq.features import Moments

    m = Moments()
    m.add(torch.ones(4, 3))
    m.add(torch.tensor([[0.0, float("inf"), 1.0]]))
    with pytest.raises(SpeechrqError, match="non-finite sums in dimension 1 "):
        m.mean_std()


def test_features_stats_reads_the_corpus_s_own_training_split_by_default(tiny_corpus, tmp_path, capsys):
    """Defaults follow what the input holds: a corpus whose training split is `train-clean-100` needs no --split;
    one with two training splits, or none, is one line naming them."""
    import json
    import shutil

    from speechrq.cli import main

    ls = tmp_path / "ls"
    ls.mkdir()
    shutil.copy(tiny_corpus / "cuts_train.jsonl", ls / "cuts_train-clean-100.jsonl")
    shutil.copy(tiny_corpus / "cuts_dev.jsonl", ls / "cuts_dev-clean.jsonl")
    assert main(["features", "stats", str(ls), "--max-utterances", "5", "--quiet"]) == 0
    assert json.loads((ls / "feature_stats.json").read_text())["source"]["split"] == "train-clean-100"
    shutil.copy(tiny_corpus / "cuts_train.jsonl", ls / "cuts_train-other-500.jsonl")
    capsys.readouterr()
    assert main(["features", "stats", str(ls), "--out", str(tmp_path / "s.json"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "several train splits (train-clean-100, train-other-500)" in err


def test_each_utterance_s_end_is_reflected_into_its_padding_as_kaldi_does_per_sample():
    """Sample ``n + j`` of an utterance of ``n`` samples becomes sample ``n - 1 - j`` up to its last frame's end (index
    0 where the utterance is shorter than that), and nothing before its end changes: against a per-sample loop, over
    lengths equal, far apart, shorter than one window, and one sample."""
    from speechrq.features import FRAME_LENGTH
    from speechrq.frames import FRAME_SHIFT

    mel = LogMel()
    hop, window = int(round(FRAME_SHIFT * 16000)), int(round(FRAME_LENGTH * 16000))
    g = torch.Generator().manual_seed(0)
    for lens in ([4000, 4000], [16000, 3210, 9999], [300, 5000], [1, 800, 801]):
        lens = torch.tensor(lens)
        wav = torch.randn(len(lens), int(lens.max()), generator=g)
        wav = wav.masked_fill(torch.arange(wav.shape[1])[None] >= lens[:, None], 0.0)
        got = mel._reflect_ends(wav, lens)
        for i, n in enumerate(lens.tolist()):
            end = (int(num_frames(torch.tensor(n), 16000)) - 1) * hop + window - (window - hop) // 2
            assert got.shape[1] >= end
            want = torch.zeros(got.shape[1])
            want[: wav.shape[1]] = wav[i]
            for k in range(n, end):
                want[k] = wav[i, max(2 * n - 1 - k, 0)]
            assert torch.equal(got[i], want), (lens.tolist(), i)
