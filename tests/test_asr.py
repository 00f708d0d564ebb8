"""Discrete-unit ASR: embeddings, E-Branchformer, CTC prefix scores, beam search, training with exact resume, decoding."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import kill_after_first_checkpoint, tiny_pretrain_config
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
