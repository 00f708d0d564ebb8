"""Masked-prediction loss, accuracy and the codebook-usage meter against plain references."""

from __future__ import annotations

import math

import torch

from speechrq.pretrain.objective import CodebookUsage, PredictionHeads, masked_prediction_loss


def test_loss_is_mean_cross_entropy_over_frames_and_codebooks():
    g = torch.Generator().manual_seed(0)
    heads = PredictionHeads(dim=8, num_codebooks=3, codebook_size=5)
    x = torch.randn(7, 8, generator=g)
    targets = torch.randint(0, 5, (7, 3), generator=g)
    logits = heads(x)
    assert logits.shape == (7, 3, 5)
    res = masked_prediction_loss(logits, targets)
    # reference: per frame, per codebook -log softmax
    ref, correct = 0.0, [0, 0, 0]
    for m in range(7):
        for n in range(3):
            row = logits[m, n].detach().double()
            ref += -(row[targets[m, n]] - torch.logsumexp(row, 0)).item()
            correct[n] += int(row.argmax() == targets[m, n])
    assert math.isclose(res.loss.item(), ref / 21, rel_tol=1e-5)
    assert res.correct.tolist() == correct and res.num_masked == 7


def test_the_fused_loss_has_cross_entropys_value_and_gradient_in_every_dtype():
    """The loss's own backward (softmax - onehot, in place) against autograd through ``F.cross_entropy``."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        logits = (3 * torch.randn(40, 4, 64, generator=g)).to(dtype).requires_grad_()
        targets = torch.randint(0, 64, (40, 4), generator=g)
        res = masked_prediction_loss(logits, targets)
        (2.5 * res.loss).backward()
        ours = logits.grad.clone()
        logits.grad = None
        ref = F.cross_entropy(logits.float().reshape(-1, 64), targets.reshape(-1))
        (2.5 * ref).backward()
        assert ours.dtype == dtype
        assert torch.allclose(res.loss, ref, rtol=1e-6, atol=1e-6), dtype
        assert torch.allclose(ours.double(), logits.grad.double(), rtol=1e-5, atol=1e-7), dtype
        assert res.correct.tolist() == (logits.detach().float().argmax(-1) == targets).sum(0).tolist()


def test_no_masked_frames_gives_zero_loss_with_a_graph():
    heads = PredictionHeads(4, 2, 3)
    res = masked_prediction_loss(heads(torch.zeros(0, 4)), torch.zeros(0, 2, dtype=torch.long))
    res.loss.backward()
    assert res.loss.item() == 0.0 and res.num_masked == 0 and heads.proj.weight.grad is not None


def test_reset_parameters_is_seeded_and_changes_the_heads():
    heads = PredictionHeads(4, 2, 3)
    before = heads.proj.weight.clone()
    heads.reset_parameters(torch.Generator().manual_seed(1))
    w1 = heads.proj.weight.clone()
    heads.reset_parameters(torch.Generator().manual_seed(1))
    assert not torch.equal(before, w1) and torch.equal(w1, heads.proj.weight)


def test_usage_share_and_entropy():
    usage = CodebookUsage(num_codebooks=2, codebook_size=4)
    # codebook 0 uses codewords 0 and 1 equally; codebook 1 uses only codeword 3
    usage.update(torch.tensor([[0, 3], [1, 3], [0, 3], [1, 3]]))
    s = usage.summary()
    assert s["used"] == [0.5, 0.25]
    assert math.isclose(s["entropy_bits"][0], 1.0) and s["entropy_bits"][1] == 0.0
    assert math.isclose(s["perplexity"][0], 2.0)
    assert usage.counts.tolist() == [[2, 2, 0, 0], [0, 0, 0, 4]]
    usage.reset()
    assert usage.counts.sum() == 0


def test_the_heads_equal_nn_linear_bitwise_forward_and_backward():
    """On a CPU in fp32 the heads of width up to 256 add the bias after the product (no copy of it into the output
    first): the same bits as ``nn.Linear``, logits and every gradient; wider ones and autocast are ``nn.Linear``."""
    for dim in (96, 256, 512):  # the tiny and small presets' widths take the product and bias apart; 512 is nn.Linear
        for m in (1, 37, 611):
            torch.manual_seed(dim + m)
            heads = PredictionHeads(dim, 8, 512)
            x = torch.randn(m, dim, requires_grad=True)
            out = heads(x)
            ref = torch.nn.functional.linear(x, heads.proj.weight, heads.proj.bias).view(m, 8, 512)
            assert torch.equal(out, ref), (dim, m)
            g = torch.randn_like(out)
            got = torch.autograd.grad(out, (x, heads.proj.weight, heads.proj.bias), g)
            want = torch.autograd.grad(ref, (x, heads.proj.weight, heads.proj.bias), g)
            assert all(torch.equal(a, b) for a, b in zip(got, want)), (dim, m)
    heads, x = PredictionHeads(96, 8, 512), torch.randn(37, 96)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = heads(x)
    assert low.dtype == torch.bfloat16 and low.shape == (37, 8, 512)
    ref = torch.nn.functional.linear(x, heads.proj.weight, heads.proj.bias).view(37, 8, 512)
    assert torch.allclose(low.float(), ref, atol=0.1)
