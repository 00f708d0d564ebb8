"""The pre-training loop: it learns, it checkpoints, it resumes exactly, it scales with DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import kill_after_first_checkpoint, tiny_pretrain_config
from speechrq.checkpoint import list_checkpoints, load_model_state, load_trainer_state, read_meta
from speechrq.config import config_from_dict
from speechrq.errors import SpeechrqError
from speechrq.pretrain.config import PretrainConfig
from speechrq.pretrain.model import build_model
from speechrq.pretrain.trainer import train
from speechrq.training.engine import read_metrics


def write_config(path, cfg: dict):
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args, env_threads: int = 1):
    env = dict(os.environ, OMP_NUM_THREADS=str(env_threads))
    return subprocess.run([sys.executable, "-m", "speechrq", *args], capture_output=True, text=True, env=env, timeout=600)


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["losses"][-1] for r in read_metrics(run_dir)}


def reference_targets(x: torch.Tensor, projection: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Latent-RQ eq. 1 frame by frame in float64: argmin_v || norm(A_n x) - c_v ||."""
    b, t, _ = x.shape
    out = torch.empty(b, t, projection.shape[0], dtype=torch.long)
    for i in range(b):
        for j in range(t):
            for n in range(projection.shape[0]):
                z = x[i, j].double() @ projection[n].double()
                z = z / z.norm()
                out[i, j, n] = (codebooks[n].double() - z).norm(dim=1).argmin()
    return out


def test_training_learns_logs_and_keeps_targets_fixed(pretrain_corpus, tmp_path):
    cfg_dict = tiny_pretrain_config(pretrain_corpus, tmp_path / "run", optim={"max_steps": 24, "warmup_steps": 2}, train={"checkpoint_every": 12})
    cfg = config_from_dict(PretrainConfig, cfg_dict)
    from speechrq.data.batching import make_loader
    from speechrq.data.corpus import load_cuts
    from speechrq.features import FeatureStats, LogMel

    batch = next(iter(make_loader(load_cuts(pretrain_corpus, "dev").subset(first=2), 30.0, shuffle=False, num_buckets=1)))
    feats, lens = LogMel()(batch["audio"], batch["audio_lens"])
    fresh = build_model(cfg, FeatureStats.load(pretrain_corpus / "feature_stats.json"))
    before = fresh.targets(fresh.normalizer(feats, lens), lens)

    last = train(cfg, progress=False)

    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == list(range(1, 25))
    first, last6 = records[:3], records[-6:]
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)
    assert mean(last6, "loss") < mean(first, "loss") - 0.3  # it learns
    assert mean(last6, "acc") > 5 / 256  # five times chance after 24 small steps
    r = records[-1]
    assert len(r["acc_per_codebook"]) == 4 and len(r["usage.used"]) == 4 and 0 < r["usage.used_min"] <= 1
    run_used = [x["usage_run.used_min"] for x in records]  # the run's share only grows, and covers every window
    assert run_used == sorted(run_used) and run_used[-1] >= max(x["usage.used_min"] for x in records)
    assert 0.2 < r["masked_fraction"] < 0.5 and r["audio_s_per_s"] > 0
    assert (tmp_path / "run" / "tensorboard").is_dir() and (tmp_path / "run" / "config.yaml").exists()
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [12, 24]

    # the trained model's quantizer is the untouched one: same buffers, same targets,
    # and those targets are eq. 1 computed frame by frame
    trained = build_model(cfg)
    trained.load_state_dict(load_model_state(last))
    for name in ("targets.mel.quantizer.projection", "targets.mel.quantizer.codebooks", "targets.mel.quantizer.seed"):
        assert torch.equal(trained.state_dict()[name], fresh.state_dict()[name]), name
    assert not torch.equal(trained.encoder.frontend.proj.weight, fresh.encoder.frontend.proj.weight)
    after = trained.targets(trained.normalizer(feats, lens), lens)
    assert torch.equal(before, after)
    from speechrq.targets.random_projection import stack_frames

    q = trained.targets.mel.quantizer
    stacked = stack_frames(trained.normalizer(feats, lens), 4)[:, :30]
    assert torch.equal(after[:, :30], reference_targets(stacked, q.projection, q.codebooks))
    assert int(q.seed) == 3


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_run_exactly(pretrain_corpus, tmp_path):
    steps = 40
    ref_cfg = write_config(tmp_path / "ref.yaml", tiny_pretrain_config(
        pretrain_corpus, tmp_path / "ref", optim={"max_steps": steps}, train={"checkpoint_every": 5, "deterministic": True}))
    res = cli("pretrain", str(ref_cfg), "--quiet")
    assert res.returncode == 0, res.stderr

    cfg = write_config(tmp_path / "run.yaml", tiny_pretrain_config(
        pretrain_corpus, tmp_path / "run", optim={"max_steps": steps}, train={"checkpoint_every": 5, "deterministic": True}))
    ckpts = tmp_path / "run" / "checkpoints"
    kill_after_first_checkpoint(["pretrain", str(cfg), "--quiet"], ckpts)
    saved = list_checkpoints(ckpts)
    assert saved and saved[-1][0] < steps, "the run ended before it could be killed"
    killed_at = saved[-1][0]

    res = cli("pretrain", str(cfg), "--resume", "--quiet")
    assert res.returncode == 0, res.stderr
    ref, run = losses(tmp_path / "ref"), losses(tmp_path / "run")
    assert sorted(run) == list(range(1, steps + 1))  # records past the checkpoint were replaced, not duplicated
    after = [s for s in range(killed_at + 1, steps + 1)]
    assert [run[s] for s in after] == [ref[s] for s in after]  # bit for bit
    a = load_model_state(tmp_path / "ref" / "checkpoints" / f"step_{steps:08d}")
    b = load_model_state(tmp_path / "run" / "checkpoints" / f"step_{steps:08d}")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_killed_while_writing_a_checkpoint_resumes_from_the_last_whole_one(pretrain_corpus, tmp_path, monkeypatch):
    import speechrq.checkpoint as ckpt

    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "run", optim={"max_steps": 8},
                                                                train={"checkpoint_every": 4}))
    real, saves = ckpt.torch.save, []

    def killed_mid_write(obj, f, *args, **kwargs):  # step 8's model.safetensors is written, its trainer.pt is not
        saves.append(f)
        if len(saves) == 2:
            raise KeyboardInterrupt
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    monkeypatch.setattr(ckpt.torch, "save", real)
    root = tmp_path / "run" / "checkpoints"
    # an interrupt unwinds through the save: its temporary folder goes with it (a SIGKILL's is removed by the next start)
    assert [s for s, _ in list_checkpoints(root)] == [4] and not [p for p in root.iterdir() if p.name.startswith(".")]

    train(cfg, resume=True, progress=False)
    assert [s for s, _ in list_checkpoints(root)] == [4, 8] and not [p for p in root.iterdir() if p.name.startswith(".")]
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == list(range(1, 9))
    assert read_meta(root / "step_00000008")["step"] == 8


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_ddp_processes_follow_the_single_process_curve(pretrain_corpus, tmp_path):
    steps = 6
    single = write_config(tmp_path / "single.yaml", tiny_pretrain_config(
        pretrain_corpus, tmp_path / "single", optim={"max_steps": steps, "accum_steps": 2}, train={"checkpoint_every": steps}))
    res = cli("pretrain", str(single), "--quiet")
    assert res.returncode == 0, res.stderr
    ddp = write_config(tmp_path / "ddp.yaml", tiny_pretrain_config(
        pretrain_corpus, tmp_path / "ddp", optim={"max_steps": steps, "accum_steps": 1}, train={"checkpoint_every": steps}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "speechrq", "pretrain", str(ddp), "--quiet"], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-6000:]
    a, b = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    for s in a:
        assert b[s] == pytest.approx(a[s], rel=1e-4, abs=1e-5), (s, a[s], b[s])
    assert a[steps] < a[1]
    meta = read_meta(tmp_path / "ddp" / "checkpoints" / f"step_{steps:08d}")
    assert meta["world_size"] == 2 and len(meta["data"]) == 2 and len(load_trainer_state(tmp_path / "ddp" / "checkpoints" / f"step_{steps:08d}")["rng"]) == 2
    assert meta["data"][0]["total"] == meta["data"][1]["total"] == steps
    # the same model, trained two ways
    wa = load_model_state(tmp_path / "single" / "checkpoints" / f"step_{steps:08d}")
    wb = load_model_state(tmp_path / "ddp" / "checkpoints" / f"step_{steps:08d}")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-3


def test_nonfinite_losses_skip_then_stop_with_a_checkpoint(pretrain_corpus, tmp_path, monkeypatch):
    import speechrq.pretrain.trainer as trainer_mod
    from speechrq.features import LogMel

    class BrokenLogMel(LogMel):  # a corrupt input pipeline: every feature is NaN
        def forward(self, wav, wav_lens=None):
            feats, lens = super().forward(wav, wav_lens)
            return feats * float("nan"), lens

    monkeypatch.setattr(trainer_mod, "LogMel", BrokenLogMel)
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "run", train={"max_nonfinite": 3}))
    with pytest.raises(SpeechrqError, match="non-finite for 3 steps in a row") as e:
        train(cfg, progress=False)
    assert "\n" not in str(e.value)
    # the inputs were at fault, not the learning rate: the message says so and names the utterances and files
    assert "The cause is the data, not the learning rate: non-finite or absurd inputs from utterance" in str(e.value)
    assert "optim.lr" not in str(e.value) and ".wav)" in str(e.value)
    path = tmp_path / "run" / "checkpoints" / "step_00000003"
    assert read_meta(path)["reason"] == "non-finite"
    # no update was applied: the weights are the initial ones, and finite
    init = build_model(cfg).state_dict()
    saved = load_model_state(path)
    assert all(torch.equal(saved[k], init[k]) for k in init if not k.startswith("normalizer"))
    assert [r["skipped_steps"] for r in read_metrics(tmp_path / "run")] == [1, 1, 1]


def test_cli_refuses_bad_configs_and_unsafe_restarts(pretrain_corpus, tmp_path):
    bad = write_config(tmp_path / "bad.yaml", tiny_pretrain_config(pretrain_corpus, tmp_path / "run", optim={"lr": "fast"}))
    res = cli("pretrain", str(bad))
    assert res.returncode == 2 and res.stderr.strip() == f"speechrq: error: {bad}: optim.lr: expected a number, got 'fast'"

    good = write_config(tmp_path / "good.yaml", tiny_pretrain_config(pretrain_corpus, tmp_path / "run", optim={"max_steps": 2}))
    assert cli("pretrain", str(good), "--quiet").returncode == 0
    res = cli("pretrain", str(good), "--quiet")
    assert res.returncode == 2 and "already holds checkpoints; pass --resume" in res.stderr
    res = cli("pretrain", str(good), "--resume", "--set", "optim.lr=1e-2", "--quiet")
    assert res.returncode == 2 and "differs from the run's in optim.lr" in res.stderr
    res = cli("pretrain", str(good), "--resume", "--set", "optim.max_steps=3", "--quiet")
    assert res.returncode == 0, res.stderr
    assert sorted(losses(tmp_path / "run")) == [1, 2, 3]


def test_paper_preset_size_and_one_cpu_step():
    cfg = config_from_dict(PretrainConfig, {"out_dir": "x", "data": {"corpus": "c"}, "model": {"preset": "paper"}, "train": {"device": "cpu"}})
    model = build_model(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert 135e6 <= n <= 165e6, n  # 150M +- 10% with 18 heads of 4096
    from speechrq.training.optim import make_optimizer

    opt = make_optimizer(model, cfg.optim)
    g = torch.Generator().manual_seed(0)
    feats, lens = torch.randn(2, 300, 80, generator=g), torch.tensor([300, 240])
    before = model.encoder.encoder.blocks[-1].ffn2[1].weight.clone()
    out = model(feats, lens, generator=g)
    out.loss.backward()
    opt.step()
    assert torch.isfinite(out.loss) and out.targets.shape == (2, 75, 18)
    assert not torch.equal(before, model.encoder.encoder.blocks[-1].ffn2[1].weight)


def test_batches_without_a_usable_utterance_are_skipped_not_fatal(pretrain_corpus, tmp_path, caplog):
    import shutil

    import numpy as np
    import soundfile as sf
    from lhotse import CutSet, Recording

    from speechrq.data.corpus import load_cuts

    corpus = tmp_path / "corpus"
    (corpus / "bad").mkdir(parents=True)
    stats = json.loads((pretrain_corpus / "feature_stats.json").read_text())
    stats.pop("source", None)  # another corpus's statistics, given by hand: no record to check against
    (corpus / "feature_stats.json").write_text(json.dumps(stats))
    recs = []
    for i in range(24):  # 25 ms each: shorter than one 40 ms encoder frame, bucketed together
        sf.write(corpus / "bad" / f"blip{i}.wav", 0.1 * np.random.default_rng(i).standard_normal(400).astype(np.float32), 16000)
        recs.append(Recording.from_file(corpus / "bad" / f"blip{i}.wav", recording_id=f"blip{i}"))
    for i in range(4):  # fine at import, gone bad since
        sf.write(corpus / "bad" / f"gone{i}.wav", np.zeros(400, np.float32), 16000)
        recs.append(Recording.from_file(corpus / "bad" / f"gone{i}.wav", recording_id=f"gone{i}"))
        (corpus / "bad" / f"gone{i}.wav").write_bytes(b"garbage")
    bad = CutSet.from_manifests(recordings=recs)
    good = load_cuts(pretrain_corpus, "train").subset(first=24)
    CutSet.from_cuts([*good, *bad]).to_file(corpus / "cuts_train.jsonl")
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(corpus, tmp_path / "run", data={"num_buckets": 6},
                                                                optim={"max_steps": 12}, train={"checkpoint_every": 12}))
    train(cfg, progress=False)
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == list(range(1, 13))
    messages = [r.getMessage() for r in caplog.records]
    assert any("skipping a batch with no usable utterance" in m for m in messages)
    assert any("blip" in m and "fewer than the 560 one frame needs" in m for m in messages)
    assert any("gone" in m and "unreadable" in m for m in messages)


# ---------------------------------------------------------------- non-finite steps: the data, its statistics, or the model


def _named_cuts(tmp_path, n=3):
    """``n`` real cuts with files (a folder corpus made here)."""
    import numpy as np
    import soundfile as sf

    from speechrq.data.corpus import load_cuts
    from speechrq.data.recipes import import_corpus

    (tmp_path / "src").mkdir()
    for i in range(n):
        sf.write(tmp_path / "src" / f"u{i}.wav", 0.1 * np.random.default_rng(i).standard_normal(8000), 16000, subtype="FLOAT")
    import_corpus("folder", tmp_path / "src", tmp_path / "corpus", workers=1, progress=False)
    return sorted(load_cuts(tmp_path / "corpus", "train"), key=lambda c: c.id)


def test_a_non_finite_step_is_blamed_on_the_data_the_statistics_or_the_model(tmp_path):
    from torch import nn

    from speechrq.distributed import Context
    from speechrq.training.engine import NonfiniteSteps

    cuts, ctx = _named_cuts(tmp_path), Context()
    model = nn.Module()
    model.register_buffer("normalizer_std", torch.ones(4))
    x, lens = torch.zeros(3, 6, 4), torch.tensor([6, 4, 6])
    x[1, 5] = float("nan")  # in u1's padding only: no fault
    x[2, 0, 3] = float("inf")  # u2's first frame

    steps = NonfiniteSteps(limit=2)
    name = [f"{c.id} ({c.recording.sources[0].source})" for c in cuts]
    assert steps.skipped(model, [(x, lens, cuts)], ctx) == f"non-finite or absurd inputs from utterance {name[2]}"
    assert not steps.stopping
    x[2] = 0.0
    x[0, 1, 0] = 5e3  # finite but absurd for a normalised input: past the limit
    steps.skipped(model, [(x, lens, cuts)], ctx, limit=1e3)
    assert steps.stopping and steps.inputs == [name[2], name[0]]
    msg = steps.message(7, tmp_path / "ckpt")
    assert "non-finite for 2 steps in a row (up to step 7)" in msg and "The cause is the data, not the learning rate" in msg
    assert name[2] in msg and name[0] in msg and name[1] not in msg and "optim.lr" not in msg

    steps.good()  # a good step forgets the run and its causes
    clean = torch.zeros(3, 6, 4)
    steps.skipped(model, [(clean, lens, cuts)], ctx)
    steps.skipped(model, [(clean, lens, cuts)], ctx)
    assert steps.stopping and "the model diverged: lower optim.lr" in steps.message(9, "ckpt")

    steps.good()
    model.normalizer_std[1] = float("nan")  # statistics: every step would fail, so stop at once
    assert steps.skipped(model, [(clean, lens, cuts)], ctx) == "the model's buffer normalizer_std holds NaN or inf"
    assert steps.stopping and steps.run == 1
    assert "The cause is the statistics, not the learning rate: the model's buffer normalizer_std" in steps.message(1, "ckpt")


def test_pretraining_with_poisoned_statistics_stops_at_once_and_names_them(pretrain_corpus, tmp_path):
    """A run resumed from a checkpoint whose log-Mel statistics went NaN: the statistics are named, not optim.lr."""
    from safetensors.torch import load_file, save_file

    from speechrq.checkpoint import MODEL_FILE

    cfg = tiny_pretrain_config(pretrain_corpus, tmp_path / "run", optim={"max_steps": 2, "warmup_steps": 1}, train={"checkpoint_every": 2})
    first = train(config_from_dict(PretrainConfig, cfg), progress=False)
    weights = load_file(str(first / MODEL_FILE))
    weights["normalizer.std"][5] = float("nan")
    save_file(weights, str(first / MODEL_FILE))
    cfg["optim"]["max_steps"] = 6
    with pytest.raises(SpeechrqError) as e:
        train(config_from_dict(PretrainConfig, cfg), resume=True, progress=False)
    msg = str(e.value)
    assert msg.startswith("the loss or gradient was non-finite for 1 steps in a row (up to step 3)"), msg
    assert "The cause is the statistics, not the learning rate: the model's buffer normalizer.std holds NaN or inf" in msg
    assert "optim.lr" not in msg and "\n" not in msg


def test_asr_inputs_are_checked_where_they_enter(tmp_path):
    """Unit ids past k (65535 from a NaN frame, as issue 21 found) and NaN encoder states name their utterances."""
    from lhotse import CutSet

    from speechrq.asr.trainer import input_features
    from speechrq.encoders import EncoderLayer
    from test_quantizers import poisoned_checkpoint

    cuts = _named_cuts(tmp_path)
    ids = torch.zeros(3, 5, 2, dtype=torch.long)
    ids[1, 2, 1] = 65535
    batch = {"inputs": ids, "input_lens": torch.tensor([5, 3, 4]), "cuts": CutSet.from_cuts(cuts)}
    with pytest.raises(SpeechrqError, match=rf"^unit ids outside \[0, 50\) \(up to 65535\) in utterance {cuts[1].id} \(.*u1\.wav\) \(1 of 3\)"):
        input_features(None, batch, torch.device("cpu"), unit_vocab=50)
    ids[1, 2, 1] = 49
    assert input_features(None, batch, torch.device("cpu"), unit_vocab=50)[0] is ids

    layer = EncoderLayer(poisoned_checkpoint(tmp_path / "ckpt", tmp_path / "corpus", float("nan")), 0)
    audio = {"audio": torch.randn(3, 8000) * 0.1, "audio_lens": torch.tensor([8000, 8000, 6000]), "cuts": CutSet.from_cuts(cuts)}
    with pytest.raises(SpeechrqError, match=rf"^encoder layer 0 states: non-finite \(NaN or inf\) values in utterance {cuts[0].id} .* \(3 of 3\)"):
        input_features(layer, audio, torch.device("cpu"))


# ---------------------------------------------------------------- a resumed run writes what the uninterrupted run writes
# wall-clock fields (measured, never equal between two runs): seconds per step and audio seconds per second
PRETRAIN_WALL_CLOCK = ("s_per_step", "audio_s_per_s")


def deterministic_fields(records: list[dict], wall_clock=PRETRAIN_WALL_CLOCK) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in wall_clock} for r in records]


def killed_and_resumed(cfg, monkeypatch, kill_at: int) -> list[dict]:
    """Train ``cfg``, killed (KeyboardInterrupt, nothing cleaned up) in its ``kill_at``-th micro-batch, then resumed to
    its end; returns the records the killed run had written."""
    import speechrq.pretrain.trainer as trainer_mod

    real, calls = trainer_mod.micro_step, [0]

    def killed(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "micro_step", killed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    monkeypatch.setattr(trainer_mod, "micro_step", real)
    written = read_metrics(cfg.out_dir)
    train(cfg, resume=True, progress=False)
    return written


@pytest.fixture
def one_thread_and_a_ticking_clock(monkeypatch):
    """One torch thread (a shared 2-core machine), and a step clock that advances one second per reading."""
    import itertools

    from speechrq.training import engine

    ticks = itertools.count()
    monkeypatch.setattr(engine, "now", lambda: float(next(ticks)), raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_resumed_best_rq_run_logs_every_field_as_the_uninterrupted_run(pretrain_corpus, tmp_path, monkeypatch,
                                                                          one_thread_and_a_ticking_clock):
    """Killed in step 8 (checkpoint at 5, a record at 6 past it), resumed: the log window 4-6 spans the resume, and every
    record (window losses, accuracy, masked fraction, usage of the window and of the run, skipped steps) is the
    uninterrupted run's; the record at 6 the killed run wrote is replaced, not repeated. Step times are measured per
    step (two clock readings: its start and its end), so the resumed run's seconds per step are the uninterrupted run's
    too, and its audio per second follows."""
    make = lambda name: config_from_dict(PretrainConfig, tiny_pretrain_config(  # noqa: E731
        pretrain_corpus, tmp_path / name, optim={"max_steps": 10}, train={"log_every": 3, "checkpoint_every": 5}))
    train(make("ref"), progress=False)
    written = killed_and_resumed(make("run"), monkeypatch, kill_at=8)
    assert [r["step"] for r in written] == [3, 6]  # the killed run logged step 6, past its checkpoint
    ref, run = read_metrics(tmp_path / "ref"), read_metrics(tmp_path / "run")
    assert [r["step"] for r in run] == [3, 6, 9, 10]
    assert deterministic_fields(run) == deterministic_fields(ref)
    assert [r["s_per_step"] for r in run] == [r["s_per_step"] for r in ref] == [1.0] * 4
    assert [r["audio_s_per_s"] for r in run] == [r["audio_s_per_s"] for r in ref]
    a = load_model_state(tmp_path / "ref" / "checkpoints" / "step_00000010")
    b = load_model_state(tmp_path / "run" / "checkpoints" / "step_00000010")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _meters_rank(rank: int, world: int, port: int, out: str) -> None:
    """One of two gloo ranks: the same 6 steps of synthetic micro-batches metered straight through, and metered with a
    checkpoint after step 4 whose meters are loaded into fresh ones (a resume on the same ranks, or on one rank)."""
    import json
    from types import SimpleNamespace

    import torch.distributed as tdist

    from speechrq import distributed as dist
    from speechrq.pretrain.meters import TrainingMeters

    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    ctx = dist.Context(rank=rank, world_size=world)

    def micro(step):  # this rank's micro-batch of a step: fractional audio seconds, targets of a seeded draw
        g = torch.Generator().manual_seed(100 * rank + step)
        targets = torch.randint(0, 8, (2, 5, 2), generator=g)
        result = SimpleNamespace(loss=torch.tensor(1.0 + step / 7 + rank / 3), correct=torch.tensor([step % 3, rank + 1.0]),
                                 num_masked=3 + rank)
        outp = SimpleNamespace(result=result, loss=result.loss, targets=targets, frame_lens=torch.tensor([5, 3 + step % 3]))
        return outp, 0.1 * step + 0.37 * rank

    def steps(meters, which, records):
        for step in which:
            outp, seconds = micro(step)
            meters.add_micro(outp, seconds)
            meters.end_step(meters.step_loss(1, ctx), 0.5 * step, skipped=step == 3)
            if step in (2, 6):
                records.append(meters.record(step, 1e-3, ctx, 2.0, {}))

    straight, resumed = [], []
    steps(TrainingMeters(2, 8, torch.device("cpu")), range(1, 7), straight)
    first = TrainingMeters(2, 8, torch.device("cpu"))
    steps(first, range(1, 5), resumed)
    state = first.state_dict(ctx)
    torch.save(state, f"{out}/state{rank}.pt")
    again = TrainingMeters(2, 8, torch.device("cpu"))
    again.load_state_dict(torch.load(f"{out}/state{rank}.pt", weights_only=True), ctx)
    steps(again, range(5, 7), resumed)
    if rank == 0:
        with open(f"{out}/records.json", "w") as f:
            json.dump({"straight": straight, "resumed": resumed}, f)
    tdist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_meters_resumed_on_two_ranks_report_the_uninterrupted_windows(tmp_path):
    """Two ranks' window sums are kept once (reduced at the checkpoint, restored on rank 0 only): neither lost nor counted
    twice; the losses, grad norms, skipped steps and the run's usage come back on every rank."""
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_meters_rank, args=(2, port, str(tmp_path)), nprocs=2)
    records = json.loads((tmp_path / "records.json").read_text())
    assert [r["step"] for r in records["resumed"]] == [2, 6]
    assert records["resumed"] == records["straight"]
    assert records["straight"][1]["skipped_steps"] == 1 and records["straight"][1]["losses"] == pytest.approx(
        [(2 * (1.0 + s / 7) + 1 / 3) / 2 for s in (3, 4, 5, 6)], rel=1e-6)


def test_a_run_of_skipped_pretraining_steps_continues_across_a_resume(pretrain_corpus, tmp_path, monkeypatch):
    """Every step non-finite, train.max_nonfinite = 3: killed in step 3 after step 2's checkpoint and resumed, the run
    stops at step 3, as the uninterrupted run does, blaming the same utterances, with the same records."""
    import speechrq.pretrain.trainer as trainer_mod
    from speechrq.features import LogMel

    class BrokenLogMel(LogMel):
        def forward(self, wav, wav_lens=None):
            feats, lens = super().forward(wav, wav_lens)
            return feats * float("nan"), lens

    monkeypatch.setattr(trainer_mod, "LogMel", BrokenLogMel)
    make = lambda name: config_from_dict(PretrainConfig, tiny_pretrain_config(  # noqa: E731
        pretrain_corpus, tmp_path / name, optim={"max_steps": 8}, train={"max_nonfinite": 3, "checkpoint_every": 2, "log_every": 2}))
    with pytest.raises(SpeechrqError) as stopped:
        train(make("ref"), progress=False)
    with pytest.raises(SpeechrqError) as again:
        killed_and_resumed(make("run"), monkeypatch, kill_at=3)
    assert "non-finite for 3 steps in a row (up to step 3)" in str(stopped.value)
    assert str(again.value).replace(str(tmp_path / "run"), "R") == str(stopped.value).replace(str(tmp_path / "ref"), "R")
    records = [deterministic_fields(read_metrics(tmp_path / run)) for run in ("run", "ref")]
    assert str(records[0]) == str(records[1])  # as text: the losses are NaN
