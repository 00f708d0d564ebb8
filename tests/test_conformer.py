"""The Conformer encoder: presets, early exit, padding, frame grid."""

from __future__ import annotations

import pytest
import torch

from speechrq.errors import SpeechrqError
from speechrq.models import speech_encoder


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_preset_is_150m_with_its_softmax_heads():
    m = speech_encoder("paper")
    heads = 18 * 4096 * (512 + 1)  # 18 linear softmax heads of 4096 (issue 3)
    total = _params(m) + heads
    assert 0.9 * 150e6 <= total <= 1.1 * 150e6, total
    assert m.num_layers == 17 and m.config.dim == 512 and m.config.ffn_dim == 2048


def test_extract_features_shapes_and_early_exit():
    torch.manual_seed(0)
    m = speech_encoder("tiny").eval()
    feats, lens = torch.randn(2, 103, 80), torch.tensor([103, 61])
    states, out_lens = m.extract_features(feats, lens)
    assert len(states) == m.num_layers + 1  # front end (-1) and every block
    assert all(s.shape == (2, 25, m.config.dim) for s in states)
    assert out_lens.tolist() == [25, 15]
    early, _ = m.extract_features(feats, lens, num_layers=2)
    assert len(early) == 3
    for a, b in zip(early, states[:3]):
        torch.testing.assert_close(a, b)


def test_padding_does_not_change_valid_frames():
    torch.manual_seed(0)
    m = speech_encoder("tiny").eval()
    feats = torch.randn(2, 120, 80)
    states, lens = m.extract_features(feats, torch.tensor([120, 64]))
    alone, _ = m.extract_features(feats[1:, :64], torch.tensor([64]))
    for s, a in zip(states, alone):
        torch.testing.assert_close(s[1, : int(lens[1])], a[0], atol=1e-5, rtol=1e-5)


def test_unknown_preset_is_a_one_line_error():
    with pytest.raises(SpeechrqError, match="unknown"):
        speech_encoder("huge")


def test_an_utterance_encodes_the_same_alone_and_batched():
    from speechrq.models import speech_encoder

    torch.manual_seed(0)
    enc = speech_encoder("tiny").eval()
    short, long = torch.randn(1, 103, 80), torch.randn(1, 160, 80)
    batch = torch.zeros(2, 160, 80)
    batch[0, :103], batch[1] = short[0], long[0]
    with torch.no_grad():
        alone, n = enc(short, torch.tensor([103]))
        together, lens = enc(batch, torch.tensor([103, 160]))
    assert int(n) == int(lens[0]) == 25
    assert torch.allclose(alone[0], together[0, :25], atol=1e-5)


def test_the_channels_last_front_end_computes_the_convolutions_it_holds():
    """The front end runs its two convolutions channels-last (faster on a CPU) from its own contiguous parameters:
    outputs and every gradient equal the plain ``nn.Sequential`` it holds, and the parameters stay contiguous."""
    from speechrq.models.conformer import ConvSubsampling

    torch.manual_seed(0)
    front = ConvSubsampling(80, 8, 16)
    x = torch.randn(3, 64, 80, requires_grad=True)
    out, _ = front(x, torch.full((3,), 64))
    out.square().sum().backward()
    ours = [x.grad.clone()] + [p.grad.clone() for p in front.parameters()]
    x.grad = None
    front.zero_grad()
    ref = front.proj(front.conv(x.unsqueeze(1)).transpose(1, 2).flatten(2))
    ref.square().sum().backward()
    theirs = [x.grad] + [p.grad for p in front.parameters()]
    assert torch.allclose(out, ref, atol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(ours, theirs))
    assert all(p.is_contiguous() for p in front.parameters())
