"""A speechrq checkpoint as an s3prl upstream, for the official SUPERB downstream tasks.

s3prl's upstream contract: ``forward(wavs)`` takes a list of unpadded 16 kHz
waveforms ``[S_i]`` and returns a dict whose ``"hidden_states"`` is a list of
padded ``[B, T, dim]`` tensors (here: the front end's output, then every
Conformer block); ``get_downsample_rates(key)`` gives samples per frame
(640 = 10 ms hop x 4 subsampling = 40 ms). To register it with s3prl, create
``s3prl/upstream/speechrq/hubconf.py`` holding one line::

    from speechrq.evaluate.s3prl_upstream import speechrq_local  # noqa: F401

and add ``from s3prl.upstream.speechrq.hubconf import *`` to ``s3prl/hub.py``;
then ``python run_downstream.py -m train -u speechrq_local -k RUN/checkpoints/step_N -d TASK -n NAME``
(``--device cpu`` without a GPU). The upstream is frozen: no parameter takes a gradient, and it stays in eval mode
(dropout off) whatever ``train()`` the runner calls, as SUPERB's frozen-upstream protocol needs; ``-f`` (fine-tuning
the upstream) is not supported.

This module does not import s3prl: it runs (and is tested) without it. s3prl imports torchaudio, which does not
load beside torch 2.13; the tested pairing is in ``docs/guide/evaluate.md`` (Official SUPERB with s3prl).
"""

from __future__ import annotations

import torch
from torch import nn

from ..encoders import FrozenEncoder
from ..encoders.frozen import freeze
from ..models.conformer import ENCODER_HOP

DOWNSAMPLE_RATE = ENCODER_HOP  # 640 samples = 40 ms


class UpstreamExpert(nn.Module):
    """``forward([wav_1, ..., wav_B]) -> {"hidden_states": [front end, block 0, ...], "last_hidden_state": ...}``.

    Frozen: eval mode and no gradients from construction on; :meth:`train` keeps it so (see the module docstring).
    """

    def __init__(self, ckpt: str, model_config: str | None = None, **kwargs):
        super().__init__()
        self.model = FrozenEncoder.from_checkpoint(ckpt)
        freeze(self)

    def train(self, mode: bool = True) -> "UpstreamExpert":
        """A frozen upstream stays in eval mode: dropout and any other train-time behaviour stay off."""
        return super().train(False)

    def get_downsample_rates(self, key: str) -> int:
        return DOWNSAMPLE_RATE

    def forward(self, wavs: list[torch.Tensor]) -> dict[str, list[torch.Tensor] | torch.Tensor]:
        lens = torch.tensor([len(w) for w in wavs], device=wavs[0].device)
        audio = nn.utils.rnn.pad_sequence([w.reshape(-1) for w in wavs], batch_first=True)
        states, _ = self.model(audio, lens)
        return {"hidden_states": states, "last_hidden_state": states[-1]}


def speechrq_local(ckpt: str, *args, **kwargs) -> UpstreamExpert:
    """s3prl hub entry: ``-u speechrq_local -k RUN/checkpoints/step_N`` (or ``-k tiny_bestrq``, the shipped reference);
    the upstream comes back frozen, in eval mode."""
    from ..resources import checkpoint_arg

    ckpt = checkpoint_arg(ckpt)
    return UpstreamExpert(ckpt, *args, **kwargs)
