"""The probes' training loop (speechrq.evaluate.probes.run_probe) on states made here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechrq.encoders import HiddenStateCache, pad_states
from speechrq.evaluate.probes import StateStore, run_probe


def _store(tmp_path, n: int = 48) -> tuple[StateStore, dict]:
    """``n`` utterances of 3 states x T_i frames x 8 dims whose phones and classes are readable from the states."""
    rng = np.random.default_rng(0)
    cache = HiddenStateCache(tmp_path, "fp")
    items = []
    for i in range(n):
        phones = tuple(rng.choice(["a", "b", "c"], size=int(rng.integers(2, 5))))
        frames = np.repeat([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], 1, axis=0)[[("a", "b", "c").index(p) for p in phones]]
        x = np.repeat(frames, 3, axis=0)  # 3 frames per phone
        states = np.concatenate([x, rng.normal(size=(len(x), 5))], axis=1)[None].repeat(3, 0) + rng.normal(0, 0.3, (3, len(x), 8))
        cache.put(f"u{i}", states.astype(np.float16))
        items.append((f"u{i}", phones))
    ids = [i for i, _ in items]
    data = {"train": items[:32], "dev": items[32:40], "test": items[40:]}
    return StateStore(cache, ids), data


@pytest.mark.parametrize("task", ["pr", "er"])
def test_learning_rates_trained_side_by_side_are_each_trained_as_if_alone(tmp_path, task):
    """The sweep trains every lr on the same batches in one pass: each lr's best dev, and the chosen probe's scores,
    epoch and layer weights, are the bits of that lr trained alone."""
    store, data = _store(tmp_path)
    if task == "er":  # an utterance label: the first phone
        data = {role: [(i, lab[0]) for i, lab in items] for role, items in data.items()}
    lrs = [3e-3, 3e-2]
    both = run_probe(task, store, data, lrs, epochs=4, seed=1)
    alone = [run_probe(task, store, data, [lr], epochs=4, seed=1) for lr in lrs]
    assert both.sweep == {f"{lr:g}": r.dev for lr, r in zip(lrs, alone)}
    chosen = alone[lrs.index(both.lr)]
    assert (both.test, both.dev, both.epoch, both.layer_weights) == (chosen.test, chosen.dev, chosen.epoch, chosen.layer_weights)
    better = min if task == "pr" else max
    assert both.dev == better(r.dev for r in alone)


def test_padded_states_are_zero_beyond_each_length():
    a, b = torch.randn(3, 5, 4).half(), torch.randn(3, 2, 4).half()
    states, lens = pad_states([a, b])
    assert states.dtype == torch.float32 and states.shape == (2, 3, 5, 4) and lens.tolist() == [5, 2]
    assert torch.equal(states[0], a.float()) and torch.equal(states[1, :, :2], b.float()) and not states[1, :, 2:].any()
