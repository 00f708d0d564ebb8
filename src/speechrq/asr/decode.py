"""Decoding trained discrete-unit ASR: test sets to hypotheses and CER/WER, and raw audio files to text.

:class:`Recognizer` is a checkpoint made usable: the model, its output tokenizer, the
unit BPE when the model reads BPE'd units, and, lazily, the chain from audio (the
encoder layer and the quantizer the units came from). ``transcribe`` runs the whole
chain, audio -> encoder layer -> units -> model -> text, in one call.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import latest_checkpoint, load_model_state, read_meta
from ..errors import SpeechrqError
from ..frames import SAMPLE_RATE
from ..text import BPETokenizer, error_rate, normalize_text
from .search import attention_greedy, ctc_greedy, joint_beam_search
from .trainer import TOKENIZER_KEY, UNIT_BPE_KEY, build

log = logging.getLogger(__name__)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory's newest checkpoint."""
    p = Path(path)
    if (p / "meta.json").exists():
        return p
    last = latest_checkpoint(p / "checkpoints")
    if last is None:
        raise SpeechrqError(f"{p}: neither an ASR checkpoint nor a run directory with checkpoints")
    return last


class Recognizer:
    def __init__(self, checkpoint: str | Path, device: str | None = None):
        self.path = resolve_checkpoint(checkpoint)
        meta = read_meta(self.path)
        if meta.get("kind") != "speechrq-asr":
            raise SpeechrqError(f"{self.path}: not a `speechrq asr train` checkpoint")
        self.spec = meta["model"]
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        state = load_model_state(self.path)
        self.tokenizer = BPETokenizer(proto=bytes(state.pop(TOKENIZER_KEY).numpy()))
        self.unit_bpe = None
        if UNIT_BPE_KEY in state:
            import sentencepiece as spm

            self.unit_bpe = spm.SentencePieceProcessor(model_proto=bytes(state.pop(UNIT_BPE_KEY).numpy()))
        self.model = build(self.spec)
        from ..checkpoint import MODEL_FILE, load_weights

        load_weights(self.model, state, self.path / MODEL_FILE, "ASR model")  # whole, or one line naming what is not
        self.model.to(self.device).eval()
        self._layer = self._data = None

    @property
    def kind(self) -> str:
        return self.spec["input"]

    def layer(self):
        """The encoder layer the units (or continuous features) come from, loaded on first use."""
        if self._layer is None:
            from ..encoders import EncoderLayer

            # at the units' frame shift (models saved before frame shifts were recorded: all 40 ms)
            self._layer = EncoderLayer(self.spec["encoder"], int(self.spec["layer"]), int(self.spec.get("frame_ms", 40))).to(self.device)
        return self._layer

    @property
    def min_samples(self) -> int:
        """The fewest 16 kHz samples the encoder reads (560, 35 ms, for a speechrq checkpoint; see
        :mod:`speechrq.encoders.frozen`): shorter audio is refused, never transcribed as empty."""
        from ..encoders.frozen import min_samples

        return self._layer.min_samples if self._layer is not None else min_samples(self.spec["encoder"])

    def quantizer_fingerprint(self) -> str:
        """The weights fingerprint of the quantizer the model's units came from (:func:`speechrq.asr.data.quantizer_fingerprint`)."""
        from .data import quantizer_fingerprint

        try:
            return quantizer_fingerprint(self.spec)
        except SpeechrqError as e:
            raise SpeechrqError(f"{self.path}: {e}") from None

    def data(self, units: str | Path | None = None, need_units: bool = True):
        """The model's :class:`~speechrq.asr.data.ASRData`: its own units folder, or ``units`` made by the same quantizer
        (checked); with ``need_units=False`` and no ``units``, the input side alone (audio -> units), read from no folder."""
        from .data import ASRData

        if units is None and not need_units:
            if self._data is None:
                self._data = ASRData.for_model(self.spec, self.unit_bpe, need_units=False)
            return self._data
        self.quantizer_fingerprint()  # a checkpoint whose quantizer is gone: one line naming it
        return ASRData.for_model(self.spec, self.unit_bpe, units)

    @torch.no_grad()
    def decode(self, inputs: torch.Tensor, lens: torch.Tensor, mode: str = "joint", beam: int = 10, ctc_weight: float = 0.3) -> list[str]:
        """Model inputs (unit ids ``[B, T, M]`` or features ``[B, T, D]``) -> text."""
        enc = self.model.encode(inputs.to(self.device), lens.to(self.device))
        lens = lens.to(self.device)
        if mode == "ctc":
            ids = ctc_greedy(self.model, enc, lens)
        elif mode == "attention":
            ids = attention_greedy(self.model, enc, lens) if beam == 1 else joint_beam_search(self.model, enc, lens, beam, 0.0)
        elif mode == "joint":
            ids = joint_beam_search(self.model, enc, lens, beam, ctc_weight)
        else:
            raise SpeechrqError(f"decode mode {mode!r}: joint, attention or ctc")
        return [self.tokenizer.decode(i) for i in ids]

    @torch.no_grad()
    def transcribe(self, audio: list[np.ndarray], mode: str = "joint", beam: int = 10, ctc_weight: float = 0.3,
                   names: list[str] | None = None) -> list[str]:
        """16 kHz waveforms -> text: encoder layer, units (unless continuous), model, search.

        Each waveform needs at least :attr:`min_samples` samples (560, 35 ms, for a speechrq checkpoint): shorter
        ones (an empty file too) are refused in one line naming each (``names[i]``, else ``audio i``) and its length.
        """
        from ..checks import require_finite
        from ..data.audio import audio_problem
        from ..encoders.frozen import describe_samples

        names = list(names) if names is not None else [f"audio {i}" for i in range(len(audio))]
        if not len(audio):
            raise SpeechrqError("transcribe: no audio given")
        for i, a in enumerate(audio):  # valid audio only, as import and the loader define it
            if (problem := audio_problem(np.asarray(a))):
                raise SpeechrqError(f"{names[i]}: {problem}")
        minimum = self.min_samples
        short = [f"{names[i]} ({len(a)} samples)" for i, a in enumerate(audio) if len(a) < minimum]
        if short:
            raise SpeechrqError(f"too short to transcribe: {', '.join(short)}; the encoder reads at least {describe_samples(minimum)} "
                                "of 16 kHz audio")
        lens = torch.tensor([len(a) for a in audio])
        batch = torch.zeros(len(audio), int(lens.max()))
        for i, a in enumerate(audio):
            batch[i, : len(a)] = torch.as_tensor(a, dtype=torch.float32)
        states, frame_lens = self.layer()(batch.to(self.device), lens.to(self.device))
        require_finite(states, frame_lens, names, f"encoder layer {self.spec['layer']} states")
        inputs, input_lens = self.data(need_units=False).inputs_from_states(states, frame_lens.cpu())
        return self.decode(inputs, input_lens, mode, beam, ctc_weight)


def decode_split(rec: Recognizer, cuts, mode: str = "joint", beam: int = 10, ctc_weight: float = 0.3, max_duration: float = 60.0,
                 progress: bool = True, ctx=None) -> dict:
    """Hypotheses of every cut with a transcript, and CER/WER against the references.

    Nothing is left out silently: with continuous input, a cut shorter than the encoder's minimum (560 samples,
    35 ms, for a speechrq checkpoint) is refused before decoding, naming each; with units, a cut with no unit
    frame is refused likewise. Cuts are decoded shortest first, in batches of at most ``max_duration`` padded
    seconds; ``ctx`` (:class:`speechrq.distributed.Context`): under torchrun each rank decodes its share of those
    batches (:func:`speechrq.distributed.shard_cuts`) and every rank returns the whole split's result, the same
    hypotheses in the same order as one process.
    """
    from .. import distributed

    ctx = ctx or distributed.Context()
    from lhotse import CutSet
    from tqdm import tqdm

    from ..checks import describe_cut, name_list, require_finite
    from ..data.batching import padded_groups, refuse_short_cuts, sequential_batches

    cuts = list(cuts)
    if (empty := [c.id for c in cuts if not normalize_text(c.supervisions[0].text if c.supervisions else "")]):
        log.warning("%d of %d utterances have no transcript left after normalisation (speechrq.text.normalize_text) and are "
                    "not scored: %s", len(empty), len(cuts), name_list(empty, shown=5))
    unscored, left_out = len(empty), set(empty)
    cuts = sorted((c for c in cuts if c.id not in left_out), key=lambda c: c.duration)
    language = {c.id: c.supervisions[0].language for c in cuts}

    def check() -> None:
        if rec.kind == "continuous":
            refuse_short_cuts(cuts, rec.min_samples, f"encoder layer {rec.spec['layer']} of {rec.spec['encoder']}")
        elif (empty := [describe_cut(c) for c in cuts if _unit_frames(c) == 0]):
            raise SpeechrqError(f"{len(empty)} utterance(s) have no unit frame (audio too short for the encoder when encoded): "
                                f"{name_list(empty, shown=10)}; encode the units again")

    distributed.on_main(check, ctx)
    ids, hyps, refs = [], [], []
    share = list(distributed.rank_cuts(cuts, max_duration, ctx))  # whole batches: each decoded as in one process
    batches = (sequential_batches(CutSet.from_cuts(share), max_duration, rec.min_samples) if rec.kind == "continuous"
               else padded_groups(share, max_duration))
    for batch in tqdm(batches,
                      desc=f"decode {mode}", unit="batch", disable=not progress or not ctx.is_main):
        if rec.kind == "continuous":
            states, lens = rec.layer()(batch["audio"].to(rec.device), batch["audio_lens"].to(rec.device))
            require_finite(states, lens, [describe_cut(c) for c in batch["cuts"]], f"encoder layer {rec.spec['layer']} states")
            out = rec.decode(states, lens.cpu(), mode, beam, ctc_weight)
            chunk = list(batch["cuts"])
        else:
            chunk = batch
            inputs, lens = rec.data(need_units=False).inputs(chunk)
            out = rec.decode(inputs, lens, mode, beam, ctc_weight)
        ids += [c.id for c in chunk]
        hyps += out
        refs += [normalize_text(c.supervisions[0].text) for c in chunk]
    if ctx.distributed:  # every rank's share, in rank order: the one-process order
        parts = distributed.gather_objects((ids, hyps, refs), ctx)
        ids, hyps, refs = ([x for part in parts for x in part[k]] for k in range(3))
    languages = [language[i] for i in ids]
    result = {"ids": ids, "hyps": hyps, "refs": refs, "cer": error_rate(refs, hyps, "char"), "wer": error_rate(refs, hyps, "word"),
              "utterances": len(ids), "unscored": unscored, "languages": languages}
    if len(set(languages) - {None}) > 1:  # several languages: each one's CER, as ML-SUPERB scores them
        result["cer_by_language"] = {
            lang: error_rate([r for r, g in zip(refs, languages) if g == lang], [h for h, g in zip(hyps, languages) if g == lang], "char")
            for lang in sorted(set(languages) - {None})}
    return result


def _unit_frames(cut) -> int:
    """A units cut's frame count, from its manifest (the array is not read)."""
    from ..units.encode import UNITS_FIELD

    return int(cut.custom[UNITS_FIELD].shape[0])


def read_audio(path: str | Path) -> np.ndarray:
    """A sound file as 16 kHz mono float32 (resampled, channels averaged); a one-line error when unreadable
    or not valid audio (:func:`speechrq.data.audio.audio_problem`: non-finite samples, absurd amplitude)."""
    from lhotse import Recording

    from ..data.audio import audio_problem

    import soundfile as sf

    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise SpeechrqError(f"{path}: empty file (0 bytes)")
    try:
        rec = Recording.from_file(str(path))
        if rec.sampling_rate != SAMPLE_RATE:
            rec = rec.resample(SAMPLE_RATE)
        audio = rec.load_audio()
    except Exception as e:  # any decoder error is the user's file
        raise SpeechrqError(f"{path}: cannot read audio ({str(e).splitlines()[0][:200]})") from None
    try:  # checked at the file's own precision, as import does (a float64 1e300 is absurd, not "inf" after a cast)
        original, _ = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception:  # a format libsndfile does not read: the decoded float32 samples
        original = np.asarray(audio)
    if (problem := audio_problem(original)):
        raise SpeechrqError(f"{path}: {problem}")
    return np.asarray(audio, dtype=np.float32).mean(0)
