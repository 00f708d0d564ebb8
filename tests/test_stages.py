"""Latent-RQ stages: target refresh in a run, resume across it, and branching from a checkpoint."""

from __future__ import annotations

import shutil

import pytest
import torch

from conftest import tiny_pretrain_config
from speechrq.checkpoint import list_checkpoints, load_model_state, load_trainer_state, read_meta, step_dir
from speechrq.config import config_from_dict, config_to_dict
from speechrq.errors import SpeechrqError
from speechrq.pretrain.config import PretrainConfig
from speechrq.pretrain.model import build_model
from speechrq.pretrain.stages import HEADS_SEED
from speechrq.pretrain.step import MASK_SEED_STRIDE
from speechrq.pretrain.trainer import train
from speechrq.training.engine import read_metrics

QUANTIZER_KEYS = ("targets.mel.quantizer.", "targets.latent.quantizers.")


def latent_config(corpus, out, steps=6, refresh=(3,), **targets):
    return config_from_dict(PretrainConfig, tiny_pretrain_config(
        corpus, out, optim={"max_steps": steps, "warmup_steps": 2},
        targets={"layers": [1, 2], "refresh_at": list(refresh), "stats_utterances": 8, **targets},
        train={"checkpoint_every": 1, "keep_last": 20}))


@pytest.fixture(scope="module")
def refreshed_run(pretrain_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("stages") / "run"
    cfg = latent_config(pretrain_corpus, out)
    train(cfg, progress=False)
    return cfg, out


def ckpt(out, step):
    return step_dir(out / "checkpoints", step)


def resume_a_copy(cfg, out, copy, resume_at):
    """A copy of the run ``out`` cut back to ``resume_at`` and resumed to its end; returns the copy."""
    shutil.copytree(out, copy)
    for step, path in list_checkpoints(copy / "checkpoints"):
        if step > resume_at:
            shutil.rmtree(path)
    train(config_from_dict(PretrainConfig, {**config_to_dict(cfg), "out_dir": str(copy)}), resume=True, progress=False)
    return copy


def test_refresh_copies_the_student_and_resets_the_rest(refreshed_run):
    cfg, out = refreshed_run
    before, after = load_model_state(ckpt(out, 3)), load_model_state(ckpt(out, 4))
    assert read_meta(ckpt(out, 3))["stage"] == 0 and read_meta(ckpt(out, 4))["stage"] == 1
    assert [h["start"] for h in read_meta(ckpt(out, 4))["history"]] == [0, 3]
    # θ is exactly the student of step 3
    theta = {k[len("targets.latent.encoder."):]: v for k, v in after.items() if k.startswith("targets.latent.encoder.")}
    student = {k[len("encoder."):]: v for k, v in before.items() if k.startswith("encoder.")}
    assert theta.keys() == student.keys() and all(torch.equal(theta[k], student[k]) for k in student)
    # projections and codebooks are bit-identical before, after, and as the seed makes them
    fresh = build_model(cfg).state_dict()
    for k in fresh:
        if k.startswith(QUANTIZER_KEYS):
            assert torch.equal(before[k], after[k]) and torch.equal(after[k], fresh[k]), k
    # the optimizer was reset: one AdamW step since the refresh, not four
    state = load_trainer_state(ckpt(out, 4))["optimizer"]["state"]
    assert {int(s["step"]) for s in state.values()} == {1}
    assert {int(s["step"]) for s in load_trainer_state(ckpt(out, 3))["optimizer"]["state"].values()} == {3}
    # the schedule restarted: step 4 is the first warm-up step again
    lrs = {r["step"]: r["lr"] for r in read_metrics(out)}
    assert lrs[4] == lrs[1] == cfg.optim.lr / cfg.optim.warmup_steps
    # the heads were re-initialised (seeded by the stage), then moved one AdamW step (|update| <= ~lr)
    model = build_model(cfg)
    model.heads.reset_parameters(torch.Generator().manual_seed(cfg.train.seed * MASK_SEED_STRIDE + HEADS_SEED + 1))
    w = after["heads.proj.weight"]
    assert (w - model.heads.proj.weight).abs().max() <= 1.1 * lrs[4]
    assert (before["heads.proj.weight"] - model.heads.proj.weight).abs().max() > 10 * lrs[4]
    assert [r["stage"] for r in read_metrics(out)] == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("resume_at", [3, 4])  # just before the refresh, just after it
def test_resume_across_a_refresh_reproduces_targets_and_losses(refreshed_run, tmp_path, resume_at):
    cfg, out = refreshed_run
    copy = resume_a_copy(cfg, out, tmp_path / "run", resume_at)
    a, b = load_model_state(ckpt(out, 6)), load_model_state(ckpt(copy, 6))
    theta_keys = [k for k in a if k.startswith("targets.latent.")]
    assert theta_keys and all(torch.equal(a[k], b[k]) for k in theta_keys)  # θ, its statistics, projections, codebooks
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["losses"] for r in read_metrics(out)] == [r["losses"] for r in read_metrics(copy)]


def test_branch_from_a_checkpoint(refreshed_run, pretrain_corpus, tmp_path):
    cfg, out = refreshed_run
    parent = ckpt(out, 2)  # stage 0, step 2
    child = config_from_dict(PretrainConfig, tiny_pretrain_config(
        pretrain_corpus, tmp_path / "child", optim={"max_steps": 5, "warmup_steps": 2},
        targets={"layers": [1, 2], "init_from": str(parent), "stats_utterances": 8}, train={"checkpoint_every": 1, "keep_last": 10}))
    train(child, progress=False)
    records = read_metrics(tmp_path / "child")
    assert [r["step"] for r in records] == [3, 4, 5] and {r["stage"] for r in records} == {1}  # steps continue from 2
    first = load_model_state(ckpt(tmp_path / "child", 3))
    p = load_model_state(parent)
    for k, v in p.items():
        if k.startswith("encoder."):
            assert torch.equal(first["targets.latent.encoder." + k[len("encoder."):]], v)  # θ = the parent's student
        if k.startswith(QUANTIZER_KEYS):
            assert torch.equal(first[k], v)
    hist = read_meta(ckpt(tmp_path / "child", 5))["history"]
    assert [(h["stage"], h["start"]) for h in hist] == [(0, 0), (1, 2)] and str(parent) in hist[1]["targets"]

    other = config_from_dict(PretrainConfig, tiny_pretrain_config(
        pretrain_corpus, tmp_path / "bad", quantizer={"seed": 99},
        targets={"layers": [1, 2], "init_from": str(parent)}))
    with pytest.raises(SpeechrqError, match="quantizer settings .* differ"):
        train(other, progress=False)


def test_latent_configs_are_checked_before_work(pretrain_corpus, tmp_path):
    from speechrq.config import ConfigError

    with pytest.raises(ConfigError, match="4 codebooks do not split evenly over 3 layers"):
        latent_config(pretrain_corpus, tmp_path, layers=[0, 1, 2])
    with pytest.raises(ConfigError, match=r"outside -1..3"):
        latent_config(pretrain_corpus, tmp_path, layers=[1, 4])
    with pytest.raises(ConfigError, match="is not before optim.max_steps"):
        latent_config(pretrain_corpus, tmp_path, refresh=(6,))


def test_a_warm_cache_serves_later_epochs(refreshed_run, pretrain_corpus, tmp_path):
    _, out = refreshed_run
    runs = {}
    for cache in ("off", "memory"):
        cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(
            pretrain_corpus, tmp_path / cache, data={"max_duration": 30.0}, optim={"max_steps": 36, "warmup_steps": 2},
            targets={"layers": [1, 2], "encoder": str(ckpt(out, 3)), "stats_utterances": 8, "cache": cache},
            train={"checkpoint_every": 36}))
        train(cfg, progress=False)
        runs[cache] = read_metrics(tmp_path / cache)
    hit = [r["cache_hit_rate"] for r in runs["memory"]]
    assert hit[0] == 0 and hit[-1] > 0.4  # epoch 2 onwards: every batch from the cache
    assert {r["stage"] for r in runs["memory"]} == {1}
    a = [r["losses"][0] for r in runs["off"]]
    b = [r["losses"][0] for r in runs["memory"]]
    # the cached targets are the ones θ computed in epoch 1; recomputing them in another batch
    # layout differs only by float rounding, so the two runs agree to rounding
    assert b == pytest.approx(a, rel=1e-3)
    # and since an utterance's features no longer depend on its batch, the targets are the same: so are the losses
    assert b == a


def test_a_restart_with_another_target_encoder_never_reads_the_old_targets(refreshed_run, pretrain_corpus, tmp_path):
    _, out = refreshed_run
    run = tmp_path / "run"

    def start(theta_step, cache="disk"):
        cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(
            pretrain_corpus, run if cache == "disk" else tmp_path / f"off{theta_step}", optim={"max_steps": 4, "warmup_steps": 2},
            targets={"layers": [1, 2], "encoder": str(ckpt(out, theta_step)), "stats_utterances": 8, "cache": cache},
            train={"checkpoint_every": 4}))
        train(cfg, progress=False)
        return read_metrics(cfg.out_dir)

    first = start(2)
    assert len(list((run / "target_cache" / "rank0").iterdir())) == 1
    shutil.rmtree(run / "checkpoints")  # as if killed before its first checkpoint
    records = start(3)  # restarted in the same out_dir with another θ
    assert records[0]["cache_hit_rate"] == 0  # the old θ's targets are not read
    assert len(list((run / "target_cache" / "rank0").iterdir())) == 1  # and they are gone
    uncached = start(3, cache="off")
    assert [r["loss"] for r in records] == pytest.approx([r["loss"] for r in uncached], rel=1e-3)
    assert [r["loss"] for r in records] != pytest.approx([r["loss"] for r in first], rel=1e-3)


def test_a_target_encoder_from_another_run_keeps_its_own_feature_statistics(refreshed_run, pretrain_corpus, tmp_path):
    import json

    from speechrq.data.batching import make_loader
    from speechrq.data.corpus import load_cuts
    from speechrq.encoders import FrozenEncoder
    from speechrq.features import LogMel
    from speechrq.models import trim_to_frames

    _, out = refreshed_run
    theta_ckpt = ckpt(out, 3)
    other = tmp_path / "other"  # the same audio, other statistics (another corpus, as far as θ can tell)
    other.mkdir()
    for p in pretrain_corpus.iterdir():
        if p.name != "feature_stats.json":
            (other / p.name).symlink_to(p)
    stats = json.loads((pretrain_corpus / "feature_stats.json").read_text())
    stats["mean"] = [m + 3.0 for m in stats["mean"]]
    stats["std"] = [2.0 * s for s in stats["std"]]
    (other / "feature_stats.json").write_text(json.dumps(stats))
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(
        other, tmp_path / "run", optim={"max_steps": 2, "warmup_steps": 1},
        targets={"layers": [1, 2], "encoder": str(theta_ckpt), "stats_utterances": 8}, train={"checkpoint_every": 2}))
    train(cfg, progress=False)
    model = build_model(cfg)
    model.load_state_dict(load_model_state(ckpt(tmp_path / "run", 2)))
    parent = load_model_state(theta_ckpt)
    assert torch.equal(model.targets.latent.input_normalizer.mean, parent["normalizer.mean"])
    assert not torch.equal(model.normalizer.mean, parent["normalizer.mean"])  # the student uses this corpus's

    # θ's states in the new run are exactly what θ computes in its own run
    batch = next(iter(make_loader(load_cuts(pretrain_corpus, "dev").subset(first=3), 60.0, shuffle=False, num_buckets=1)))
    raw, lens = trim_to_frames(*LogMel()(batch["audio"], batch["audio_lens"]))
    with torch.no_grad():
        got, _ = model.targets.latent.hidden_states(model.normalizer(raw, lens), lens, raw=raw)
    own, _ = FrozenEncoder.from_checkpoint(theta_ckpt)(batch["audio"], batch["audio_lens"])
    for k, layer in enumerate(cfg.target_layers()):
        assert torch.allclose(got[k], own[layer + 1], atol=1e-5)

    # a checkpoint of such a run saved before θ kept its statistics resumes, θ reading the student's (as it then did)
    from safetensors.torch import save_file

    path = ckpt(tmp_path / "run", 2) / "model.safetensors"
    save_file({k: v for k, v in load_model_state(path.parent).items() if not k.startswith("targets.latent.input_normalizer.")}, str(path))
    resumed = config_from_dict(PretrainConfig, {**config_to_dict(cfg), "optim": {**config_to_dict(cfg)["optim"], "max_steps": 3}})
    train(resumed, resume=True, progress=False)
    state = load_model_state(ckpt(tmp_path / "run", 3))
    assert torch.equal(state["targets.latent.input_normalizer.mean"], state["normalizer.mean"])


@pytest.fixture(scope="module")
def auto_run(pretrain_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("auto") / "run"
    cfg = latent_config(pretrain_corpus, out, refresh=(2, 4), layers="auto")
    train(cfg, progress=False)
    return cfg, out


def test_auto_layers_are_picked_by_the_ranking_at_every_refresh(auto_run, pretrain_corpus, tmp_path):
    cfg, out = auto_run
    history = read_meta(ckpt(out, 6))["history"]
    assert [h["stage"] for h in history] == [0, 1, 2]
    for entry in history[1:]:
        scores = entry["layer_scores"]
        assert set(scores) == {"Mel", "layer -1", "layer 0", "layer 1", "layer 2", "layer 3"}
        best = sorted(range(-1, 4), key=lambda k: (-scores[f"layer {k}"], k))[:2]
        assert entry["layers"] == sorted(best)
    # the picks are the model's: θ's states at those layers give the saved targets' statistics
    from speechrq.encoders.frozen import PretrainCheckpoint

    assert PretrainCheckpoint(ckpt(out, 6)).target_layers() == history[-1]["layers"]
    # deterministic: a second run picks the same layers and reaches the same weights
    again = tmp_path / "again"
    train(config_from_dict(PretrainConfig, {**config_to_dict(cfg), "out_dir": str(again)}), progress=False)
    assert read_meta(ckpt(again, 6))["history"] == history
    a, b = load_model_state(ckpt(out, 6)), load_model_state(ckpt(again, 6))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("resume_at", [2, 3])  # at the first refresh's step, and inside stage 1
def test_auto_layers_resume_exactly_across_a_refresh(auto_run, tmp_path, resume_at):
    cfg, out = auto_run
    copy = resume_a_copy(cfg, out, tmp_path / "run", resume_at)
    a, b = load_model_state(ckpt(out, 6)), load_model_state(ckpt(copy, 6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_meta(ckpt(copy, 6))["history"] == read_meta(ckpt(out, 6))["history"]
    assert [r["losses"] for r in read_metrics(out)] == [r["losses"] for r in read_metrics(copy)]


def test_lr_after_refresh_continue_keeps_one_schedule(pretrain_corpus, tmp_path):
    from speechrq.training.optim import lr_factor

    cfg = latent_config(pretrain_corpus, tmp_path / "run", lr_after_refresh="continue")
    train(cfg, progress=False)
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "run")}
    assert lrs[4] == pytest.approx(cfg.optim.lr * lr_factor(3, cfg.optim, 0))  # no second warm-up
    assert lrs[4] != lrs[1]


def test_standardize_off_projects_theta_states_as_they_are(pretrain_corpus, tmp_path):
    cfg = latent_config(pretrain_corpus, tmp_path / "run", steps=4, standardize=False)
    train(cfg, progress=False)
    state = load_model_state(ckpt(tmp_path / "run", 4))
    means = [v for k, v in state.items() if k.startswith("targets.latent.normalizers.") and k.endswith("mean")]
    stds = [v for k, v in state.items() if k.startswith("targets.latent.normalizers.") and k.endswith("std")]
    assert means and all(torch.equal(m, torch.zeros_like(m)) for m in means) and all(torch.equal(s, torch.ones_like(s)) for s in stds)


def test_a_mel_branch_continues_best_rq_with_fresh_heads(refreshed_run, pretrain_corpus, tmp_path):
    cfg, out = refreshed_run
    parent = ckpt(out, 3)  # stage 0
    branch = config_from_dict(PretrainConfig, tiny_pretrain_config(
        pretrain_corpus, tmp_path / "b", optim={"max_steps": 5, "warmup_steps": 2},
        targets={"init_from": str(parent), "branch_targets": "mel", "layers": [1, 2]}, train={"checkpoint_every": 1}))
    train(branch, progress=False)
    meta = read_meta(ckpt(tmp_path / "b", 5))
    assert meta["stage"] == 0 and meta["history"][-1]["source"] == "mel" and meta["history"][-1]["start"] == 3
    assert [r["stage"] for r in read_metrics(tmp_path / "b")] == [0, 0]
    with pytest.raises(Exception, match="branch_targets"):
        config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "c", targets={"branch_targets": "mel"}))


def test_a_resumed_latent_stage_logs_every_field_as_the_uninterrupted_run(pretrain_corpus, tmp_path, monkeypatch):
    """A Latent-RQ run (refresh at 3) killed in step 7 of stage 1 (checkpoint at 5, a record at 6 past it) and resumed:
    every record equals the uninterrupted run's but the wall-clock ones, the stage's codeword usage since the refresh
    included; each step counts one tick of a clock read at its start and end."""
    import itertools

    import speechrq.pretrain.trainer as trainer_mod
    from speechrq.training import engine

    ticks = itertools.count()
    monkeypatch.setattr(engine, "now", lambda: float(next(ticks)), raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        make = lambda name: config_from_dict(PretrainConfig, tiny_pretrain_config(  # noqa: E731
            pretrain_corpus, tmp_path / name, optim={"max_steps": 8, "warmup_steps": 2},
            targets={"layers": [1, 2], "refresh_at": [3], "stats_utterances": 8},
            train={"log_every": 3, "checkpoint_every": 5, "keep_last": 5}))
        train(make("ref"), progress=False)
        real, calls = trainer_mod.micro_step, [0]

        def killed(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 7:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(trainer_mod, "micro_step", killed)
        with pytest.raises(KeyboardInterrupt):
            train(make("run"), progress=False)
        monkeypatch.setattr(trainer_mod, "micro_step", real)
        assert [r["step"] for r in read_metrics(tmp_path / "run")] == [3, 6]
        train(make("run"), resume=True, progress=False)
    finally:
        torch.set_num_threads(threads)
    wall = ("s_per_step", "audio_s_per_s")
    ref, run = read_metrics(tmp_path / "ref"), read_metrics(tmp_path / "run")
    assert [r["step"] for r in run] == [3, 6, 8] and [r["stage"] for r in run] == [0, 1, 1]
    assert [{k: v for k, v in r.items() if k not in wall} for r in run] == [{k: v for k, v in r.items() if k not in wall} for r in ref]
    assert [r["s_per_step"] for r in run] == [r["s_per_step"] for r in ref]
    assert [r["audio_s_per_s"] for r in run] == [r["audio_s_per_s"] for r in ref]
