"""Discrete-unit ASR: embeddings, E-Branchformer, CTC prefix scores, beam search, training with exact resume, decoding."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import kill_after_first_checkpoint, tiny_pretrain_config, torch_threads
from speechrq.asr.model import ASR_PRESETS, UnitEmbedding, asr_model
from speechrq.asr.search import CTCPrefixScorer, attention_greedy, joint_beam_search
from speechrq.checkpoint import list_checkpoints, load_model_state, save_checkpoint, step_dir
from speechrq.config import config_from_dict, config_to_dict
from speechrq.features import FeatureStats
from speechrq.training.engine import read_metrics


@pytest.fixture(scope="module")
def units(pretrain_corpus, tmp_path_factory):
    """An untrained tiny encoder's layer 1 as k-means (k = 24, with unit BPE) and as 4-stream PQ units."""
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model
    from speechrq.units import QuantizerSpec
    from speechrq.units.run import encode_units, fit_units

    root = tmp_path_factory.mktemp("asr_units")
    torch.manual_seed(0)
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, root / "run"))
    model = build_model(cfg, FeatureStats.load(pretrain_corpus / "feature_stats.json"))
    ckpt = save_checkpoint(step_dir(root / "run", 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})
    out = {}
    for name, spec in (("km", QuantizerSpec(k=24, niter=5)), ("pq", QuantizerSpec(kind="pq", k=16, num_subspaces=4, niter=5))):
        fit_units(ckpt, 1, pretrain_corpus, root / name, spec, frames=4000, progress=False)
        encode_units(root / name, pretrain_corpus, ["train", "dev"], root / name / "enc", bpe=40 if name == "km" else None, progress=False)
        out[name] = root / name / "enc"
    return out


def write_config(path, units_dir, out_dir, input_kind="units", **optim):
    cfg = {"out_dir": str(out_dir), "data": {"units": str(units_dir), "input": input_kind, "max_duration": 20.0, "num_buckets": 4,
                                             "vocab_size": 40},
           "model": {"preset": "tiny"}, "optim": {"lr": 2e-3, "warmup_steps": 2, "max_steps": 12} | optim,
           "train": {"seed": 0, "device": "cpu", "precision": "fp32", "log_every": 1, "checkpoint_every": 4, "keep_last": 10}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "speechrq", *args], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_stream_embeddings_are_averaged_or_weighted_by_a_learned_softmax():
    emb = UnitEmbedding(3, 5, 4)
    ids = torch.tensor([[[1, 2, 4], [0, 0, 0]]])
    tables = emb.tables.weight.view(3, 5, 4)
    want = torch.stack([tables[m, ids[0, :, m]] for m in range(3)]).mean(0)
    torch.testing.assert_close(emb(ids)[0], want)
    learned = UnitEmbedding(3, 5, 4, "learned")
    with torch.no_grad():
        learned.stream_logits.copy_(torch.tensor([0.0, 1.0, 2.0]))
    w = torch.tensor([0.0, 1.0, 2.0]).softmax(0)
    tables = learned.tables.weight.view(3, 5, 4)
    want = sum(w[m] * tables[m, ids[0, :, m]] for m in range(3))
    torch.testing.assert_close(learned(ids)[0], want)


def test_an_utterance_decodes_the_same_alone_and_padded_in_a_batch():
    torch.manual_seed(0)
    model = asr_model(ASR_PRESETS["tiny"], vocab=12, input_kind="units", num_streams=2, unit_vocab=9).eval()
    x = torch.randint(0, 9, (2, 20, 2))
    lens = torch.tensor([20, 11])
    both = model.encode(x, lens)
    alone = model.encode(x[1:, :11], lens[1:])
    torch.testing.assert_close(both[1, :11], alone[0], atol=1e-5, rtol=1e-4)
    assert joint_beam_search(model, both, lens, beam=3)[1] == joint_beam_search(model, alone, lens[1:], beam=3)[0]


def test_ctc_prefix_scores_equal_brute_force_sums_over_alignments():
    torch.manual_seed(1)
    logp = torch.randn(1, 5, 4).log_softmax(-1)  # blank + 3 tokens, 5 frames

    def prefix_prob(prefix, whole=False):
        total = -math.inf
        for path in itertools.product(range(4), repeat=5):
            out, prev = [], None
            for c in path:
                if c != 0 and c != prev:
                    out.append(c - 1)
                prev = c
            if (out == prefix) if whole else (out[: len(prefix)] == prefix):
                total = float(np.logaddexp(total, sum(float(logp[0, i, c]) for i, c in enumerate(path))))
        return total

    sc = CTCPrefixScorer(logp, torch.tensor([5]))
    psi, states = sc.extend(sc.initial(), torch.tensor([-1]), torch.tensor([True]), torch.tensor([[0, 1, 2]]))
    assert psi[0].tolist() == pytest.approx([prefix_prob([c]) for c in (0, 1, 2)], abs=1e-4)
    psi2, states2 = sc.extend(states[:, 1], torch.tensor([1]), torch.tensor([False]), torch.tensor([[1, 2]]))  # after [1]: repeat, other
    assert psi2[0].tolist() == pytest.approx([prefix_prob([1, 1]), prefix_prob([1, 2])], abs=1e-4)
    assert float(CTCPrefixScorer.end(states[:, 1])[0]) == pytest.approx(prefix_prob([1], whole=True), abs=1e-4)


def test_beam_one_without_ctc_is_greedy_attention_decoding():
    torch.manual_seed(2)
    model = asr_model(ASR_PRESETS["tiny"], vocab=15, input_kind="units", num_streams=3, unit_vocab=20).eval()
    x, lens = torch.randint(0, 20, (4, 25, 3)), torch.tensor([25, 18, 9, 3])
    enc = model.encode(x, lens)
    assert joint_beam_search(model, enc, lens, beam=1, ctc_weight=0.0) == attention_greedy(model, enc, lens)


@pytest.mark.parametrize("kind,which", [("units", "pq"), ("dedup", "km"), ("bpe", "km"), ("continuous", "km")])
def test_every_input_kind_trains_decodes_and_transcribes(kind, which, units, tmp_path):
    from speechrq.asr.decode import Recognizer, decode_split, read_audio
    from speechrq.asr.data import UnitSource

    cfg = write_config(tmp_path / "c.yaml", units[which], tmp_path / "run", kind, max_steps=8)
    r = cli("asr", "train", str(cfg), "--quiet")
    assert r.returncode == 0, r.stderr
    losses = [m["loss"] for m in read_metrics(tmp_path / "run")]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    rec = Recognizer(tmp_path / "run")
    assert rec.kind == kind and rec.spec["num_streams"] == (4 if which == "pq" else 1)
    dev = list(UnitSource(units[which]).cuts("dev"))[:4]
    for mode in ("ctc", "attention", "joint"):
        out = decode_split(rec, dev, mode, beam=2, progress=False)
        assert out["utterances"] == 4 and all(isinstance(h, str) for h in out["hyps"]) and out["cer"] >= 0
    audio = read_audio(dev[0].recording.sources[0].source)
    assert isinstance(rec.transcribe([audio], beam=2)[0], str)


@pytest.mark.slow
def test_kill_and_resume_gives_the_uninterrupted_losses(units, tmp_path):
    steps = 16
    ref = write_config(tmp_path / "ref.yaml", units["pq"], tmp_path / "ref", max_steps=steps)
    assert cli("asr", "train", str(ref), "--quiet").returncode == 0
    cfg = write_config(tmp_path / "run.yaml", units["pq"], tmp_path / "run", max_steps=steps)
    ckpts = tmp_path / "run" / "checkpoints"
    kill_after_first_checkpoint(["asr", "train", str(cfg), "--quiet"], ckpts)
    saved = list_checkpoints(ckpts)
    assert saved and saved[-1][0] < steps, "the run ended before it could be killed"
    r = cli("asr", "train", str(cfg), "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    a = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "ref")}
    b = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "run")}
    assert sorted(b) == list(range(1, steps + 1)) and b == a  # bit for bit, records past the checkpoint replaced
    x = load_model_state(tmp_path / "ref" / "checkpoints" / f"step_{steps:08d}")
    y = load_model_state(tmp_path / "run" / "checkpoints" / f"step_{steps:08d}")
    assert all(torch.equal(x[k], y[k]) for k in x)
    # units of another quantizer are refused, not decoded into nonsense
    r = cli("asr", "decode", str(tmp_path / "ref"), "--units", str(units["km"]), "--splits", "dev", "--quiet")
    assert r.returncode == 2 and "not from the quantizer the model was trained on" in r.stderr, r.stderr


def test_asr_user_mistakes_are_one_line_errors(units, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", units["pq"], tmp_path / "run", "dedup")
    r = cli("asr", "train", str(cfg), "--quiet")
    assert r.returncode == 2 and "single-stream" in r.stderr and "Traceback" not in r.stderr, r.stderr
    cfg = write_config(tmp_path / "d.yaml", tmp_path / "nowhere", tmp_path / "run2")
    r = cli("asr", "train", str(cfg), "--quiet")
    assert r.returncode == 2 and "not a `speechrq units encode` output" in r.stderr, r.stderr
    r = cli("asr", "transcribe", str(tmp_path), str(tmp_path / "missing.wav"))
    assert r.returncode == 2 and "missing.wav" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_transcribe_turns_wav_files_into_their_transcripts(units, tmp_path):
    """The whole chain from raw audio, on utterances whose transcripts are known.

    The model is trained until it has memorised six utterances, so decoding their units from the
    manifest is near perfect; ``transcribe`` must get the same text from the wav files alone (the
    encoder layer, the quantizer, the model and the search run again). Bound: CER <= 10% over the six,
    which a chain that loses or shifts units (a wrong layer, quantizer or frame grid) does not meet.
    """
    import shutil

    from lhotse import CutSet

    from speechrq.asr.data import UnitSource
    from speechrq.asr.decode import Recognizer, decode_split
    from speechrq.text import error_rate, normalize_text

    src = units["km"]
    six = tmp_path / "six"
    six.mkdir()
    cuts = sorted(UnitSource(src).cuts("train"), key=lambda c: c.duration)[10:16]
    shutil.copy(src / "encode.json", six / "encode.json")  # the same quantizer and encoder
    CutSet.from_cuts(cuts).to_file(six / "cuts_train.jsonl.gz")
    cfg = write_config(tmp_path / "c.yaml", six, tmp_path / "run", "units", max_steps=150, warmup_steps=10)
    raw = yaml.safe_load(cfg.read_text())
    raw["data"] |= {"max_duration": 60.0, "num_buckets": 1, "vocab_size": 32}
    raw["train"]["checkpoint_every"] = 150
    cfg.write_text(yaml.safe_dump(raw))
    assert cli("asr", "train", str(cfg), "--quiet").returncode == 0
    refs = [normalize_text(c.supervisions[0].text) for c in cuts]
    from_units = decode_split(Recognizer(tmp_path / "run"), cuts, "joint", beam=4, progress=False)
    wavs = [c.recording.sources[0].source for c in cuts]
    r = cli("asr", "transcribe", str(tmp_path / "run"), *wavs, "--beam", "4")
    assert r.returncode == 0, r.stderr
    hyps = {line.split("\t")[0]: line.split("\t")[1] if "\t" in line else "" for line in r.stdout.splitlines()}
    from_audio = [hyps[w] for w in wavs]
    assert error_rate(refs, from_audio, "char") <= 10.0, (refs, from_audio)
    assert from_audio == [dict(zip(from_units["ids"], from_units["hyps"]))[c.id] for c in cuts]
    # a transcript that normalises to nothing is counted as not scored, never dropped without a word
    from lhotse.utils import fastcopy

    blank = [fastcopy(c, supervisions=[fastcopy(c.supervisions[0], text="¿ … !")]) if k == 2 else c for k, c in enumerate(cuts)]
    partial = decode_split(Recognizer(tmp_path / "run"), blank, "joint", beam=4, progress=False)
    assert partial["unscored"] == 1 and partial["utterances"] == 5 and cuts[2].id not in partial["ids"]
    assert from_units["unscored"] == 0


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_ddp_processes_follow_the_single_process_curve(units, tmp_path):
    steps = 4
    runs = {}
    for name, accum in (("single", 2), ("ddp", 1)):
        cfg = write_config(tmp_path / f"{name}.yaml", units["pq"], tmp_path / name, max_steps=steps, accum_steps=accum)
        raw = yaml.safe_load(cfg.read_text())
        raw["model"]["dropout"] = 0.0  # per-rank dropout streams differ by design; the rest must not
        cfg.write_text(yaml.safe_dump(raw))
        runs[name] = cfg
    assert cli("asr", "train", str(runs["single"]), "--quiet").returncode == 0
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "speechrq", "asr",
                        "train", str(runs["ddp"]), "--quiet"], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                       timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    a = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "single")}
    b = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "ddp")}
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    for s in a:
        assert b[s] == pytest.approx(a[s], rel=1e-4), (s, a[s], b[s])


def _ctc_nll(logp: torch.Tensor, target: list[int]) -> float:
    """-log P_ctc(target | x) by the alpha recursion over the extended label sequence (blank = class 0, token t = class t + 1),
    written out here as the reference for the model's CTC term."""
    ext = [0]
    for t in target:
        ext += [t + 1, 0]
    alpha = torch.full((len(ext),), -math.inf, dtype=torch.float64)
    lp = logp.double()
    alpha[0] = lp[0, 0]
    if len(ext) > 1:
        alpha[1] = lp[0, ext[1]]
    for i in range(1, lp.shape[0]):
        prev = alpha.clone()
        for s in range(len(ext)):
            terms = [prev[s]] + ([prev[s - 1]] if s >= 1 else [])
            if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2]:
                terms.append(prev[s - 2])
            alpha[s] = torch.logsumexp(torch.stack(terms), 0) + lp[i, ext[s]]
    return -float(torch.logsumexp(alpha[-2:], 0)) if len(ext) > 1 else -float(alpha[0])


def _smoothed_ce(logp: torch.Tensor, targets: list[int], eps: float) -> float:
    """Summed label-smoothed cross-entropy: per position ``-(1 - eps) log p(target) - eps * mean over classes log p(class)``."""
    return sum(-(1 - eps) * float(logp[j, y]) - eps * float(logp[j].mean()) for j, y in enumerate(targets))


@torch.no_grad()
def test_the_hybrid_loss_is_0_3_ctc_plus_0_7_smoothed_ce_per_utterance_whatever_the_batch():
    """Per utterance: 0.3 * (-log P_ctc(y | x)) + 0.7 * label-smoothed CE of ``<sos> y -> y <eos>`` summed over its tokens,
    computed here by hand; the batch loss is their mean over utterances, and padding (of the inputs and of the token
    matrix, filled with other ids) and the other utterances of the batch change nothing."""
    torch.manual_seed(3)
    vocab, unit_vocab = 7, 9
    model = asr_model(ASR_PRESETS["tiny"], vocab=vocab, input_kind="units", num_streams=2, unit_vocab=unit_vocab).eval()  # no dropout
    frame_lens, token_lens = [14, 9, 6], [5, 3, 1]
    x = torch.randint(0, unit_vocab, (3, 14, 2))
    tokens = torch.randint(0, vocab, (3, 5))  # beyond token_lens: other real ids, which must be ignored
    alone = []
    for i in range(3):
        n, u = frame_lens[i], token_lens[i]
        xi, yi = x[i:i + 1, :n], tokens[i, :u].tolist()
        res = model(xi, torch.tensor([n]), tokens[i:i + 1, :u], torch.tensor([u]))
        with torch.no_grad():
            enc = model.encode(xi, torch.tensor([n]))
            ctc = _ctc_nll(model.ctc_logp(enc)[0], yi)
            logits = model.decoder(torch.tensor([[vocab] + yi]), torch.tensor([u + 1]), enc, None)[0].float()
            ce = _smoothed_ce(logits.log_softmax(-1), yi + [vocab], 0.1)
        assert float(res.ctc) == pytest.approx(ctc, rel=1e-4)
        assert float(res.attention) == pytest.approx(ce, rel=1e-4)
        assert float(res.loss) == pytest.approx(0.3 * ctc + 0.7 * ce, rel=1e-4)
        assert res.tokens == u + 1
        alone.append((float(res.loss), float(res.ctc), float(res.attention)))
    batch = model(x, torch.tensor(frame_lens), tokens, torch.tensor(token_lens))
    assert float(batch.loss) == pytest.approx(np.mean([a[0] for a in alone]), rel=1e-4)
    assert float(batch.ctc) == pytest.approx(np.mean([a[1] for a in alone]), rel=1e-4)
    assert float(batch.attention) == pytest.approx(np.mean([a[2] for a in alone]), rel=1e-4)
    assert batch.tokens == sum(token_lens) + 3
    # another batch mate, longer than it: the first utterance's share is unchanged
    mate_x, mate_y = torch.randint(0, unit_vocab, (1, 20, 2)), torch.randint(0, vocab, (1, 8))
    pair_x = torch.cat([torch.cat([x[:1], torch.randint(0, unit_vocab, (1, 6, 2))], 1), mate_x])  # padded with other units
    pair_y = torch.cat([torch.cat([tokens[:1], torch.randint(0, vocab, (1, 3))], 1), mate_y])
    pair = model(pair_x, torch.tensor([14, 20]), pair_y, torch.tensor([5, 8]))
    mate = model(mate_x, torch.tensor([20]), mate_y, torch.tensor([8]))
    assert float(pair.loss) == pytest.approx((alone[0][0] + float(mate.loss)) / 2, rel=1e-4)


# ---------------------------------------------------------------- audio too short for the encoder, ids that break text (issue 21)


def _tones(directory, lengths: dict[str, int]) -> dict[str, str]:
    """``{name: path}`` of 16 kHz tone files of ``lengths`` samples (0 makes an empty file)."""
    import soundfile as sf

    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, n in lengths.items():
        paths[name] = str(directory / f"{name}.wav")
        sf.write(paths[name], (0.1 * np.sin(np.arange(n) / 5.0)).astype(np.float32), 16000)
    return paths


def test_transcribe_refuses_audio_too_short_for_the_encoder_naming_each_file(units, tmp_path):
    """A 20 ms file (320 samples) or an empty one ended in the front end's RuntimeError; beside a normal file it came out as
    an empty transcript. Now each file under the encoder's 560 samples is named in one line; 560 itself is transcribed."""
    from speechrq.asr.data import UnitSource

    cfg = write_config(tmp_path / "c.yaml", units["km"], tmp_path / "run", "dedup", max_steps=2)
    assert cli("asr", "train", str(cfg), "--quiet").returncode == 0
    normal = next(iter(UnitSource(units["km"]).cuts("dev"))).recording.sources[0].source
    wav = _tones(tmp_path / "wav", {"short": 320, "empty": 0, "one": 1, "under": 559, "exact": 560})
    run = str(tmp_path / "run")
    for short in (["short"], ["empty", "one", "under", "short"]):
        r = cli("asr", "transcribe", run, normal, *(wav[s] for s in short), "--beam", "2")
        assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("speechrq: error: too short to transcribe")
        assert "at least 560 samples (35 ms)" in r.stderr and normal not in r.stderr and wav["exact"] not in r.stderr
        for s in short:
            assert f"{wav[s]} ({ {'short': 320, 'empty': 0, 'one': 1, 'under': 559}[s]} samples)" in r.stderr, r.stderr
    r = cli("asr", "transcribe", run, normal, wav["exact"], "--beam", "2")
    assert r.returncode == 0, r.stderr
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == [normal, wav["exact"]]


def test_units_fit_and_encode_refuse_cuts_too_short_and_ids_that_break_kaldi_text(units, tmp_path):
    from lhotse import CutSet, Recording, RecordingSet
    from lhotse.utils import fastcopy

    from speechrq.errors import SpeechrqError
    from speechrq.units import QuantizerSpec
    from speechrq.units.quantizers import UnitQuantizer
    from speechrq.units.run import encode_units, fit_units

    quantizer = units["km"].parent
    encoder = UnitQuantizer.load(quantizer).source["encoder"]

    def corpus(name: str, lengths: dict[str, int], ids: dict[str, str] | None = None):
        paths = _tones(tmp_path / name / "audio", lengths)
        recs = RecordingSet.from_recordings(Recording.from_file(p, recording_id=k) for k, p in paths.items())
        cuts = [fastcopy(c, id=(ids or {}).get(c.recording.id, c.recording.id)) for c in CutSet.from_manifests(recordings=recs)]
        CutSet.from_cuts(cuts).to_file(tmp_path / name / "cuts_train.jsonl.gz")
        return tmp_path / name, paths

    short, paths = corpus("short", {"long": 16000, "blip": 320, "exact": 560})
    with pytest.raises(SpeechrqError) as e:
        encode_units(quantizer, short, ["train"], tmp_path / "enc", progress=False)
    assert "\n" not in str(e.value) and f"blip ({paths['blip']}): 320 samples" in str(e.value) and "exact" not in str(e.value)
    assert not list((tmp_path / "enc").rglob("*.npy"))  # refused before anything was encoded
    with pytest.raises(SpeechrqError, match=r"1 of 3 utterance\(s\) too short for encoder layer 1, which reads at least 560 samples"):
        fit_units(encoder, 1, short, tmp_path / "fit", QuantizerSpec(k=4, niter=2), frames=20, progress=False)
    # a hand-made manifest's ids with spaces: Kaldi text would read 'speaker' as the id of both lines
    spaced, _ = corpus("spaced", {"a": 16000, "b": 16000}, ids={"a": "speaker one", "b": "speaker two"})
    with pytest.raises(SpeechrqError) as e:
        encode_units(quantizer, spaced, ["train"], tmp_path / "enc2", progress=False)
    assert "\n" not in str(e.value) and "'speaker one' holds whitespace" in str(e.value) and "units_train.txt" in str(e.value)
    assert not (tmp_path / "enc2" / "units_train.txt").exists()


@pytest.fixture
def one_thread():
    """Training in this process on one thread: on a shared 2-core machine many threads are ten times slower."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def dev_units(tiny_corpus, tmp_path_factory):
    """4-stream PQ units of the dev split only (24 utterances) from the small fixture checkpoint: made in seconds."""
    from speechrq.units import QuantizerSpec
    from speechrq.units.run import encode_units, fit_units

    root = tmp_path_factory.mktemp("dev_units")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit_units(Path(__file__).parent / "fixtures" / "checkpoint_v0", 1, tiny_corpus, root / "pq",
                  QuantizerSpec(kind="pq", k=16, num_subspaces=4, niter=3), frames=600, split="dev", progress=False)
        encode_units(root / "pq", tiny_corpus, ["dev"], root / "enc", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "enc"


def _train_config(units_dir, out_dir, tmp_path, name, **train):
    """A tiny ASR run on ``units_dir``'s dev split, a checkpoint every step."""
    from speechrq.asr.config import ASRConfig
    from speechrq.config import load_config

    path = write_config(tmp_path / f"{name}.yaml", units_dir, out_dir, max_steps=train.pop("max_steps"))
    raw = yaml.safe_load(path.read_text())
    raw["train"] |= {"checkpoint_every": 1, "keep_last": 20} | train
    raw["data"] |= {"train_split": "dev", "max_duration": 8.0}  # short steps
    path.write_text(yaml.safe_dump(raw))
    return path, load_config(ASRConfig, path)


def _poison_steps(monkeypatch, steps: set[int]):
    """The loss of the given micro-batches (1-based; one per step here) becomes NaN: the real model and trainer otherwise."""
    from speechrq.asr.model import DiscreteASR

    forward, calls = DiscreteASR.forward, [0]

    def poisoned(self, *args, **kwargs):
        calls[0] += 1
        res = forward(self, *args, **kwargs)
        if calls[0] in steps:
            res.loss = res.loss * float("nan")
        return res

    monkeypatch.setattr(DiscreteASR, "forward", poisoned)


def _same_state(a, b) -> bool:
    from speechrq.checkpoint import load_trainer_state

    wa, wb = load_model_state(a), load_model_state(b)
    oa, ob = load_trainer_state(a)["optimizer"]["state"], load_trainer_state(b)["optimizer"]["state"]
    return (wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
            and oa.keys() == ob.keys() and all(torch.equal(oa[p][k], ob[p][k]) for p in oa for k in oa[p] if torch.is_tensor(oa[p][k])))


def test_non_finite_steps_are_skipped_leaving_weights_and_optimizer_then_the_run_stops(dev_units, tmp_path, monkeypatch, one_thread):
    """Steps 3 and 4 non-finite (fewer in a row than train.max_nonfinite = 3): neither updates the weights nor AdamW's
    moments (step 4's checkpoint is step 2's), and training goes on from there. Steps 6, 7 and 8 non-finite: the run
    stops at step 8 in one line, with a checkpoint of the last good update's weights (step 5's)."""
    from speechrq.asr.trainer import train_asr
    from speechrq.checkpoint import read_meta
    from speechrq.errors import SpeechrqError

    _, cfg = _train_config(dev_units, tmp_path / "run", tmp_path, "skip", max_steps=12, max_nonfinite=3)
    _poison_steps(monkeypatch, {3, 4, 6, 7, 8})
    with pytest.raises(SpeechrqError, match="non-finite for 3 steps in a row") as e:
        train_asr(cfg, progress=False)
    assert "\n" not in str(e.value)
    ckpt = lambda s: tmp_path / "run" / "checkpoints" / f"step_{s:08d}"
    assert _same_state(ckpt(2), ckpt(4))
    assert not _same_state(ckpt(1), ckpt(2)) and not _same_state(ckpt(4), ckpt(5))
    saved = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert saved[-1][0] == 8 and read_meta(saved[-1][1])["reason"] == "non-finite"
    assert _same_state(ckpt(5), ckpt(8))
    weights = load_model_state(ckpt(8))
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    losses = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "run")}
    assert sorted(losses) == list(range(1, 9))
    assert [math.isfinite(losses[s]) for s in range(1, 9)] == [True, True, False, False, True, False, False, False]


def test_resuming_with_a_changed_setting_is_refused_naming_it(dev_units, tmp_path, one_thread):
    """A finished run resumed with another loss weight, learning rate or model is refused in one line naming the setting,
    and nothing is written; a setting that may change on resume (decode.beam) is accepted."""
    from speechrq.asr.trainer import train_asr
    from speechrq.config import config_from_dict, config_to_dict
    from speechrq.asr.config import ASRConfig
    from speechrq.errors import SpeechrqError

    _, cfg = _train_config(dev_units, tmp_path / "run", tmp_path, "run", max_steps=2)
    train_asr(cfg, progress=False)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*") if p.is_file()}
    for key, value in (("loss.ctc_weight", 0.5), ("optim.lr", 1e-3), ("model.dropout", 0.0), ("model.preset", "paper")):
        section, name = key.split(".")
        changed = config_to_dict(cfg)
        changed[section][name] = value
        with pytest.raises(SpeechrqError, match=rf"differs from the run's in {re.escape(key)}\b") as e:
            train_asr(config_from_dict(ASRConfig, changed), resume=True, progress=False)
        assert "\n" not in str(e.value)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*") if p.is_file()} == before
    allowed = config_to_dict(cfg)
    allowed["decode"]["beam"] = 3
    last = train_asr(config_from_dict(ASRConfig, allowed), resume=True, progress=False)
    assert last == tmp_path / "run" / "checkpoints" / "step_00000002"


def test_utterances_ctc_cannot_align_are_counted_not_hidden():
    """zero_infinity makes CTC count 0 where an utterance has fewer frames than tokens plus repeats: the loss says how many."""
    torch.manual_seed(0)
    model = asr_model(ASR_PRESETS["tiny"], vocab=7, input_kind="units", num_streams=1, unit_vocab=9).eval()
    x = torch.randint(0, 9, (3, 6, 1))
    tokens = torch.tensor([[1, 2, 3, 4, 0, 0], [1, 1, 2, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    # 6 frames for 4 tokens: fine; 3 frames for [1, 1, 2] (a repeat needs a blank between): 4 needed; 5 frames for 6 tokens
    res = model(x, torch.tensor([6, 3, 5]), tokens, torch.tensor([4, 3, 6]))
    assert res.ctc_infeasible == 2
    assert model(x, torch.tensor([6, 4, 6]), tokens, torch.tensor([4, 3, 6])).ctc_infeasible == 0


def test_a_moved_run_resumes_and_a_retrained_unit_bpe_is_refused(units, tmp_path, one_thread):
    """Paths may change (the run moved, the units named from elsewhere); what they hold may not (issue 21)."""
    import shutil

    from speechrq.asr.config import ASRConfig
    from speechrq.asr.trainer import train_asr
    from speechrq.config import load_config
    from speechrq.errors import SpeechrqError
    from speechrq.units.run import unit_bpe

    enc = tmp_path / "enc"
    shutil.copytree(units["km"], enc)
    cfg = load_config(ASRConfig, write_config(tmp_path / "a.yaml", enc, tmp_path / "run", "bpe", max_steps=2))
    train_asr(cfg, progress=False)
    shutil.move(tmp_path / "run", tmp_path / "moved")
    longer = load_config(ASRConfig, write_config(tmp_path / "b.yaml", enc, tmp_path / "moved", "bpe", max_steps=3))
    assert train_asr(longer, resume=True, progress=False).name == "step_00000003"
    # the decode folder keeps every split decoded with the same settings
    from speechrq.cli import main

    out = tmp_path / "dec"
    assert main(["asr", "decode", str(tmp_path / "moved"), "--splits", "dev", "--beam", "2", "--out", str(out), "--quiet"]) == 0
    assert main(["asr", "decode", str(tmp_path / "moved"), "--splits", "train", "--beam", "2", "--out", str(out), "--quiet"]) == 0
    assert set(json.loads((out / "results.json").read_text())["splits"]) == {"dev", "train"}
    assert main(["asr", "decode", str(tmp_path / "moved"), "--splits", "dev", "--beam", "3", "--out", str(out), "--quiet"]) == 2
    unit_bpe(enc, ["train", "dev"], 30, 1, "units")  # `units encode --bpe 30` again: another unit BPE
    again = load_config(ASRConfig, write_config(tmp_path / "c.yaml", enc, tmp_path / "moved", "bpe", max_steps=4))
    with pytest.raises(SpeechrqError, match=r"trained on other inputs \(unit_bpe "):
        train_asr(again, resume=True, progress=False)


def test_transcribe_names_every_unusable_file_at_its_own_precision(tmp_path, capsys):
    """An empty file, a float64 file of finite 1e300 samples (not "inf" after a cast), a NaN file: all named in one line."""
    import soundfile as sf

    from speechrq.cli import main

    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "huge.wav", np.full(16000, 1e300), 16000, subtype="DOUBLE")
    sf.write(tmp_path / "nan.wav", np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "ok.wav", 0.1 * np.ones(16000, dtype=np.float32), 16000, subtype="FLOAT")
    files = [str(tmp_path / n) for n in ("empty.wav", "ok.wav", "huge.wav", "nan.wav")]
    assert main(["asr", "transcribe", str(tmp_path / "no-run"), *files]) == 2  # audio is checked before the model loads
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 of 4 file(s) cannot be transcribed" in err
    assert "empty.wav: empty file (0 bytes)" in err and "huge.wav: absurd amplitude: samples peak at 1e+300" in err
    assert "nan.wav: 16000 non-finite" in err and "ok.wav" not in err


# ---------------------------------------------------------------- a resumed run writes what the uninterrupted run writes
ASR_WALL_CLOCK = ("s_per_step",)  # the only measured field of an ASR record


def _kill_at_micro_batch(monkeypatch, call: int):
    """The ``call``-th micro-batch's forward raises KeyboardInterrupt (a kill: nothing is cleaned up); returns an undo."""
    from speechrq.asr.model import DiscreteASR

    forward, calls = DiscreteASR.forward, [0]

    def killed(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(DiscreteASR, "forward", killed)
    return lambda: monkeypatch.setattr(DiscreteASR, "forward", forward)


@pytest.fixture
def ticking_clock(monkeypatch):
    """A step clock that advances one second per reading: a step measured from its start to its end lasts 1 s."""
    from speechrq.training import engine

    ticks = itertools.count()
    monkeypatch.setattr(engine, "now", lambda: float(next(ticks)), raising=False)


@pytest.mark.parametrize("log_every,kill_at", [(10, 7), (3, 8)])  # the case; a record (6) past the checkpoint
def test_a_resumed_asr_run_logs_every_field_as_the_uninterrupted_run(dev_units, tmp_path, monkeypatch, one_thread, ticking_clock,
                                                                     log_every, kill_at):
    """Killed after its checkpoint at step 5 and resumed: every record (the window's loss, CTC and attention terms,
    accuracy, CTC-infeasible share, learning rate) is the uninterrupted run's, the last one (compare.json's
    final_loss) included, and none is written twice; seconds per step are the sums of measured step times."""
    from speechrq.asr.trainer import train_asr

    _, ref = _train_config(dev_units, tmp_path / "ref", tmp_path, "ref", max_steps=12, log_every=log_every, checkpoint_every=5)
    train_asr(ref, progress=False)
    _, cfg = _train_config(dev_units, tmp_path / "run", tmp_path, "run", max_steps=12, log_every=log_every, checkpoint_every=5)
    undo = _kill_at_micro_batch(monkeypatch, kill_at)
    with pytest.raises(KeyboardInterrupt):
        train_asr(cfg, progress=False)
    undo()
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [5]
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == ([] if log_every == 10 else [3, 6])
    train_asr(cfg, resume=True, progress=False)
    a, b = read_metrics(tmp_path / "ref"), read_metrics(tmp_path / "run")
    assert [r["step"] for r in b] == [r["step"] for r in a] == sorted({*range(log_every, 13, log_every), 12})
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ASR_WALL_CLOCK} for r in rs]  # noqa: E731
    assert strip(b) == strip(a)
    assert [r["s_per_step"] for r in b] == [r["s_per_step"] for r in a] == [1.0] * len(a)
    from speechrq.studies.discrete_asr import training_numbers

    assert training_numbers(b) == training_numbers(a) == {"s_per_step": 1.0, "final_loss": a[-1]["loss"]}  # compare.json's
    x, y = (load_model_state(tmp_path / run / "checkpoints" / "step_00000012") for run in ("ref", "run"))
    assert all(torch.equal(x[k], y[k]) for k in x)


def test_a_run_of_skipped_steps_continues_across_a_resume(dev_units, tmp_path, monkeypatch, one_thread):
    """Steps 4, 5 and 6 non-finite with train.max_nonfinite = 3: the uninterrupted run stops at step 6; so does a run
    killed in step 6 and resumed from step 5's checkpoint (two skipped steps already in a row), with the same message
    and the same records."""
    from speechrq.asr.trainer import train_asr
    from speechrq.errors import SpeechrqError

    _, ref = _train_config(dev_units, tmp_path / "ref", tmp_path, "ref", max_steps=12, max_nonfinite=3)
    _poison_steps(monkeypatch, {4, 5, 6})
    with pytest.raises(SpeechrqError) as stopped:
        train_asr(ref, progress=False)
    assert "non-finite for 3 steps in a row (up to step 6)" in str(stopped.value)
    monkeypatch.undo()
    _, cfg = _train_config(dev_units, tmp_path / "run", tmp_path, "run", max_steps=12, max_nonfinite=3)
    _poison_steps(monkeypatch, {4, 5})
    _kill_at_micro_batch(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        train_asr(cfg, progress=False)
    monkeypatch.undo()
    _poison_steps(monkeypatch, {1})  # step 6, the resumed run's first
    with pytest.raises(SpeechrqError) as again:
        train_asr(cfg, resume=True, progress=False)
    assert str(again.value).replace(str(tmp_path / "run"), "R") == str(stopped.value).replace(str(tmp_path / "ref"), "R")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ASR_WALL_CLOCK} for r in rs]  # noqa: E731
    assert strip(read_metrics(tmp_path / "run")) == strip(read_metrics(tmp_path / "ref"))


def test_a_runs_seconds_per_step_weights_each_window_by_its_steps():
    """compare.json's s_per_step (times per epoch): a last window of 2 steps counts as 2 steps, not as a window of 10."""
    from speechrq.training.engine import seconds_per_step

    records = [{"step": 10, "loss": 1.0, "s_per_step": 1.0}, {"step": 12, "loss": 0.5, "s_per_step": 4.0}]
    assert seconds_per_step(records) == pytest.approx(18 / 12)
    assert seconds_per_step([{"step": 7, "s_per_step": 2.0}, {"step": 9, "s_per_step": 1.0}], start=5) == pytest.approx(6 / 4)
    assert seconds_per_step([]) is None
    from speechrq.studies.discrete_asr import training_numbers

    records[1]["loss"] = 3.0  # a last window's loss above an earlier one: the final loss is still the last
    assert training_numbers(records) == {"s_per_step": pytest.approx(18 / 12), "final_loss": 3.0}
    assert training_numbers([]) == {"s_per_step": 0.0, "final_loss": None}


def test_a_record_averages_exactly_the_steps_of_its_window(dev_units, tmp_path, one_thread, ticking_clock):
    """log_every does not change the trajectory: records every 5 steps (windows of 5, 5, then a last of 2) hold the
    means of the per-step records over their windows, and compare.json's final_loss is the last window's mean."""
    from speechrq.asr.trainer import train_asr
    from speechrq.studies.discrete_asr import training_numbers

    runs = {}
    for every in (1, 5):
        _, cfg = _train_config(dev_units, tmp_path / f"every{every}", tmp_path, f"every{every}", max_steps=12, log_every=every,
                               checkpoint_every=12)
        train_asr(cfg, progress=False)
        runs[every] = read_metrics(tmp_path / f"every{every}")
    per = {r["step"]: r for r in runs[1]}
    assert [r["step"] for r in runs[5]] == [5, 10, 12]
    start = 0
    for r in runs[5]:
        window = range(start + 1, r["step"] + 1)
        for key in ("loss", "ctc", "attention"):
            assert r[key] == pytest.approx(sum(per[s][key] for s in window) / len(window), rel=1e-12), (r["step"], key)
        assert r["lr"] == per[r["step"]]["lr"] and r["s_per_step"] == 1.0
        start = r["step"]
    assert training_numbers(runs[5]) == {"s_per_step": 1.0, "final_loss": runs[5][-1]["loss"]}
