"""The discrete-unit ASR training step: speechrq's CPU dropout (``speechrq.models.dropout``) against torch's, in one process.

The baseline is the same model with every dropout module running ``torch.nn.functional.dropout`` (one Bernoulli
draw per element) and self-attention through ``scaled_dot_product_attention``'s own dropout, as speechrq did before.
Both take full optimizer steps (forward, backward, AdamW) on the same random units; the two alternate step by step
and the median of each is kept, so the machine's noise hits both alike. Printed: each side's seconds per step and
speechrq's as a ratio of the baseline's (lower is better).

    python benchmarks/bench_asr_step.py [--preset tiny] [--threads 1] [--steps 10] [--batch 12] [--frames 160] [--streams 32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

import speechrq.models.conformer as conformer
import speechrq.models.dropout as dropout
from speechrq.asr.model import ASR_PRESETS, asr_model


def _torch_attention(self, x, key_padding_mask):
    """``RotarySelfAttention.forward`` through SDPA in training too (the baseline)."""
    b, t, _ = x.shape
    q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    angles = torch.arange(t, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
    cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
    q, k = conformer._rotary(q, cos, sin), conformer._rotary(k, cos, sin)
    mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
    return self.out(y.transpose(1, 2).reshape(b, t, -1))


@contextmanager
def torch_dropout():
    """Every dropout of the model as torch's: the baseline."""
    saved = dropout.Dropout.forward, conformer.RotarySelfAttention.forward
    dropout.Dropout.forward = lambda self, x: F.dropout(x, self.p, self.training)
    conformer.RotarySelfAttention.forward = _torch_attention
    try:
        yield
    finally:
        dropout.Dropout.forward, conformer.RotarySelfAttention.forward = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the studies run 2 trainings of 1 thread each)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps of each side")
    ap.add_argument("--batch", type=int, default=12, help="utterances per batch")
    ap.add_argument("--frames", type=int, default=160, help="unit frames of the longest utterance (40 ms units: 6.4 s)")
    ap.add_argument("--streams", type=int, default=32, help="unit streams (RPQ's M)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = asr_model(ASR_PRESETS[args.preset], vocab=500, input_kind="units", num_streams=args.streams, unit_vocab=500)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    b, t = args.batch, args.frames
    units = torch.randint(0, 500, (b, t, args.streams))
    lens = torch.full((b,), t)
    lens[1::2] = t * 3 // 4  # half the batch padded
    tokens, token_lens = torch.randint(0, 500, (b, t // 6)), torch.full((b,), t // 6)
    augment = torch.Generator().manual_seed(0)

    def step() -> float:
        start = time.perf_counter()
        loss = model(units, lens, tokens, token_lens, augment=augment).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    times = {"torch": [], "speechrq": []}
    for i in range(args.steps + 1):  # the first round warms both up, untimed
        with torch_dropout():
            base = step()
        ours = step()
        if i:
            times["torch"].append(base)
            times["speechrq"].append(ours)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"ASR step, preset {args.preset}, {b} x {t} frames x {args.streams} streams, {torch.get_num_threads()} thread(s), "
          f"median of {args.steps}: torch dropout {med['torch'] * 1e3:.0f} ms, speechrq {med['speechrq'] * 1e3:.0f} ms, "
          f"ratio {med['speechrq'] / med['torch']:.3f}")


if __name__ == "__main__":
    main()
