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
        assert torch.equal(feats[i, :n], single[0, :n]), f"utterance {i}: max difference {(feats[i, :n] - single[0, :n]).abs().max()}"


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
