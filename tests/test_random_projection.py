"""The random-projection quantizer against an independent per-frame reference."""

from __future__ import annotations

import numpy as np
import torch

from speechrq.targets import RandomProjectionQuantizer, stack_frames
from speechrq.targets.random_projection import first_argmax


def _reference(q: RandomProjectionQuantizer, x: torch.Tensor) -> np.ndarray:
    """Eq. 1 literally: per frame and codebook, argmin_v ||c_v - normalise(A_n x)||."""
    proj, books = q.projection.double().numpy(), q.codebooks.double().numpy()
    b, t, _ = x.shape
    out = np.zeros((b, t, proj.shape[0]), dtype=np.int64)
    for i in range(b):
        for j in range(t):
            for n in range(proj.shape[0]):
                z = x[i, j].double().numpy() @ proj[n]
                z = z / np.linalg.norm(z)
                out[i, j, n] = np.argmin(((books[n] - z) ** 2).sum(-1))
    return out


def test_targets_equal_the_per_frame_reference():
    torch.manual_seed(0)
    q = RandomProjectionQuantizer(input_dim=320, num_codebooks=3, codebook_size=64, codebook_dim=16, seed=5)
    x = stack_frames(torch.randn(2, 41, 80), 4)
    assert x.shape == (2, 10, 320)
    got = q(x)
    assert got.shape == (2, 10, 3) and got.dtype == torch.long
    assert (got.numpy() == _reference(q, x)).all()
    q.max_scores = 3 * 64 * 3  # three frames per score block: the same answer in chunks
    assert torch.equal(q(x), got)


def test_quantizer_is_fixed_seeded_and_saved():
    a = RandomProjectionQuantizer(320, 4, 128, 16, seed=1)
    b = RandomProjectionQuantizer(320, 4, 128, 16, seed=1)
    c = RandomProjectionQuantizer(320, 4, 128, 16, seed=2)
    assert torch.equal(a.projection, b.projection) and torch.equal(a.codebooks, b.codebooks)
    assert not torch.equal(a.codebooks, c.codebooks)
    assert list(a.parameters()) == [], "nothing to train"
    assert {"projection", "codebooks", "seed"} <= set(a.state_dict())
    assert int(a.state_dict()["seed"]) == 1
    torch.testing.assert_close(a.codebooks.norm(dim=-1), torch.ones(4, 128))


def test_codebooks_are_all_in_use_on_random_input():
    q = RandomProjectionQuantizer(320, 2, 64, 16, seed=0)
    y = q(torch.randn(4, 500, 320))
    for n in range(2):
        assert y[..., n].unique().numel() > 0.9 * 64


def test_targets_are_fp32_under_a_low_precision_autocast():
    # the training step runs under bf16 autocast on CUDA (and on CPU when asked); bmm is on autocast's
    # low-precision list, so without care near-ties flip and targets stop being the nearest codeword
    torch.manual_seed(1)
    q = RandomProjectionQuantizer(input_dim=320, num_codebooks=4, codebook_size=1024, codebook_dim=16, seed=2)
    x = torch.randn(2, 60, 320)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = q(x)
        z = q.project(x)
    assert z.dtype == torch.float32
    assert (got.numpy() == _reference(q, x)).all()


def test_the_two_level_argmax_is_argmax_exactly_on_ties_nan_and_every_width():
    g = torch.Generator().manual_seed(0)
    for v in (4096, 1000, 320, 64, 48, 7):  # two levels where a group of 16..128 divides V, argmax otherwise
        scores = torch.randn(3, 5, v, generator=g)
        assert torch.equal(first_argmax(scores), scores.argmax(-1)), v
        ties = torch.randint(0, 3, (3, 5, v), generator=g).float()  # many equal maxima: the first one wins
        assert torch.equal(first_argmax(ties), ties.argmax(-1)), v
        late = torch.zeros(2, v)
        late[0, -1] = late[1, v // 2] = 1.0  # the maximum in the last group, in a middle one
        assert first_argmax(late).tolist() == [v - 1, v // 2]
    nan = torch.randn(4, 4096, generator=g)
    nan[1, 3000], nan[1, 4000], nan[2, 70] = float("nan"), float("nan"), float("nan")
    assert torch.equal(first_argmax(nan), nan.argmax(-1))  # the first NaN, as argmax
    assert first_argmax(torch.randn(0, 4096)).shape == (0,)
