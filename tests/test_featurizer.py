"""The featurizer: the weighted sum of a frozen encoder's layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechrq.evaluate.featurizer import WeightedSum


def test_weighted_sum():
    states = torch.randn(2, 3, 7, 4)
    ws = WeightedSum(3)
    assert torch.allclose(ws(states), states.mean(1), atol=1e-6)  # equal weights at start
    with torch.no_grad():
        ws.weights.copy_(torch.tensor([0.0, 50.0, 0.0]))
    assert torch.allclose(ws(states), states[:, 1], atol=1e-5)
    assert float(ws.layer_weights().detach().sum()) == pytest.approx(1.0)
    out = WeightedSum(3, layer_norm=True)(states, torch.tensor([7, 4]))
    assert (out[1, 4:] == 0).all() and np.isfinite(out.detach().numpy()).all()
