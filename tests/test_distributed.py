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
    """Every file under ``root`` by relative path; gzip files by their content (gzip's header holds the time of writing),
    with ``root``'s own path written as ``ROOT`` (manifests hold absolute paths, so that lhotse alone reads them)."""
    out, here = {}, str(root.resolve()).encode()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            out[p.relative_to(root).as_posix()] = data.replace(here, b"ROOT")
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


@pytest.mark.slow
def test_units_fit_samples_the_same_frames_and_fits_the_same_quantizer_in_two_processes(unit_runs):
    from speechrq.units.sample import load_sample

    one_sample, two_sample = (load_sample(unit_runs / n / "q" / "sample") for n in ("one", "two"))
    assert len(one_sample) > 1000 and np.array_equal(one_sample, two_sample)
    assert (unit_runs / "two" / "q" / "sample" / "part1of2").is_dir()  # each rank sampled its share
    assert (unit_runs / "one" / "q" / "units.safetensors").read_bytes() == (unit_runs / "two" / "q" / "units.safetensors").read_bytes()


@pytest.mark.slow
def test_units_encode_writes_the_same_arrays_manifests_and_texts_in_two_processes(unit_runs):
    a, b = files(unit_runs / "one" / "u"), files(unit_runs / "two" / "u")
    assert sorted(a) == sorted(b)
    written = [k for k in a if k not in ("encode.json", "identity.json") and not k.startswith("quantizer/") and k != "bpe.model"]
    assert sum(k.startswith("arrays/") for k in written) > 50 and "cuts_dev.jsonl.gz" in written and "units_train.bpe.txt" in written
    assert [k for k in written if a[k] != b[k]] == []
    one_summary, two_summary = (json.loads(x["encode.json"]) for x in (a, b))
    assert two_summary["splits"]["train"]["processes"] == 2 and one_summary["splits"]["train"]["processes"] == 1
    assert two_summary["bpe"] == one_summary["bpe"]


@pytest.mark.slow
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


@pytest.mark.slow
def test_features_stats_are_the_same_to_float64_rounding_in_two_processes(pretrain_corpus, tmp_path):
    for name, run in (("one", one), ("two", two)):
        run("features", "stats", str(pretrain_corpus), "--out", str(tmp_path / f"{name}.json"))
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert (a["frames"], a["utterances"]) == (b["frames"], b["utterances"]) and a["frames"] > 10000
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a["std"], b["std"], rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_evaluate_caches_the_same_hidden_states_and_probes_alike_in_two_processes(pretrain_corpus, tmp_path):
    args = ["--corpus", str(pretrain_corpus), "--tasks", "pr,sid", "--epochs", "2", "--lrs", "1e-2", "--probe-jobs", "1", "--no-tsne"]
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


@pytest.mark.slow
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


# ---------------------------------------------------------------- the helpers themselves (issue 34, point 10)
# Who runs what under torchrun, the order of gathered objects, the exact share of every rank: deliberate one-line bugs
# (every rank running on_main's fn, a reversed gather, a share boundary one item off) passed the tests above.

RANKS_SCRIPT = r'''
import json, os, sys, time
from pathlib import Path

import torch

from speechrq import distributed
from speechrq.errors import OtherRankFailed, SpeechrqError

out = Path(sys.argv[1])
ctx = distributed.init("cpu")
res = {"ctx": [ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main, ctx.distributed, str(ctx.device)]}


def write():  # what a command does in on_main: claim a folder, write a file; rank 0 alone may
    with open(out / "calls.txt", "a") as f:
        f.write(f"{ctx.rank}\n")
    return {"by": ctx.rank, "pid": os.getpid(), "zero": 0}


res["on_main"] = distributed.on_main(write, ctx)
res["falsy"] = distributed.on_main(lambda: 0 if ctx.rank == 0 else 7, ctx)


def refuse():
    raise SpeechrqError(f"refused by rank {ctx.rank}")


try:
    distributed.on_main(refuse, ctx)
    res["refusal"] = None
except OtherRankFailed as e:
    res["refusal"] = ["OtherRankFailed", str(e)]
except SpeechrqError as e:
    res["refusal"] = ["SpeechrqError", str(e)]

res["gather"] = distributed.gather_objects({"rank": ctx.rank, "pid": os.getpid()}, ctx)
res["broadcast_object"] = distributed.broadcast_object(f"rank {ctx.rank}'s", ctx)
t = torch.tensor([ctx.rank + 1.0, 10.0 * (ctx.rank + 1)], dtype=torch.float64)
res["all_reduce_sum_is_in_place"] = distributed.all_reduce_sum(t, ctx) is t
res["sum"] = t.tolist()
t = torch.full((3,), float(ctx.rank + 5))
distributed.broadcast_tensor(t, ctx)
res["broadcast_tensor"] = t.tolist()
if ctx.rank == 1:  # rank 1 finishes late: past the barrier, rank 0 sees what it wrote
    time.sleep(2)
    (out / "late.txt").write_text("written")
distributed.barrier(ctx)
res["late_seen_after_barrier"] = (out / "late.txt").exists()
distributed.barrier(ctx)
(out / f"rank{ctx.rank}.json").write_text(json.dumps(res))
distributed.shutdown()
'''


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """The helpers run once by 2 gloo processes under torchrun; what each rank saw, by rank."""
    root = tmp_path_factory.mktemp("ranks")
    (root / "ranks.py").write_text(RANKS_SCRIPT)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(root / "ranks.py"),
                        str(root)], capture_output=True, text=True, env=ENV, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, [json.loads((root / f"rank{i}.json").read_text()) for i in range(2)]


@pytest.mark.slow
def test_on_main_runs_fn_on_rank_0_alone_and_hands_its_result_to_every_rank(ranks):
    root, res = ranks
    assert (root / "calls.txt").read_text() == "0\n"  # one writer: rank 0, once
    assert res[0]["on_main"] == res[1]["on_main"] and res[1]["on_main"]["by"] == 0
    assert res[0]["falsy"] == res[1]["falsy"] == 0  # a falsy result is a result, not "no result"


@pytest.mark.slow
def test_a_refusal_in_on_main_is_raised_on_rank_0_and_ends_the_others_with_other_rank_failed(ranks):
    _, res = ranks
    assert res[0]["refusal"] == ["SpeechrqError", "refused by rank 0"]
    assert res[1]["refusal"][0] == "OtherRankFailed"


@pytest.mark.slow
def test_collectives_under_torchrun_order_sum_and_broadcast_by_rank(ranks):
    root, res = ranks
    assert [r["ctx"] for r in res] == [[0, 2, 0, True, True, "cpu"], [1, 2, 1, False, True, "cpu"]]
    for r in res:
        assert [g["rank"] for g in r["gather"]] == [0, 1]  # rank 0's object first, on every rank
        assert r["gather"] == res[0]["gather"]
        assert r["broadcast_object"] == "rank 0's"
        assert r["sum"] == [3.0, 30.0] and r["all_reduce_sum_is_in_place"]
        assert r["broadcast_tensor"] == [5.0, 5.0, 5.0]
        assert r["late_seen_after_barrier"]


def test_in_one_process_every_helper_is_the_identity_and_on_main_just_calls_fn(monkeypatch):
    from speechrq import distributed
    from speechrq.errors import SpeechrqError

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_torchrun()
    ctx = distributed.init("cpu")
    assert ctx == distributed.Context() and ctx.is_main and not ctx.distributed and ctx.device == torch.device("cpu")
    calls = []
    assert distributed.on_main(lambda: calls.append(1) or "done", ctx) == "done" and calls == [1]
    with pytest.raises(SpeechrqError, match="^no$"):
        distributed.on_main(lambda: (_ for _ in ()).throw(SpeechrqError("no")), ctx)
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(t, ctx) is t and t.tolist() == [1.0, 2.0]
    assert distributed.broadcast_tensor(t, ctx) is t and t.tolist() == [1.0, 2.0]
    assert distributed.gather_objects("x", ctx) == ["x"] and distributed.broadcast_object("y", ctx) == "y"
    distributed.barrier(ctx)
    cuts = object()
    assert distributed.rank_cuts(cuts, 10.0, ctx) is cuts  # the manifest itself, untouched
    monkeypatch.setenv("RANK", "0")
    assert not distributed.launched_by_torchrun()  # both RANK and WORLD_SIZE say torchrun
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.launched_by_torchrun()
    assert not distributed.Context(rank=1, world_size=2).is_main and distributed.Context(rank=1, world_size=2).distributed


def test_cuda_asked_without_a_cuda_device_is_refused(monkeypatch):
    from speechrq import distributed
    from speechrq.errors import SpeechrqError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpeechrqError, match="train.device is 'cuda' but torch sees no CUDA device"):
        distributed.init("cuda")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.init("auto").device == torch.device("cpu")


def test_a_corpus_pass_turns_cudnn_tf32_off_inside_and_restores_it(monkeypatch):
    from speechrq import distributed

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for before in (True, False):
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", before)
        with distributed.corpus_pass("cpu") as ctx:
            assert ctx == distributed.Context() and torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is before
        with pytest.raises(RuntimeError):
            with distributed.corpus_pass("cpu"):
                raise RuntimeError("boom")
        assert torch.backends.cudnn.allow_tf32 is before


def nearest_boundaries(costs, world):
    """The reference: rank r's share ends at the item boundary nearest to r/world of the total (the earlier on a tie).
    Positive costs (a batch's padded seconds), so no two boundaries hold the same sum."""
    from fractions import Fraction

    cum = [Fraction(0)]
    for c in costs:
        cum.append(cum[-1] + Fraction(c))
    out = [0]
    for r in range(1, world):
        target = cum[-1] * r / world
        out.append(min(range(len(cum)), key=lambda j: (abs(cum[j] - target), j)))
    return [*out, len(costs)]


@pytest.mark.parametrize("costs", [[5, 1, 1, 1, 1, 1, 10, 1, 1, 1, 1, 1, 1, 1, 4], [1, 2, 1], [3, 1], [1, 3], [2, 2, 2, 2, 2],
                                   [1, 1, 1, 1, 1, 1, 1], [8, 1, 1, 8], [1, 1, 4, 1, 4, 1], [7], [1, 1], [4, 1, 1, 1, 1, 1, 1, 1, 1]])
def test_every_share_ends_at_the_item_boundary_nearest_its_fair_part(costs):
    for world in (1, 2, 3, 4, 5, 8):
        b = nearest_boundaries(costs, world)
        assert [shard_range(costs, r, world) for r in range(world)] == [(b[r], max(b[r], b[r + 1])) for r in range(world)], world


def test_shard_ranges_exactly():
    assert [shard_range([1, 2, 1], r, 2) for r in range(2)] == [(0, 1), (1, 3)]  # a tie: the earlier boundary
    assert [shard_range([2, 1, 1], r, 2) for r in range(2)] == [(0, 1), (1, 3)]
    assert [shard_range([1, 1, 2], r, 2) for r in range(2)] == [(0, 2), (2, 3)]
    assert [shard_range([7], r, 3) for r in range(3)] == [(0, 0), (0, 1), (1, 1)]  # more ranks than items: empty shares
    assert [shard_range([1, 1, 1, 1, 1, 1], r, 3) for r in range(3)] == [(0, 2), (2, 4), (4, 6)]
    assert [shard_range([1, 1, 1, 1, 1, 1, 1], r, 4) for r in range(4)] == [(0, 2), (2, 3), (3, 5), (5, 7)]
    assert [shard_range([4, 1, 1, 1, 1], r, 2) for r in range(2)] == [(0, 1), (1, 5)]
    assert [shard_range([0.5, 0.5, 3.0], r, 2) for r in range(2)] == [(0, 2), (2, 3)]
    assert shard_range([3, 3], 0, 1) == (0, 2)


def test_the_cuts_of_every_rank_are_whole_batches_in_order_covering_the_manifest_once(monkeypatch):
    from types import SimpleNamespace

    from speechrq import distributed
    from speechrq.data.batching import padded_groups

    durations = [1.0, 1.0, 3.0, 0.5, 0.5, 0.5, 2.0, 2.0, 4.0, 1.0, 1.0, 1.0, 1.0, 6.0, 0.2, 0.2, 0.2, 3.0]
    cuts = [SimpleNamespace(id=f"c{i}", duration=d) for i, d in enumerate(durations)]
    groups = [[c.id for c in g] for g in padded_groups(cuts, 4.0)]
    plan = [len(g) * max(durations[int(i[1:])] for i in g) for g in groups]
    for world in (1, 2, 3, 4, 7, 30):
        shares = []
        for rank in range(world):
            ctx = distributed.Context(rank=rank, world_size=world)
            monkeypatch.setattr(distributed, "_SHARE_STARTED", False)
            start, stop = distributed.shard_cuts(cuts, 4.0, ctx)
            assert distributed.share_started()
            lo, hi = shard_range(plan, rank, world)
            assert (start, stop) == (sum(map(len, groups[:lo])), sum(map(len, groups[:hi])))  # rank r's groups, whole
            share = distributed.rank_cuts(cuts, 4.0, ctx) if world > 1 else cuts
            ids = [c.id for c in share]
            assert ids == [c.id for c in share] == [c.id for c in cuts[start:stop]]  # re-iterable, lazily the same
            shares.append(ids)
        assert [i for s in shares for i in s] == [c.id for c in cuts]  # every cut once, in order
