"""Frozen encoders: a checkpoint or a Hugging Face folder -> every hidden state, without gradients.

:func:`load_encoder` is the one entry point for evaluation, target analyses,
discrete units and discrete-unit ASR: a ``speechrq pretrain`` checkpoint becomes
a :class:`FrozenEncoder` (log-Mel, the checkpoint's own feature normaliser, its
student encoder), a local WavLM / HuBERT / wav2vec2 / data2vec-audio folder a
:class:`~speechrq.encoders.hf.HuggingFaceEncoder`. Both take ``audio [B, S]`` and
``audio_lens [B]`` and return ``([layer -1, layer 0, ...], frame lengths)``,
each state ``[B, T, dim]`` on the 40 ms grid; layer ``-1`` is the front end's
output (a Hugging Face model's transformer input), ``k`` block ``k``'s. Each has
a ``fingerprint`` that keys its cached hidden states.

A checkpoint is read from its saved config and weights alone
(:class:`PretrainCheckpoint`), never through the trainer.

**Shortest input.** Every encoder states the fewest 16 kHz samples it reads
(``min_samples``; :func:`min_samples` reads it from a path without loading weights),
and refuses shorter rows with one :class:`~speechrq.errors.SpeechrqError` naming them
(:func:`check_lengths`), never a convolution's RuntimeError or an empty output. These shared rules
(:data:`MIN_SAMPLES`, :func:`check_lengths`, :func:`describe_samples`) live in :mod:`speechrq.encoders.lengths`,
below this module and :mod:`speechrq.encoders.hf`, and are importable from here too:

- a speechrq checkpoint (and the filterbank baseline): :data:`MIN_SAMPLES` = 560
  samples (35 ms). Log-Mel frames are 25 ms windows every 10 ms, Kaldi-style with
  ``snip_edges=False``, so ``n`` samples give ``(n + 80) // 160`` frames; the front
  end's two stride-2 convolutions turn 4 frames into one 40 ms encoder frame, and 560
  is the fewest samples that give 4 frames (:func:`speechrq.features.samples_for_frames`).
- a Hugging Face folder: the fewest samples its convolutional feature encoder
  (``conv_kernel``, ``conv_stride``) needs for the frames of one 40 ms frame, and at
  least :data:`MIN_SAMPLES` (:func:`speechrq.encoders.hf.hf_min_samples`): 720
  samples (45 ms) for wav2vec2 / HuBERT / WavLM / data2vec-audio's standard front
  end (a 400-sample receptive field, 320-sample hop, two 20 ms frames per 40 ms).

Corpus passes at inference (``evaluate``, ``units fit`` / ``encode`` / ``report``,
``asr decode`` and continuous ``asr train``) check every cut against the encoder's
minimum before reading any audio and refuse, naming the short cuts
(:func:`speechrq.data.batching.refuse_short_cuts`); ``asr transcribe`` names each
short file.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import MODEL_FILE, load_model_state, load_weights, read_meta
from ..errors import SpeechrqError
from ..features import FeatureNormalizer, LogMel
from ..io import file_fingerprint
from ..models.conformer import ENCODER_FRAME_SECONDS, SUBSAMPLING, SpeechEncoder, speech_encoder, trim_to_frames
from ..targets.latent import configured_layers, stage_layers
from ..targets.random_projection import RandomProjectionQuantizer, stack_frames
from .hf import HuggingFaceEncoder, hf_frame_ms, hf_min_samples, is_pretrained_folder, pretrained_config
from .lengths import MIN_SAMPLES, check_lengths, describe_samples

__all__ = ["ENCODER_FRAME_MS", "MIN_SAMPLES", "EncoderLayer", "FilterbankEncoder", "FrozenEncoder", "PretrainCheckpoint",
           "check_lengths", "describe_samples", "freeze", "is_feature_stats", "load_encoder", "min_samples"]

ENCODER_FRAME_MS = round(ENCODER_FRAME_SECONDS * 1000)  # 40: speechrq's encoder frame


def min_samples(path: str | Path) -> int:
    """The fewest 16 kHz samples the encoder at ``path`` (checkpoint or Hugging Face folder) reads; no weights are loaded."""
    return hf_min_samples(pretrained_config(path)) if is_pretrained_folder(path) else MIN_SAMPLES


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients, and a count of encoder passes (a cache hit runs none)."""
    module.forward_calls = 0
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class PretrainCheckpoint:
    """What a frozen-encoder user reads from a ``speechrq pretrain`` checkpoint: config, weights, quantizers."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = read_meta(self.path)
        self.config: dict = self.meta.get("config") or {}
        try:
            self.preset = self.config["model"]["preset"]
            self.quantizer: dict = dict(self.config["quantizer"])
        except (KeyError, TypeError):
            raise SpeechrqError(f"{self.path}: meta.json holds no pre-training config (model.preset, quantizer)") from None

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the weights file: the key of the checkpoint's cached hidden states."""
        return file_fingerprint(self.path / MODEL_FILE)

    def weights(self, prefix: str) -> dict[str, torch.Tensor]:
        """The weights of one submodule, e.g. ``"encoder."`` (the student), prefix removed; nothing else is read."""
        return load_model_state(self.path, prefix=prefix)

    def load_into(self, module: nn.Module, prefix: str) -> nn.Module:
        """``module`` with the checkpoint's ``prefix*`` weights, loaded whole: a weight missing, unexpected or of another
        shape is one :class:`SpeechrqError` line naming the file, never a RuntimeError or a partly random module."""
        load_weights(module, self.weights(prefix), self.path / MODEL_FILE, f"{module.__class__.__name__} ({prefix}*)")
        return module

    def encoder(self) -> SpeechEncoder:
        """The student encoder, with its weights."""
        dropout = (self.config.get("model") or {}).get("dropout")
        return self.load_into(speech_encoder(self.preset, **({} if dropout is None else {"dropout": dropout})), "encoder.")

    def normalizer(self) -> FeatureNormalizer:
        """The log-Mel normaliser the checkpoint was trained with."""
        return self.load_into(FeatureNormalizer(), "normalizer.")

    def mel_quantizer(self) -> RandomProjectionQuantizer:
        """Stage 0's quantizer of 4 stacked Mel frames, with the saved projections and codebooks."""
        q, prefix = self.quantizer, "targets.mel.quantizer."
        weights = self.weights(prefix)
        if "projection" not in weights or weights["projection"].dim() != 3:  # [codebooks, input dim, codebook dim]
            raise SpeechrqError(f"{self.path / MODEL_FILE}: no {prefix}projection matrix; not a whole pre-training checkpoint")
        quantizer = RandomProjectionQuantizer(weights["projection"].shape[1], q["num_codebooks"], q["codebook_size"], q["codebook_dim"],
                                              seed=q["seed"])
        load_weights(quantizer, weights, self.path / MODEL_FILE, f"Mel quantizer ({prefix}*)")
        return quantizer

    def target_layers(self) -> list[int]:
        """The Latent-RQ target layers of the checkpoint's current stage as its history records them, else its
        config's (:func:`~speechrq.targets.latent.configured_layers`)."""
        t = self.config.get("targets") or {}
        return stage_layers(self.meta.get("history")) or configured_layers(self.preset, t.get("layers"), t.get("auto_count"))

class FrozenEncoder(nn.Module):
    """Waveforms -> every hidden state of a speechrq encoder, in eval mode without gradients."""

    min_samples = MIN_SAMPLES  # shorter rows are refused (see the module docstring)

    def __init__(self, normalizer: FeatureNormalizer, encoder: SpeechEncoder, fingerprint: str,
                 checkpoint: PretrainCheckpoint | None = None):
        super().__init__()
        self.logmel, self.normalizer, self.encoder, self.fingerprint = LogMel(), normalizer, encoder, fingerprint
        self.checkpoint = checkpoint  # its config and quantizers, for target analyses
        freeze(self)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "FrozenEncoder":
        """The student encoder of a ``speechrq pretrain`` checkpoint, with its feature normaliser."""
        ckpt = PretrainCheckpoint(path)
        return cls(ckpt.normalizer(), ckpt.encoder(), ckpt.fingerprint, ckpt)

    @classmethod
    def random_like(cls, path: str | Path, seed: int = 0) -> "FrozenEncoder":
        """A randomly initialised encoder of the checkpoint's shape (with its feature statistics): the baseline."""
        trained = cls.from_checkpoint(path)
        torch.manual_seed(seed)
        encoder = speech_encoder(trained.encoder.config)
        return cls(trained.normalizer, encoder, f"random-{trained.fingerprint}-{seed}", trained.checkpoint)

    @classmethod
    def random_init(cls, preset: str, normalizer: FeatureNormalizer, seed: int) -> "FrozenEncoder":
        """A randomly initialised encoder of a named preset (:data:`~speechrq.models.conformer.PRESETS`), its weights
        drawn with ``seed`` (the global random state is left as it was), its input normalised by ``normalizer``:
        ``speechrq evaluate``'s random-init baseline, one per init seed (:mod:`speechrq.evaluate.baselines`).

        Its fingerprint names the preset and seed and hashes the weights and the statistics, so a draw's cached
        hidden states are never read for another draw or other statistics."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = speech_encoder(preset)
        h = hashlib.sha256()
        for name, t in [*sorted(encoder.state_dict().items()), ("normalizer.mean", normalizer.mean), ("normalizer.std", normalizer.std)]:
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return cls(normalizer, encoder, f"random-{preset}-init{seed}-{h.hexdigest()[:16]}")

    @property
    def num_states(self) -> int:
        return self.encoder.num_layers + 1

    @torch.no_grad()
    def features(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, S]`` audio -> the encoder's input: normalised log-Mel ``[B, T_in, 80]`` in whole encoder frames, lengths.

        Every row needs at least :data:`MIN_SAMPLES` samples (560, 35 ms); a shorter one is a :class:`SpeechrqError`.
        """
        check_lengths(audio_lens, self.min_samples)
        feats, lens = trim_to_frames(*self.logmel(audio, audio_lens))
        return self.normalizer(feats, lens), lens

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``[B, S]`` audio -> ``([front end, block 0, ...], frame lengths)``, each ``[B, T, dim]``."""
        self.forward_calls += 1
        return self.encoder.extract_features(*self.features(audio, audio_lens))


class FilterbankEncoder(nn.Module):
    """The filterbank baseline: normalised log-Mel, 4 frames stacked onto the 40 ms grid, as a one-state "encoder".

    What a pre-trained encoder must beat besides a random one (SUPERB's FBANK row): its
    one state, ``[B, T, 4 * 80]``, is exactly the Mel quantizer's input in stage 0.
    """

    checkpoint = None  # no targets of its own to analyse
    min_samples = MIN_SAMPLES  # one stacked frame is 4 log-Mel frames, as for a speechrq encoder

    def __init__(self, normalizer: FeatureNormalizer):
        super().__init__()
        self.logmel, self.normalizer = LogMel(), normalizer
        self.dim = SUBSAMPLING * normalizer.mean.numel()  # 4 x 80 = 320
        h = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in (normalizer.mean, normalizer.std)))
        self.fingerprint = "fbank-" + h.hexdigest()[:16]
        freeze(self)

    num_states = 1

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``[B, S]`` audio -> ``([stacked log-Mel [B, T, 320]], frame lengths)``; rows under :data:`MIN_SAMPLES` are refused."""
        self.forward_calls += 1
        check_lengths(audio_lens, self.min_samples)
        feats, lens = trim_to_frames(*self.logmel(audio, audio_lens))
        return [stack_frames(self.normalizer(feats, lens), SUBSAMPLING)], torch.div(lens, SUBSAMPLING, rounding_mode="floor")


COMPILED = "-compiled"
"""Appended to a compiled encoder's fingerprint: its states differ from the eager ones in float rounding, so what is
kept of them (hidden states, probes) is kept apart."""


def compile_frozen(encoder: nn.Module, device_type: str) -> bool:
    """``--compile`` for a corpus pass: a speechrq encoder's blocks compiled in place
    (:func:`~speechrq.models.compiling.compile_module`, batch lengths padded to
    :data:`~speechrq.models.compiling.FRAME_MULTIPLE` encoder frames) and :data:`COMPILED` appended to its
    fingerprint; True when compiled. The filterbank and Hugging Face encoders stay eager (False).

    Raises :class:`SpeechrqError` on a CPU without a C++ compiler."""
    from ..models.compiling import FRAME_MULTIPLE, compile_module

    if not isinstance(encoder, FrozenEncoder):
        return False
    if not encoder.fingerprint.endswith(COMPILED):
        compile_module(encoder.encoder.encoder, device_type, FRAME_MULTIPLE)
        encoder.fingerprint += COMPILED
    return True


def load_encoder(path: str | Path) -> FrozenEncoder | nn.Module:
    """A frozen encoder from a speechrq checkpoint or a local Hugging Face model folder.

    Its ``min_samples`` is the shortest audio it reads (560 samples, 35 ms, for a checkpoint; see the module
    docstring); a shorter row of ``audio_lens`` is a :class:`SpeechrqError` naming the row.
    """
    if is_pretrained_folder(path):
        return freeze(HuggingFaceEncoder(path))
    return FrozenEncoder.from_checkpoint(path)


def is_feature_stats(path: str | Path) -> bool:
    """A ``feature_stats.json`` (``speechrq features stats``): the filterbank as a source of units."""
    return Path(path).is_file() and Path(path).suffix == ".json"


class EncoderLayer(nn.Module):
    """One hidden state of a frozen encoder: ``audio [B, S]`` -> ``[B, T, dim]`` at the source's frame rate, and lengths.

    ``path`` is a speechrq checkpoint, a local Hugging Face folder, or a corpus's ``feature_stats.json``: the
    normalised log-Mel stacked 4 frames at a time (320 dimensions, layer ``-1`` only), the high-dimensional
    source HuBERT's first iteration clusters.

    The layer index is the evaluation featurizer's: ``-1`` is the front end (a
    Hugging Face model's transformer input, its ``hidden_states[0]``), ``k`` block
    (transformer layer) ``k``'s output, so Hugging Face's ``hidden_states[n]`` is
    layer ``n - 1`` here. Nothing above the layer runs.

    ``frame_ms``: the frame shift of the states, in milliseconds. ``None`` (the default) keeps the
    source's own: 20 ms for a Hugging Face WavLM / HuBERT / wav2vec2 / data2vec front end (the RPQ
    paper's 50 Hz units), 40 ms for a speechrq checkpoint and the stacked log-Mel. A Hugging Face source
    may be averaged to a multiple of its own shift (``40``: pairs of 20 ms frames on speechrq's 40 ms
    grid, the grid evaluation uses); any other value is a :class:`SpeechrqError`.

    ``min_samples``: the shortest audio the layer reads (560 samples, 35 ms, for a checkpoint and for a
    standard Hugging Face front end at its own 20 ms; 720, 45 ms, for one at 40 ms; one frame's receptive
    field when frames are averaged further); a shorter row is a :class:`SpeechrqError`.
    """

    def __init__(self, path: str | Path, layer: int, frame_ms: int | None = None):
        super().__init__()
        cfg = pretrained_config(path) if is_pretrained_folder(path) else None
        depth = int(cfg["num_hidden_layers"]) if cfg else None
        own = hf_frame_ms(cfg) if cfg else ENCODER_FRAME_MS  # checked before any weights load
        self.frame_ms = int(round(own)) if frame_ms is None else int(frame_ms)
        if self.frame_ms < 1 or self.frame_ms % own or (own == ENCODER_FRAME_MS and self.frame_ms != own):
            allowed = f"{own:g} (its own) or a multiple of it, e.g. {2 * own:g}" if own != ENCODER_FRAME_MS else f"{own} only"
            raise SpeechrqError(f"{path}: frame shift {frame_ms} ms: this source's frames are {own:g} ms; choose {allowed}")
        self.group = round(self.frame_ms / own)
        if is_feature_stats(path):  # the stacked log-Mel (HuBERT's first-iteration unit source): one state, layer -1
            from ..features import FeatureStats

            self.source = FilterbankEncoder(FeatureNormalizer.from_stats(FeatureStats.load(path)))
            if layer != -1:
                raise SpeechrqError(f"{path}: the filterbank has one state, layer -1 (normalised log-Mel, 4 frames stacked: "
                                    f"{self.source.dim} dimensions), not layer {layer}")
            depth = 0
        elif depth is None:
            self.source = FrozenEncoder.from_checkpoint(path)
            depth = self.source.encoder.num_layers
        if not -1 <= layer < depth:
            raise SpeechrqError(f"{path}: layer {layer} does not exist (this encoder has layers -1 (front end) to {depth - 1})")
        if is_pretrained_folder(path):
            self.source = freeze(HuggingFaceEncoder(path, depth=layer + 1))
        self.layer, self.path = layer, Path(path)
        self.dim = self.source.dim if hasattr(self.source, "dim") else self.source.encoder.config.dim
        self.fingerprint = self.source.fingerprint
        self.min_samples = int(self.source.min_samples)
        if cfg and self.frame_ms != ENCODER_FRAME_MS:  # one output frame averages `group` of the model's own
            self.min_samples = self.source.native_min_samples(self.group)
        freeze(self)

    @property
    def frame_shift(self) -> float:
        """Seconds between frames (``frame_ms / 1000``)."""
        return self.frame_ms / 1000

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, S]`` audio -> ``[B, T, dim]`` states of the layer and ``[B]`` frame lengths."""
        self.forward_calls += 1
        if isinstance(self.source, FrozenEncoder):
            states, lens = self.source.encoder.extract_features(*self.source.features(audio, audio_lens), num_layers=self.layer + 1)
        elif self.frame_ms != ENCODER_FRAME_MS:
            states, lens = self.source.native_states(audio, audio_lens, self.group)  # a Hugging Face model's own frames
        else:
            states, lens = self.source(audio, audio_lens)
        return states[self.layer + 1], lens
