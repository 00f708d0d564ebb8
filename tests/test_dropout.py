"""``speechrq.models.dropout``: the CPU dropout mask drawn 64 bits per four elements."""

from __future__ import annotations

import pytest
import torch

from speechrq.models.conformer import RotarySelfAttention
from speechrq.models.dropout import LEVELS, Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_element_is_dropped_with_p_and_the_rest_scaled_to_keep_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(1 << 22)
    y = dropout(x, p)
    drop = round(p * LEVELS)
    scale = LEVELS / (LEVELS - drop)
    assert y.unique().tolist() == [0.0, pytest.approx(scale)]
    kept = y != 0
    # every one of the four 16-bit lanes of a word is uniform (a word drawn over half the range biases its top lane)
    for lane in range(4):
        assert kept.view(-1, 4)[:, lane].float().mean().item() == pytest.approx(1 - drop / LEVELS, abs=0.003)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # unbiased: E[y] = x


def test_a_seed_draws_the_same_mask_and_another_seed_another():
    x = torch.randn(3, 50, 7)  # an element count that is not a multiple of four
    torch.manual_seed(1)
    a = dropout(x, 0.3)
    torch.manual_seed(1)
    b = dropout(x, 0.3)
    torch.manual_seed(2)
    c = dropout(x, 0.3)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape


def test_identity_when_not_training_or_p_zero_and_zero_at_one():
    x = torch.randn(4, 5)
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0) is x
    assert dropout(x, 1e-6) is x  # rounds to no dropped level
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout(x, 1.5)
    module = Dropout(0.5).eval()
    assert module(x) is x and module.state_dict() == {}


def test_the_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(0)
    x = torch.randn(6, 33, requires_grad=True)
    y = dropout(x, 0.25)
    y.sum().backward()
    scale = LEVELS / (LEVELS - round(0.25 * LEVELS))
    assert torch.allclose(x.grad, (y != 0).float() * scale)
    assert torch.allclose(y, x.detach() * x.grad)


def test_attention_in_training_on_the_cpu_is_sdpa_with_its_weights_dropped():
    """The CPU training path computes attention by hand so the weights' dropout takes the cheaper mask: with nothing
    dropped it equals scaled_dot_product_attention (the eval path), padding included; with p = 0.5 it differs."""
    torch.manual_seed(0)
    attn = RotarySelfAttention(32, 4, dropout=1e-6)
    x = torch.randn(3, 20, 32)
    pad = torch.zeros(3, 20, dtype=torch.bool)
    pad[1, 15:] = True
    pad[2, 5:] = True
    for mask in (None, pad):
        assert torch.allclose(attn.train()(x, mask), attn.eval()(x, mask), atol=1e-5)
    evaluated = attn.eval()(x, pad)
    attn.dropout = 0.5
    assert not torch.allclose(attn.train()(x, pad), evaluated, atol=1e-3)
    # an utterance with every key padded: finite outputs and gradients (with -inf its softmax is NaN, and so is every
    # weight's gradient), and the other utterances' outputs as before
    attn.dropout = 0.1
    torch.manual_seed(3)
    before = attn.train()(x, pad)
    pad[0] = True
    torch.manual_seed(3)
    y = attn.train()(x, pad)
    y.sum().backward()
    assert torch.isfinite(y).all() and all(torch.isfinite(p.grad).all() for p in attn.parameters())
    assert torch.equal(y[1:], before[1:])
