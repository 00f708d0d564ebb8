"""Corpus passes sharded with torchrun (speechrq.distributed): 2 gloo processes give the outputs of one process.

Every pass plans its batches from the manifest and deals whole batches to ranks, so each utterance is computed in the
same batch as in one process; with the same threads per process (torchrun gives each one thread here, and so does the
one-process run) unit arrays, manifests, samples, cached hidden states and hypotheses are the same bits.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechrq.distributed import shard_range

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_v0"  # a tiny trained checkpoint (see tests/test_encoders.py)
ENV = dict(os.environ, OMP_NUM_THREADS="1")

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def one(*args) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "speechrq", *args, "--quiet"], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def two(*args) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "speechrq", *args,
                        "--quiet"], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path; gzip files by their content (gzip's header holds the time of writing)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    return out


def test_shard_ranges_cover_every_item_once_in_order_and_balance_the_cost():
    costs = [5, 1, 1, 1, 1, 1, 10, 1, 1, 1, 1, 1, 1, 1, 4]
    for world in (1, 2, 3, 4, 20):
        ranges = [shard_range(costs, r, world) for r in range(world)]
        assert ranges[0][0] == 0 and ranges[-1][1] == len(costs)
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous, in order, no item twice
        if world <= 3:  # each share within one item of its fair part
            fair = sum(costs) / world
            assert all(abs(sum(costs[lo:hi]) - fair) <= max(costs) for lo, hi in ranges)
    assert shard_range([], 0, 2) == (0, 0) == shard_range([], 1, 2)
    assert [shard_range([1, 1, 1, 1], r, 2) for r in range(2)] == [(0, 2), (2, 4)]


@pytest.fixture(scope="module")
def unit_runs(pretrain_corpus, tmp_path_factory):
    """``units fit`` (its sample) and ``units encode`` (with unit BPE), once in one process and once in two."""
    root = tmp_path_factory.mktemp("sharded_units")
    for name, run in (("one", one), ("two", two)):
        run("units", "fit", "--encoder", str(FIXTURE), "--layer", "1", "--corpus", str(pretrain_corpus), "--k", "16", "--frames", "3000",
            "--niter", "5", "--max-duration", "4", "--out", str(root / name / "q"))
        run("units", "encode", str(root / name / "q"), "--corpus", str(pretrain_corpus), "--splits", "train,dev", "--bpe", "30",
            "--max-duration", "4", "--out", str(root / name / "u"))
    return root


def test_units_fit_samples_the_same_frames_and_fits_the_same_quantizer_in_two_processes(unit_runs):
    from speechrq.units.sample import load_sample

    one_sample, two_sample = (load_sample(unit_runs / n / "q" / "sample") for n in ("one", "two"))
    assert len(one_sample) > 1000 and np.array_equal(one_sample, two_sample)
    assert (unit_runs / "two" / "q" / "sample" / "part1of2").is_dir()  # each rank sampled its share
    assert (unit_runs / "one" / "q" / "units.safetensors").read_bytes() == (unit_runs / "two" / "q" / "units.safetensors").read_bytes()


def test_units_encode_writes_the_same_arrays_manifests_and_texts_in_two_processes(unit_runs):
    a, b = files(unit_runs / "one" / "u"), files(unit_runs / "two" / "u")
    assert sorted(a) == sorted(b)
    written = [k for k in a if k not in ("encode.json", "identity.json") and not k.startswith("quantizer/") and k != "bpe.model"]
    assert sum(k.startswith("arrays/") for k in written) > 50 and "cuts_dev.jsonl.gz" in written and "units_train.bpe.txt" in written
    assert [k for k in written if a[k] != b[k]] == []
    one_summary, two_summary = (json.loads(x["encode.json"]) for x in (a, b))
    assert two_summary["splits"]["train"]["processes"] == 2 and one_summary["splits"]["train"]["processes"] == 1
    assert two_summary["bpe"] == one_summary["bpe"]


def test_asr_decode_gives_the_same_hypotheses_in_two_processes(unit_runs, tmp_path):
    from test_asr import write_config

    cfg = write_config(tmp_path / "asr.yaml", unit_runs / "one" / "u", tmp_path / "run", max_steps=4)
    one("asr", "train", str(cfg))
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000004"
    outs = {}
    for name, run in (("one", one), ("two", two)):
        r = run("asr", "decode", str(ckpt), "--splits", "train,dev", "--beam", "3", "--out", str(tmp_path / name))
        outs[name] = r.stdout
    for split in ("train", "dev"):
        hyps = [(tmp_path / n / f"hyp_{split}.txt").read_text() for n in ("one", "two")]
        assert hyps[0] == hyps[1] and hyps[0].count("\n") > 10
    assert json.loads((tmp_path / "one" / "results.json").read_text())["splits"] == json.loads((tmp_path / "two" / "results.json").read_text())["splits"]
    assert outs["one"] == outs["two"].replace(str(tmp_path / "two"), str(tmp_path / "one"))  # rank 0 alone prints


def test_features_stats_are_the_same_to_float64_rounding_in_two_processes(pretrain_corpus, tmp_path):
    for name, run in (("one", one), ("two", two)):
        run("features", "stats", str(pretrain_corpus), "--out", str(tmp_path / f"{name}.json"))
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert (a["frames"], a["utterances"]) == (b["frames"], b["utterances"]) and a["frames"] > 10000
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a["std"], b["std"], rtol=1e-12, atol=1e-12)


def test_evaluate_caches_the_same_hidden_states_and_probes_alike_in_two_processes(pretrain_corpus, tmp_path):
    args = ["--corpus", str(pretrain_corpus), "--tasks", "pr,sid", "--epochs", "2", "--lrs", "1e-2", "--probe-jobs", "1"]
    one("evaluate", str(FIXTURE), *args, "--out", str(tmp_path / "one"))
    r = two("evaluate", str(FIXTURE), *args, "--out", str(tmp_path / "two"))
    assert r.stdout.count("hidden states: 1 encoder(s)") == 1  # the plan is said once, by rank 0
    res = {n: json.loads((tmp_path / n / "results.json").read_text()) for n in ("one", "two")}
    states = {n: files(Path(res[n]["hidden_states"])) for n in res}
    assert len(states["one"]) > 100 and states["one"] == states["two"]  # frames for PR, means for SID: the same bits
    (name, m1), = res["one"]["models"].items()
    m2 = res["two"]["models"][name]
    assert m1["tasks"] == m2["tasks"] and m1["utterances_encoded"] == m2["utterances_encoded"] > 0
    # target analysis reads every utterance of its sample on rank 0 (lhotse's samplers would shard by torchrun's env)
    assert res["one"]["target_quality"] == res["two"]["target_quality"]


def test_a_refusal_under_torchrun_is_said_once(unit_runs, pretrain_corpus, tmp_path):
    """Inputs are refused before any rank's share begins: rank 0 alone says it, whichever command and check."""
    cases = [["units", "encode", str(unit_runs / "one" / "q"), "--corpus", str(pretrain_corpus), "--splits", "nosuch",
              "--out", str(tmp_path / "u")],
             ["features", "stats", str(tmp_path / "nosuch")],
             ["evaluate", str(FIXTURE), "--corpus", str(pretrain_corpus), "--tasks", "sid", "--cache-max-gb", "-1",
              "--out", str(tmp_path / "ev")],
             ["evaluate", str(FIXTURE), "--corpus", str(pretrain_corpus), "--cache-max-gb", "abc", "--out", str(tmp_path / "ev")],
             ["units", "fit", "--encoder", str(FIXTURE), "--layer", "1", "--corpus", str(pretrain_corpus), "--k", "8",
              "--out", str(unit_runs / "one" / "u")]]
    for argv in cases:
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "speechrq",
                            *argv, "--quiet"], capture_output=True, text=True, env=ENV, timeout=600)
        assert r.returncode != 0, argv
        assert r.stderr.count("speechrq: error") + r.stderr.count("usage: speechrq") == 1, (argv, r.stderr[-2000:])
    assert not (tmp_path / "u").exists()  # a refused encode claims no folder
