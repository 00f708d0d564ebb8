"""PyTorch's own distributed engine, as torchrun launches it.

``torchrun --nproc-per-node G -m speechrq pretrain CONFIG`` sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init` reads them and starts a process
group (NCCL for CUDA, gloo for CPU). Without them everything runs as one process
and every helper here is a no-op.

**Corpus passes** (``units fit``'s sample, ``units encode``, ``evaluate``'s hidden states,
``asr decode``, ``features stats``) run the same way: ``torchrun --nproc-per-node N [--nnodes M ...]
-m speechrq units encode ...``. The pass's batches are planned once from the manifest
(:func:`speechrq.data.batching.group_plan`: consecutive cuts, at most ``max_duration`` seconds
padded); each rank takes a contiguous run of them, balanced by padded duration
(:func:`shard_range`), so every utterance is computed in the same batch as in one process and the
outputs are identical to one process's (unit arrays and manifests bit for bit, statistics to float64
rounding). Each rank resumes its own share; rank 0 merges. Outputs go to one folder that every rank
reads and writes (one filesystem on one machine, a shared one across nodes, as fairseq's and ESPnet's
feature dumps assume). A rank waits for the others at most :data:`PASS_TIMEOUT`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


PASS_TIMEOUT = timedelta(hours=12)
"""How long a rank of a corpus pass waits for the others (its share done, theirs resumed from less)."""


def init(device: str = "auto", timeout: timedelta | None = None) -> Context:
    """Join the process group torchrun describes, on ``device`` (``auto``, ``cpu``, ``cuda``); ``timeout``: how long
    a collective waits (torch's default, 10 minutes for NCCL and 30 for gloo, when None)."""
    from .errors import SpeechrqError

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SpeechrqError("train.device is 'cuda' but torch sees no CUDA device")
    if not launched_by_torchrun():
        return Context(device=torch.device("cuda", 0) if device == "cuda" else torch.device("cpu"))
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        if local >= torch.cuda.device_count():
            raise SpeechrqError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices are visible")
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world,
                                device_id=dev if dev.type == "cuda" else None, **({"timeout": timeout} if timeout else {}))
    return Context(rank=rank, world_size=world, local_rank=local, device=dev)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum of ``t`` over ranks (in place, returned for chaining)."""
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_tensor(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Rank 0's ``t`` on every rank (in place)."""
    if ctx.distributed:
        dist.broadcast(t, src=0)
    return t


def gather_objects(obj, ctx: Context) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, ctx: Context):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def corpus_pass(device: str = "auto"):
    """The :class:`Context` of a corpus pass (one process, or a rank of torchrun's group), the group left at the end."""
    ctx = init(device, timeout=PASS_TIMEOUT)
    # cuDNN's convolutions in TF32 (torch's default) would make GPU states differ from the CPU's beyond float32 rounding
    tf32, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False
    try:
        yield ctx
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
        shutdown()


def on_main(fn, ctx: Context):
    """``fn()`` run by rank 0 alone, its result on every rank. A :class:`~speechrq.errors.SpeechrqError` there is raised
    on rank 0 and ends the other ranks with :class:`OtherRankFailed`, so a refusal is one line, not one per rank."""
    from .errors import OtherRankFailed, SpeechrqError

    if not ctx.distributed:
        return fn()
    error = result = None
    if ctx.is_main:
        try:
            result = fn()
        except SpeechrqError as e:
            error = e
    ok, result = broadcast_object((error is None, result), ctx)
    if error is not None:
        raise error
    if not ok:
        raise OtherRankFailed()
    return result


def shard_range(costs: list[float], rank: int, world_size: int) -> tuple[int, int]:
    """``[lo, hi)``: rank ``rank``'s contiguous run of ``costs``' items, the runs of all ranks covering every item once,
    in order, each summing as near as whole items allow to ``1 / world_size`` of the total. Deterministic: every rank
    computes every rank's run alike."""
    import bisect
    import itertools

    cum = [0.0, *itertools.accumulate(float(c) for c in costs)]

    def boundary(r: int) -> int:
        if r <= 0:
            return 0
        if r >= world_size:
            return len(costs)
        target = cum[-1] * r / world_size
        i = bisect.bisect_left(cum, target)
        if i > 0 and (i > len(costs) or target - cum[i - 1] <= cum[i] - target):
            i -= 1  # the nearer of the two item boundaries around the target
        return min(i, len(costs))

    lo, hi = boundary(rank), boundary(rank + 1)
    return lo, max(lo, hi)


_SHARE_STARTED = False


def share_started() -> bool:
    """Whether this process has begun its own share of a corpus pass. Before that, every rank has read the same inputs
    with the same code, so a refusal is the same on every rank and rank 0 alone says it (the CLI)."""
    return _SHARE_STARTED


def shard_cuts(cuts, max_duration: float, ctx: Context) -> tuple[int, int]:
    """``[start, stop)``: this rank's cuts of a corpus pass, as indices into ``cuts`` (re-iterable, in a fixed order):
    whole batches of :func:`speechrq.data.batching.group_plan`, balanced by padded seconds (:func:`shard_range`)."""
    from .data.batching import group_plan

    global _SHARE_STARTED
    _SHARE_STARTED = True
    plan = group_plan(cuts, max_duration)
    lo, hi = shard_range([seconds for _, seconds in plan], ctx.rank, ctx.world_size)
    start = sum(n for n, _ in plan[:lo])
    return start, start + sum(n for n, _ in plan[lo:hi])


def rank_cuts(cuts, max_duration: float, ctx: Context):
    """This rank's cuts of a corpus pass (all of them in one process), lazily, in order (:func:`shard_cuts`)."""
    if not ctx.distributed:
        return cuts
    from itertools import islice

    start, stop = shard_cuts(cuts, max_duration, ctx)

    class Share:  # re-iterable, like the manifest it reads
        def __iter__(self):
            return islice(iter(cuts), start, stop)

    return Share()
