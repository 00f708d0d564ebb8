"""Checkpoints: atomic directories, safe to load, pruned to the newest few."""

from __future__ import annotations

import os

import pytest
import torch

from speechrq.checkpoint import (latest_checkpoint, list_checkpoints, load_model_state, load_trainer_state, prune_checkpoints,
                                 read_meta, save_checkpoint, step_dir)
from speechrq.errors import SpeechrqError


def save(root, step, value=0.0):
    return save_checkpoint(step_dir(root, step), {"w": torch.full((2, 3), value)}, {"opt": {"lr": 0.1}, "rng": torch.get_rng_state()},
                           {"step": step})


def test_round_trip_and_weights_only(tmp_path):
    path = save(tmp_path, 5, 1.5)
    assert torch.equal(load_model_state(path)["w"], torch.full((2, 3), 1.5))
    assert load_trainer_state(path)["opt"] == {"lr": 0.1}  # torch.load(weights_only=True)
    assert read_meta(path)["step"] == 5
    assert oct(os.stat(path / "model.safetensors").st_mode & 0o777) == oct(0o666 & ~_umask())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _umask():
    u = os.umask(0)
    os.umask(u)
    return u


def test_latest_ignores_partial_and_prune_keeps_newest(tmp_path):
    for s in (1, 2, 3, 4):
        save(tmp_path, s)
    (tmp_path / ".step_00000005.tmp-123").mkdir()  # a writer killed mid-way
    (tmp_path / "step_00000006").mkdir()  # no meta.json: incomplete
    assert latest_checkpoint(tmp_path).name == "step_00000004"
    prune_checkpoints(tmp_path, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert not (tmp_path / ".step_00000005.tmp-123").exists()


def test_resaving_a_step_replaces_it(tmp_path):
    save(tmp_path, 3, 1.0)
    save(tmp_path, 3, 2.0)
    assert load_model_state(step_dir(tmp_path, 3))["w"][0, 0] == 2.0


def test_a_resave_killed_between_its_renames_loses_nothing(tmp_path, monkeypatch):
    import speechrq.checkpoint as ckpt

    save(tmp_path, 3, 1.0)
    real, calls = os.replace, []

    def dies_on_the_second_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the old copy is aside, the new one not yet in place: the job is killed here
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", dies_on_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, 3, 2.0)
    monkeypatch.setattr(ckpt.os, "replace", real)
    assert not step_dir(tmp_path, 3).exists()  # the moment the old code lost the step for good
    # the next start finds the old copy again, and pruning keeps it
    assert latest_checkpoint(tmp_path) == step_dir(tmp_path, 3)
    prune_checkpoints(tmp_path, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3]
    assert load_model_state(step_dir(tmp_path, 3))["w"][0, 0] == 1.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_damaged_checkpoints_are_one_line_errors(tmp_path):
    path = save(tmp_path, 1)
    (path / "model.safetensors").write_bytes(b"garbage")
    (path / "trainer.pt").write_bytes(b"garbage")
    with pytest.raises(SpeechrqError, match="model.safetensors: cannot read"):
        load_model_state(path)
    with pytest.raises(SpeechrqError, match="trainer.pt: cannot read"):
        load_trainer_state(path)
    with pytest.raises(SpeechrqError, match="not a speechrq checkpoint"):
        read_meta(tmp_path)


class _RunsCode:
    """A pickle that would run code when loaded (it would create the marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_a_trainer_state_that_would_run_code_is_refused(tmp_path):
    path = save(tmp_path, 1)
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _RunsCode(marker)}, path / "trainer.pt")
    with pytest.raises(SpeechrqError, match="trainer.pt: cannot read"):
        load_trainer_state(path)
    assert not marker.exists()


# ---------------------------------------------------------------- every saved model loads whole (issue 34.6)

def _edit_model_file(path, edit):
    from safetensors.torch import load_file, save_file

    state = load_file(str(path / "model.safetensors"))
    edit(state)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})


def test_load_weights_loads_exactly_the_files_weights_or_refuses_in_one_line():
    from speechrq.checkpoint import check_weights, load_weights

    torch.manual_seed(0)
    src, dst = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)), torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    load_weights(dst, src.state_dict(), "f.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    cases = [
        ({k: v for k, v in src.state_dict().items() if k != "1.bias"}, "1 missing (1.bias)"),
        ({k: v for k, v in src.state_dict().items() if k.startswith("1.")}, "2 missing (0.weight, 0.bias)"),
        (src.state_dict() | {"2.weight": torch.zeros(1), "2.bias": torch.zeros(1), "3.weight": torch.zeros(1), "3.bias": torch.zeros(1)},
         "4 unexpected (2.weight, 2.bias, 3.weight, ...)"),
        (src.state_dict() | {"0.weight": torch.zeros(4, 5)}, "1 of another shape (0.weight: (4, 5) in the file, (4, 3) in the model)"),
        (src.state_dict() | {"0.weight": src.state_dict()["0.weight"].T}, "1 of another shape (0.weight: (3, 4) in the file, (4, 3) in the model)"),
        ({k: v for k, v in src.state_dict().items() if k != "1.bias"} | {"x": torch.zeros(1), "0.bias": torch.zeros(2)},
         "1 missing (1.bias), 1 unexpected (x), 1 of another shape (0.bias: (2,) in the file, (4,) in the model)"),
    ]
    for state, why in cases:
        with pytest.raises(SpeechrqError) as e:
            load_weights(dst, state, "f.safetensors", "probe")
        assert str(e.value) == f"f.safetensors: the weights do not load whole into the probe: {why}"
        assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())  # nothing was loaded
    check_weights(dst.state_dict(), src.state_dict(), "f")


def _tiny_run(corpus, out, steps, **sections):
    from conftest import tiny_pretrain_config

    from speechrq.config import config_from_dict
    from speechrq.pretrain.config import PretrainConfig

    train = {"checkpoint_every": 2, "keep_last": 5} | sections.pop("train", {})
    return config_from_dict(PretrainConfig, tiny_pretrain_config(corpus, out, optim={"max_steps": steps, "warmup_steps": 1}, train=train,
                                                                 **sections))


@pytest.fixture(scope="module")
def best_rq_parent(pretrain_corpus, tmp_path_factory):
    """A plain BEST-RQ run (no latent targets in its checkpoints), 2 steps."""
    from speechrq.pretrain.trainer import train

    cfg = _tiny_run(pretrain_corpus, tmp_path_factory.mktemp("parent") / "run", 2)
    return cfg, train(cfg, progress=False)


def test_a_pretrain_resume_from_a_checkpoint_with_a_weight_missing_is_refused_in_one_line(best_rq_parent, tmp_path):
    import shutil

    from speechrq.config import config_from_dict, config_to_dict
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.trainer import train

    cfg, last = best_rq_parent
    run = tmp_path / "run"
    shutil.copytree(last.parents[1], run)
    cfg = config_from_dict(PretrainConfig, config_to_dict(cfg) | {"out_dir": str(run)}, overrides=["optim.max_steps=4"])
    ckpt = step_dir(run / "checkpoints", 2)
    _edit_model_file(ckpt, lambda s: s.pop("encoder.encoder.blocks.0.ffn1.1.weight"))
    with pytest.raises(SpeechrqError) as e:
        train(cfg, resume=True, progress=False)
    assert str(e.value) == (f"{ckpt / 'model.safetensors'}: the weights do not load whole into the pre-training model: "
                            "1 missing (encoder.encoder.blocks.0.ffn1.1.weight)")


def test_a_branch_takes_its_parents_weights_whole_or_is_refused(best_rq_parent, pretrain_corpus, tmp_path):
    """``targets.init_from``: the student, its statistics and the quantizers come from the parent whole; a parent without
    latent targets (plain BEST-RQ) gives the seed's own latent quantizers; a weight missing, extra or reshaped is refused."""
    import shutil

    from speechrq.features import FeatureStats
    from speechrq.pretrain.model import build_model
    from speechrq.pretrain.stages import branch_from

    _, parent = best_rq_parent
    cfg = _tiny_run(pretrain_corpus, tmp_path / "child", 6, targets={"layers": [1, 2], "init_from": str(parent)})
    stats = FeatureStats.load(pretrain_corpus / "feature_stats.json")
    model = build_model(cfg, stats)
    saved = load_model_state(parent)
    assert not any(k.startswith("targets.latent.") for k in saved)
    assert branch_from(str(parent), model, cfg)[0] == 2
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in saved.items() if not k.startswith(("heads.", "targets.stage")))

    # a parent whose θ came from another checkpoint (with that run's own log-Mel statistics): those statistics are θ's,
    # and θ is now the student, so they are not taken, but its latent quantizers are
    from speechrq.config import config_to_dict

    theta_run = _tiny_run(pretrain_corpus, tmp_path / "theta_run", 6, targets={"layers": [1, 2], "encoder": str(parent)})
    with_theta = build_model(theta_run, stats)
    with torch.no_grad():
        for q in with_theta.targets.latent.quantizers:
            q.codebooks.add_(1.0)  # distinguishable from the seed's own
    theta_parent = save_checkpoint(step_dir(tmp_path / "theta_run", 2), with_theta.state_dict(), None,
                                   {"config": config_to_dict(theta_run), "step": 2, "stage": 1})
    assert any(k.startswith("targets.latent.input_normalizer.") for k in load_model_state(theta_parent))
    model = build_model(cfg, stats)
    assert branch_from(str(theta_parent), model, cfg)[0] == 2
    assert all(torch.equal(model.state_dict()[k], v) for k, v in with_theta.state_dict().items() if k.startswith("targets.latent.quantizers."))

    for name, edit, why in [
        ("missing", lambda s: s.pop("encoder.frontend.proj.weight"), "1 missing (encoder.frontend.proj.weight)"),
        ("extra", lambda s: s.__setitem__("encoder.encoder.blocks.7.attn.out.bias", torch.zeros(2)),
         "1 unexpected (encoder.encoder.blocks.7.attn.out.bias)"),
        ("shape", lambda s: s.__setitem__("normalizer.mean", torch.zeros(7)), "1 of another shape (normalizer.mean: (7,) in the file, (80,) in the model)"),
    ]:
        broken = tmp_path / name
        shutil.copytree(parent, broken)
        _edit_model_file(broken, edit)
        with pytest.raises(SpeechrqError) as e:
            branch_from(str(broken), build_model(cfg, stats), cfg)
        assert str(e.value) == (f"{broken / 'model.safetensors'}: the weights do not load whole into the branch's student, "
                                f"feature statistics and quantizers: {why}")


def test_a_target_encoder_from_a_checkpoint_loads_whole_or_is_refused(best_rq_parent, pretrain_corpus, tmp_path):
    """``targets.encoder: CHECKPOINT``: θ and its own log-Mel statistics come from the checkpoint whole."""
    import shutil

    from speechrq.pretrain.trainer import train

    _, parent = best_rq_parent
    for name, edit, why in [("theta", lambda s: s.pop("encoder.encoder.blocks.1.attn.qkv.bias"), r"\(encoder\.\*\): 1 missing \(encoder\.blocks\.1\.attn\.qkv\.bias\)"),
                            ("stats", lambda s: s.pop("normalizer.std"), r"\(normalizer\.\*\): 1 missing \(std\)")]:
        broken = tmp_path / name
        shutil.copytree(parent, broken)
        _edit_model_file(broken, edit)
        cfg = _tiny_run(pretrain_corpus, tmp_path / f"run_{name}", 2, targets={"layers": [1, 2], "encoder": str(broken), "stats_utterances": 4})
        with pytest.raises(SpeechrqError, match=rf"^{broken / 'model.safetensors'}: the weights do not load whole into the \w+ {why}$"):
            train(cfg, progress=False)


def test_an_asr_checkpoint_loads_whole_or_is_refused_in_one_line(tmp_path):
    from speechrq.asr.decode import Recognizer
    from speechrq.asr.trainer import TOKENIZER_KEY, as_bytes_tensor, build
    from speechrq.text import BPETokenizer

    tok = BPETokenizer.characters(["hello world", "a test"], tmp_path / "tok.model")
    spec = {"input": "units", "vocab": len(tok), "preset": "tiny", "stream_weighting": "mean", "dropout": None, "num_streams": 2,
            "unit_vocab": 16, "input_dim": 0}
    torch.manual_seed(0)
    state = build(spec).state_dict() | {TOKENIZER_KEY: as_bytes_tensor(tok.path)}
    path = save_checkpoint(tmp_path / "good", state, None, {"kind": "speechrq-asr", "model": spec, "step": 1})
    rec = Recognizer(path, device="cpu")
    assert all(torch.equal(rec.model.state_dict()[k], v) for k, v in state.items() if k != TOKENIZER_KEY)
    name = next(k for k in state if k.startswith("decoder.") and k.endswith(".weight"))
    for sub, edit, why in [("missing", lambda s: s.pop(name), f"1 missing ({name})"),
                           ("extra", lambda s: s.__setitem__("lm.weight", torch.zeros(1)), "1 unexpected (lm.weight)")]:
        broken = save_checkpoint(tmp_path / sub, {k: v for k, v in state.items()}, None, {"kind": "speechrq-asr", "model": spec, "step": 1})
        _edit_model_file(broken, edit)
        with pytest.raises(SpeechrqError) as e:
            Recognizer(broken, device="cpu")
        assert str(e.value) == f"{broken / 'model.safetensors'}: the weights do not load whole into the ASR model: {why}"


@pytest.mark.parametrize("kind", ["kmeans", "rpq"])
def test_a_unit_quantizer_loads_whole_or_is_refused_in_one_line(kind, tmp_path):
    import numpy as np
    from safetensors.numpy import load_file, save_file

    from speechrq.units.quantizers import QuantizerSpec, UnitQuantizer

    x = np.random.default_rng(0).normal(size=(400, 16)).astype(np.float32)
    spec = QuantizerSpec(kind=kind, k=4, niter=2, **({"num_subspaces": 3, "alpha": 0.25} if kind == "rpq" else {}))
    q = UnitQuantizer.fit(x, spec)
    q.save(tmp_path / "good")
    again = UnitQuantizer.load(tmp_path / "good")
    assert np.array_equal(again.encode(x), q.encode(x))
    last = q.num_streams - 1
    cases = [("missing", lambda t: t.pop(f"centroids.{last}"), f"1 missing (centroids.{last})"),
             ("extra", lambda t: t.__setitem__(f"centroids.{last + 1}", t["centroids.0"]), f"1 unexpected (centroids.{last + 1})"),
             ("shape", lambda t: t.__setitem__("centroids.0", t["centroids.0"][:3]), "1 of another shape (centroids.0: (3, "),
             ("mean", lambda t: t.__setitem__("mean", t["mean"][:8]), "1 of another shape (mean: (8,) in the file, (16,) in the model)")]
    for name, edit, why in cases:
        d = q.save(tmp_path / name)
        t = load_file(str(d / "units.safetensors"))
        edit(t)
        save_file(t, str(d / "units.safetensors"))
        with pytest.raises(SpeechrqError) as e:
            UnitQuantizer.load(d)
        assert "\n" not in str(e.value) and str(e.value).startswith(f"{d / 'units.safetensors'}: the weights do not match") and why in str(e.value)
