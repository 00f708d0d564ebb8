"""Span masks: per utterance, inside the valid length, on the 4-frame grid, with the named meaning of p."""

from __future__ import annotations

import pytest
import torch

from speechrq.pretrain.masking import expand_to_input, expected_masked_fraction, span_mask


@pytest.mark.parametrize("mode", ["start", "fraction"])
def test_masks_stay_inside_valid_frames_and_differ_per_utterance(mode):
    g = torch.Generator().manual_seed(0)
    lens = torch.tensor([200, 120, 200])
    m = span_mask(lens, 200, prob=0.05 if mode == "start" else 0.4, span=5, mode=mode, generator=g)
    assert m.shape == (3, 200) and m.dtype == torch.bool
    assert not m[1, 120:].any()
    assert not torch.equal(m[0], m[2]), "one mask per utterance, not per batch"
    # every masked run is at least one whole span long
    for row, n in zip(m, lens.tolist()):
        runs, cur = [], 0
        for v in row[:n].tolist() + [False]:
            if v:
                cur += 1
            elif cur:
                runs.append(cur)
                cur = 0
        assert runs and min(runs) >= 5


def test_realised_fraction_matches_the_meaning_of_p():
    g = torch.Generator().manual_seed(1)
    lens = torch.full((64,), 1000)
    start = span_mask(lens, 1000, prob=0.02, span=10, mode="start", generator=g).float().mean().item()
    assert abs(start - expected_masked_fraction(0.02, 10, "start")) < 0.02
    frac = span_mask(lens, 1000, prob=0.4, span=10, mode="fraction", generator=g).float().mean().item()
    assert 0.25 < frac <= 0.4  # overlapping spans mask a little less than p


def test_expand_to_the_input_grid():
    m = torch.tensor([[True, False, True]])
    x = expand_to_input(m, 4, 14)
    assert x.tolist() == [[True] * 4 + [False] * 4 + [True] * 4 + [False] * 2]


def test_seeded_masks_repeat():
    lens = torch.tensor([50, 40])
    a = span_mask(lens, 50, 0.1, 4, generator=torch.Generator().manual_seed(3))
    b = span_mask(lens, 50, 0.1, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
