"""speechrq.checks: which utterances of a padded batch hold NaN, inf or too large a value in their valid frames."""

from __future__ import annotations

import math

import pytest
import torch

from speechrq.checks import bad_utterances


@pytest.mark.parametrize("limit", [None, 100.0, math.inf])
def test_bad_utterances_flags_nan_inf_and_the_limit_in_valid_frames_only(limit):
    x = torch.zeros(7, 5, 3)
    x[1, 2, 0] = float("nan")
    x[2, 0, 2] = float("inf")
    x[3, 4, 1] = -float("inf")
    x[4, 1, 1] = -150.0  # beyond the limit of 100
    x[5, 3, 0] = 99.0  # within it
    x[6, 4, 0] = float("nan")  # in padding: utterance 6 has 4 frames
    lens = torch.tensor([5, 5, 5, 5, 5, 5, 4])
    want = [False, True, True, True, limit == 100.0, False, False]
    assert bad_utterances(x, lens, limit).tolist() == want
    assert bad_utterances(x, None, limit).tolist()[6] is True  # without lengths every frame counts
    assert bad_utterances(x[:, :, 0], lens, limit).tolist() == [False, True, False, False, False, False, False]  # [B, T]
