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
