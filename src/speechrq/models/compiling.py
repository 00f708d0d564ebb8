"""``torch.compile`` for speechrq's encoders: one switch (``train.compile``), dynamic shapes, a graph count.

:func:`compile_module` compiles a module's ``forward`` in place (``torch.compile`` of the bound method, set on the
instance): no module is added, so its parameters, ``state_dict`` keys and checkpoints are those of the eager module,
a compiled run saves, resumes and loads as an eager one does, and DDP wraps it unchanged. Shapes are dynamic, and an
encoder's batches are padded to a multiple of :data:`FRAME_MULTIPLE` frames (inductor's convolution backward fixes
the time length of a graph), so a run compiles one graph per multiple its batches reach, whatever the number of
utterances; :func:`report_graphs` says how many this process compiled.

What is compiled is the stack of encoder blocks (:class:`~speechrq.models.conformer.ConformerEncoder`, where nearly
all of a step's element-wise work is) and, in ASR, the decoder; the corpus passes (``evaluate --compile``,
``units encode --compile``) compile a frozen encoder's blocks the same way (:func:`speechrq.encoders.compile_frozen`); the convolutional front end stays eager: it runs
channels-last there, and inductor (torch 2.13) fails on its input's symbolic strides under dynamic shapes.

What it gives depends on the device: on a CUDA GPU inductor fuses the encoder's element-wise work into few kernels;
on a CPU of 2 cores the tiny preset ran *slower* compiled (``benchmarks/bench_peer.py --compile``), so it is off
by default.
"""

from __future__ import annotations

import shutil

from torch import nn

from ..errors import SpeechrqError


BACKEND = "inductor"
"""``torch.compile``'s backend (tests of the wiring use ``aot_eager``: the same graphs, no code generation)."""
FRAME_MULTIPLE = 32
"""Encoder frames a compiled encoder pads each batch's length up to a multiple of (32 frames: 1.28 s at 40 ms)."""


def compile_module(module: nn.Module, device_type: str = "cpu", pad_multiple: int | None = None) -> nn.Module:
    """Compile ``module``'s forward in place (dynamic shapes); returns ``module``.

    ``pad_multiple``: for a module called as ``forward(x [B, T, D], lengths [B], ...)`` whose padded frames do not
    change its valid ones (a speechrq encoder: attention masks them, its convolutions zero them): ``x`` is padded
    with zeros to the next multiple of ``pad_multiple`` frames before the compiled forward, and the output (a tensor,
    or a list of them) cut back to ``T``. Inductor's convolution backward fixes the time length of its graph, so
    without it every new batch length would compile a new graph; with it a run compiles one graph per multiple its
    batches reach, and any number of utterances shares it.

    Raises :class:`SpeechrqError` on a CPU without a C++ compiler (inductor generates C++ there).
    """
    if BACKEND == "inductor" and device_type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise SpeechrqError("compile: torch.compile on the CPU needs a C++ compiler (g++ or clang++) on PATH; "
                            "install one or leave compile off")
    import torch

    compiled = torch.compile(module.forward, dynamic=True, backend=BACKEND)
    module.forward = compiled if pad_multiple is None else _padded_in_time(compiled, pad_multiple)
    return module


def _padded_in_time(forward, multiple: int):
    import torch.nn.functional as F

    def padded(x, lengths, *args, **kwargs):
        t = x.shape[1]
        out = forward(F.pad(x, (0, 0, 0, -t % multiple)), lengths, *args, **kwargs)
        return [o[:, :t] for o in out] if isinstance(out, list) else out[:, :t]

    return padded


def compiled_graphs() -> int:
    """Graphs ``torch.compile`` has compiled in this process so far (recompilations included)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def report_graphs(out) -> None:
    """What a compiled training run prints at its end: how many graphs this process compiled."""
    print(f"{out}: torch.compile compiled {compiled_graphs()} graph(s) in this process")
