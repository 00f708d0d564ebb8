"""A Hugging Face WavLM / HuBERT / wav2vec2 / data2vec-audio encoder, from a local folder.

One adapter serves every use: Latent-RQ's target encoder θ (beyond the paper:
any such encoder can supply targets), a probing baseline in ``speechrq
evaluate``, and a feature source for discrete units. It reads the waveform (not
log-Mel), so a target model hands it the batch's audio. Its 20 ms frames
are averaged in pairs to the student's 40 ms and then cut or padded (repeating
the last frame) to the student's frame count, so target ``t`` covers the same
audio as student frame ``t``. Only the transformer layers up to the deepest
target layer are kept (early exit). Layer indexing is the paper's: ``-1`` is the
transformer's input (after the convolutional feature encoder and the positional
convolution), ``k`` is layer ``k``'s output.

Nothing is downloaded: the folder must hold ``config.json`` and the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpeechrqError
from ..features import num_frames
from ..frames import SAMPLE_RATE
from ..models.conformer import ENCODER_HOP, SUBSAMPLING
from .lengths import MIN_SAMPLES, check_lengths

SUPPORTED = ("wavlm", "hubert", "wav2vec2", "data2vec-audio")


WAV2VEC2_KERNELS, WAV2VEC2_STRIDES = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)  # transformers' defaults


def hf_min_samples(cfg: dict, frames: int | None = None) -> int:
    """The fewest 16 kHz samples a Hugging Face encoder of config ``cfg`` turns into one 40 ms frame (or, with
    ``frames``, into that many frames of its own: one averaged frame at ``frames`` times its shift).

    Its convolutional feature encoder (no padding) makes ``(n - kernel) // stride + 1`` frames per
    layer; one 40 ms frame averages ``640 / hop`` of its frames (two 20 ms frames for the standard
    front end), and speechrq's frame count needs :data:`speechrq.encoders.lengths.MIN_SAMPLES` too.
    The standard front end (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2) needs 400 samples for one
    frame, 720 (45 ms) for two.
    """
    kernels = [int(k) for k in cfg.get("conv_kernel", WAV2VEC2_KERNELS)]
    strides = [int(s) for s in cfg.get("conv_stride", WAV2VEC2_STRIDES)]
    hop = 1
    for s in strides:
        hop *= s
    need = max(1, ENCODER_HOP // hop) if frames is None else frames  # frames of the model per output frame
    for k, s in reversed(list(zip(kernels, strides))):
        need = (need - 1) * s + k
    return max(MIN_SAMPLES, need)


def hf_frame_ms(cfg: dict) -> float:
    """A Hugging Face encoder's own frame shift in ms: its convolutional strides' product over 16 kHz (20 for the standard
    front end)."""
    hop = 1
    for s in cfg.get("conv_stride", WAV2VEC2_STRIDES):
        hop *= int(s)
    return hop * 1000 / SAMPLE_RATE


def is_pretrained_folder(path: str | Path) -> bool:
    """A Hugging Face model folder (``config.json``) rather than a speechrq checkpoint (``meta.json``)."""
    p = Path(path)
    return (p / "config.json").exists() and not (p / "meta.json").exists()


def pretrained_config(path: str | Path) -> dict:
    from ..io import loads_json

    f = Path(path) / "config.json"
    try:
        cfg = loads_json(f.read_text(), f)  # a key given twice is refused, never the last one kept
    except (OSError, json.JSONDecodeError) as e:
        raise SpeechrqError(f"{f}: cannot read ({e})") from None
    if cfg.get("model_type") not in SUPPORTED:
        raise SpeechrqError(f"{f}: model_type {cfg.get('model_type')!r}; supported target encoders are {', '.join(SUPPORTED)}")
    return cfg


# A weight the folder may lack: ``masked_spec_embed``, the learned vector that SpecAugment-style masking writes over
# masked frames. transformers reads it only when ``mask_time_indices`` are passed or when the model is in training mode
# with ``mask_time_prob > 0``; speechrq runs these encoders frozen, in eval mode, and never passes mask indices, so it
# never reaches an output (fine-tuned and converted checkpoints often drop it). Every other weight the model has must be
# in the folder: anything else missing would be left at transformers' random initialisation.
UNUSED_WHEN_MISSING = ("masked_spec_embed",)


def check_loaded_whole(model: nn.Module, info: dict, path: str | Path) -> None:
    """Refuse a Hugging Face model that did not load as its folder says, from transformers' ``output_loading_info``:
    one :class:`SpeechrqError` line naming how many weights are missing, unexpected or of another shape, and the first
    names (e.g. a ``config.json`` of WavLM beside HuBERT's weights: WavLM's relative-position weights missing).

    Allowed: a missing :data:`UNUSED_WHEN_MISSING` (set to zeros, so the model, its state and anything hashed from
    it are the same at every load), and unexpected weights *beside* the encoder, the heads of the task model the folder
    was saved from (``lm_head`` of a CTC model; ``quantizer``, ``project_q``, ``project_hid`` of wav2vec 2.0
    pre-training), which the encoder never runs. An unexpected weight inside the encoder's own modules
    (``encoder.``, ``feature_extractor.``, ...) or under another architecture's prefix (``hubert.``) is refused: it
    means the weights are of another architecture than ``config.json`` says (HuBERT's config beside WavLM's weights
    would otherwise run without WavLM's relative position bias)."""
    from ..checkpoint import describe_weight_mismatch

    own = model.state_dict()
    inside = {k.split(".")[0] for k in own} | {name for name, _ in model.named_children()}
    inside |= {"wav2vec2", "hubert", "wavlm", "data2vec_audio", getattr(model, "base_model_prefix", "wav2vec2")}  # task models' prefixes
    missing = sorted(k for k in info.get("missing_keys", ()) if k not in UNUSED_WHEN_MISSING)
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if k.split(".")[0] in inside)
    mismatched = sorted((k, tuple(a), tuple(b)) for k, a, b in info.get("mismatched_keys", ()))
    why = describe_weight_mismatch(missing, unexpected, mismatched)
    errors = [str(e).splitlines()[0] for e in info.get("error_msgs", ()) if str(e).strip()]
    if errors:
        why = ", ".join(filter(None, [why, f"{len(errors)} load error(s) ({errors[0]})"]))
    if why:
        raise SpeechrqError(f"{path}: the weights do not load whole into the {model.__class__.__name__} its config.json "
                            f"describes: {why}; the config and the weights must be of the same model (nothing was left random)")
    with torch.no_grad():
        for name in UNUSED_WHEN_MISSING:
            if name in info.get("missing_keys", ()) and name in own:
                own[name].zero_()


class HuggingFaceEncoder(nn.Module):
    """``audio [B, S]`` -> hidden states ``[B, T, hidden]`` on speechrq's 40 ms grid.

    ``depth``: keep only the first ``depth`` transformer layers (default: all).
    ``hidden_states`` is what a target model calls; ``forward`` is the frozen-encoder
    interface (:class:`speechrq.encoders.FrozenEncoder`'s): every state and the frame lengths.
    """

    needs_audio = True
    checkpoint = None  # not a speechrq checkpoint: no targets of its own to analyse

    def __init__(self, path: str | Path, depth: int | None = None):
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        from ..io import read_json

        hf_logging.disable_progress_bar()  # loading a local folder takes a moment: no bar between speechrq's own lines

        cfg = pretrained_config(path)
        self.path = Path(path)
        self.num_layers = int(cfg["num_hidden_layers"])
        depth = self.num_layers if depth is None else depth
        if depth > self.num_layers:
            raise SpeechrqError(f"{path}: has {self.num_layers} layers; target layer {depth - 1} does not exist")
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # transformers' own load report: speechrq checks the same and says it in one line
        try:
            # safetensors where the folder has them: a pickled .bin beside them is never unpickled
            safe = any(Path(path).glob("*.safetensors"))
            model, info = AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True if safe else None,
                                                    output_loading_info=True, ignore_mismatched_sizes=True)
        except (OSError, ValueError) as e:
            raise SpeechrqError(f"{path}: cannot load the model ({str(e).splitlines()[0]})") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        check_loaded_whole(model, info, path)
        # early exit: later layers are never run. One layer is kept even for depth 0 (the transformer's input alone):
        # transformers >= 5 records hidden_states by hooks on the layers, so with none kept none would be recorded
        model.encoder.layers = model.encoder.layers[:max(depth, 1)]
        self.model = model
        self.depth = depth
        self.dim = int(cfg["hidden_size"])
        hop = 1
        for s in cfg.get("conv_stride", [5, 2, 2, 2, 2, 2, 2]):
            hop *= int(s)
        if ENCODER_HOP % hop:
            raise SpeechrqError(f"{path}: frame hop {hop} samples does not divide speechrq's {ENCODER_HOP}")
        self.pool = ENCODER_HOP // hop
        self.cfg = cfg
        self.min_samples = hf_min_samples(cfg)  # shorter rows are refused by forward
        # models with a group-normalised feature encoder were trained without attention masks
        self.use_mask = cfg.get("feat_extract_norm") == "layer"
        prep = Path(path) / "preprocessor_config.json"
        self.normalize = bool(read_json(prep).get("do_normalize", False)) if prep.exists() else False

    def _run(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple:
        """The model on ``[B, S]`` audio: its hidden states ``[input, layer 0, ...]`` at its own frame rate."""
        valid = torch.arange(audio.shape[1], device=audio.device)[None] < audio_lens[:, None]
        x = audio.float()
        if self.normalize:  # per-utterance zero mean, unit variance over the valid samples
            n = audio_lens[:, None].clamp_min(1).float()
            mean = (x * valid).sum(1, keepdim=True) / n
            var = (((x - mean) * valid) ** 2).sum(1, keepdim=True) / n
            x = ((x - mean) / (var + 1e-7).sqrt()) * valid
        out = self.model(x, attention_mask=valid.long() if self.use_mask else None, output_hidden_states=True)
        return out.hidden_states[: self.depth + 1]

    def hidden_states(self, audio: torch.Tensor, audio_lens: torch.Tensor, frames: int) -> list[torch.Tensor]:
        """Every kept state, ``[input, layer 0, ...]``, each ``[B, frames, dim]`` on the 40 ms grid."""
        states = []
        for h in self._run(audio, audio_lens):
            b, t, d = h.shape
            if t < self.pool:  # a pre-training batch of only 560..719-sample utterances: one model frame, repeated
                h, t = F.pad(h.transpose(1, 2), (0, self.pool - t), mode="replicate").transpose(1, 2), self.pool
            t = t // self.pool * self.pool
            h = h[:, :t].reshape(b, t // self.pool, self.pool, d).mean(2)  # 20 ms pairs -> 40 ms
            if h.shape[1] < frames:
                h = F.pad(h.transpose(1, 2), (0, frames - h.shape[1]), mode="replicate").transpose(1, 2)
            states.append(h[:, :frames])
        return states


    def native_min_samples(self, group: int = 1) -> int:
        """The fewest samples that give one frame of ``group`` of the model's own (560 for one standard 20 ms frame:
        its 400-sample receptive field, never under a speechrq checkpoint's 560)."""
        return max(MIN_SAMPLES, hf_min_samples(self.cfg, group))

    @torch.no_grad()
    def native_states(self, audio: torch.Tensor, audio_lens: torch.Tensor, group: int = 1) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``[B, S]`` audio -> ``([input, layer 0, ...], frame lengths)`` at the model's own frame rate (20 ms for
        the standard front end), or averaged over ``group`` consecutive frames (``group = 2``: 40 ms).

        Lengths are the convolutional feature encoder's (``(n - kernel) // stride + 1`` per layer), divided by
        ``group`` (a last incomplete group is dropped). Rows shorter than :meth:`native_min_samples` are refused.
        """
        self.forward_calls = getattr(self, "forward_calls", 0) + 1
        check_lengths(audio_lens, self.native_min_samples(group))
        lens = torch.div(self.model._get_feat_extract_output_lengths(audio_lens).long(), group, rounding_mode="floor")
        states = []
        for h in self._run(audio, audio_lens):
            b, t, d = h.shape
            t = t // group * group
            states.append(h[:, :t].reshape(b, t // group, group, d).mean(2)[:, : int(lens.max())])
        return states, lens

    @property
    def num_states(self) -> int:
        """The transformer's input and every kept layer."""
        return self.depth + 1

    @property
    def fingerprint(self) -> str:
        """``hf-`` and a hash of the folder's files: the key of its cached hidden states."""
        if getattr(self, "_fingerprint", None) is None:
            from ..io import folder_fingerprint

            self._fingerprint = "hf-" + folder_fingerprint(self.path)
        return self._fingerprint

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``[B, S]`` audio -> ``([input, layer 0, ...], frame lengths)`` on the grid speechrq encoders use.

        Every row needs at least ``min_samples`` samples (:func:`hf_min_samples`: 720, 45 ms, for the standard
        front end); a shorter one is a :class:`SpeechrqError` naming it.
        """
        self.forward_calls = getattr(self, "forward_calls", 0) + 1
        check_lengths(audio_lens, self.min_samples)
        lens = torch.div(num_frames(audio_lens), SUBSAMPLING, rounding_mode="floor")
        return self.hidden_states(audio, audio_lens, int(lens.max())), lens
