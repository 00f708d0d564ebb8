"""PyTorch's own distributed engine, as torchrun launches it.

``torchrun --nproc-per-node G -m speechrq pretrain CONFIG`` sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init` reads them and starts a process
group (NCCL for CUDA, gloo for CPU). Without them everything runs as one process
and every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def init(device: str = "auto") -> Context:
    """Join the process group torchrun describes, on ``device`` (``auto``, ``cpu``, ``cuda``)."""
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
                                device_id=dev if dev.type == "cuda" else None)
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
