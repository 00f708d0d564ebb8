"""Decoding trained discrete-unit ASR: test sets to hypotheses and CER/WER, and raw audio files to text.

:class:`Recognizer` is a checkpoint made usable: the model, its output tokenizer, the
unit BPE when the model reads BPE'd units, and, lazily, the chain from audio (the
encoder layer and the quantizer the units came from). ``transcribe`` runs the whole
chain, audio -> encoder layer -> units -> model -> text, in one call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import latest_checkpoint, load_model_state, read_meta
from ..errors import SpeechrqError
from ..frames import SAMPLE_RATE
from ..text import BPETokenizer, error_rate, normalize_text
from .search import attention_greedy, ctc_greedy, joint_beam_search
from .trainer import TOKENIZER_KEY, UNIT_BPE_KEY, build


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
        self.model.load_state_dict(state)
        self.model.to(self.device).eval()
        self._layer = self._quantizer = None

    @property
    def kind(self) -> str:
        return self.spec["input"]

    def layer(self):
        """The encoder layer the units (or continuous features) come from, loaded on first use."""
        if self._layer is None:
            from ..encoders import EncoderLayer

            self._layer = EncoderLayer(self.spec["encoder"], int(self.spec["layer"])).to(self.device)
        return self._layer

    def quantizer(self):
        if self._quantizer is None:
            from ..units.quantizers import UnitQuantizer

            self._quantizer = UnitQuantizer.load(self.spec["quantizer_dir"])
        return self._quantizer

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
    def transcribe(self, audio: list[np.ndarray], mode: str = "joint", beam: int = 10, ctc_weight: float = 0.3) -> list[str]:
        """16 kHz waveforms -> text: encoder layer, units (unless continuous), model, search."""
        from .data import pad_ids, unit_sequence

        lens = torch.tensor([len(a) for a in audio])
        batch = torch.zeros(len(audio), int(lens.max()))
        for i, a in enumerate(audio):
            batch[i, : len(a)] = torch.as_tensor(a, dtype=torch.float32)
        states, frame_lens = self.layer()(batch.to(self.device), lens.to(self.device))
        if self.kind == "continuous":
            return self.decode(states, frame_lens.cpu(), mode, beam, ctc_weight)
        q = self.quantizer()
        seqs = []
        for i, n in enumerate(frame_lens.tolist()):
            units = q.encode(states[i, :n].float().cpu().numpy())
            seqs.append(unit_sequence(units, self.kind, self.unit_bpe))
        inputs, input_lens = pad_ids(seqs)
        return self.decode(inputs, input_lens, mode, beam, ctc_weight)


def decode_split(rec: Recognizer, cuts, mode: str = "joint", beam: int = 10, ctc_weight: float = 0.3, max_duration: float = 60.0,
                 progress: bool = True) -> dict:
    """Hypotheses of every cut with a transcript, and CER/WER against the references."""
    from lhotse import CutSet
    from tqdm import tqdm

    from ..data.batching import padded_groups, sequential_batches
    from .data import pad_ids, unit_sequence

    cuts = sorted((c for c in cuts if normalize_text(c.supervisions[0].text if c.supervisions else "")), key=lambda c: c.duration)
    ids, hyps, refs = [], [], []
    for batch in tqdm(sequential_batches(CutSet.from_cuts(cuts), max_duration) if rec.kind == "continuous" else padded_groups(cuts, max_duration),
                      desc=f"decode {mode}", unit="batch", disable=not progress):
        if rec.kind == "continuous":
            states, lens = rec.layer()(batch["audio"].to(rec.device), batch["audio_lens"].to(rec.device))
            out = rec.decode(states, lens.cpu(), mode, beam, ctc_weight)
            chunk = list(batch["cuts"])
        else:
            chunk = batch
            inputs, lens = pad_ids([unit_sequence(c.load_custom("units"), rec.kind, rec.unit_bpe) for c in chunk])
            out = rec.decode(inputs, lens, mode, beam, ctc_weight)
        ids += [c.id for c in chunk]
        hyps += out
        refs += [normalize_text(c.supervisions[0].text) for c in chunk]
    return {"ids": ids, "hyps": hyps, "refs": refs, "cer": error_rate(refs, hyps, "char"), "wer": error_rate(refs, hyps, "word"),
            "utterances": len(ids)}


def read_audio(path: str | Path) -> np.ndarray:
    """A sound file as 16 kHz mono float32 (resampled, channels averaged); a one-line error when unreadable."""
    from lhotse import Recording

    try:
        rec = Recording.from_file(str(path))
        if rec.sampling_rate != SAMPLE_RATE:
            rec = rec.resample(SAMPLE_RATE)
        audio = rec.load_audio()
    except Exception as e:  # any decoder error is the user's file
        raise SpeechrqError(f"{path}: cannot read audio ({str(e).splitlines()[0][:200]})") from None
    return np.asarray(audio, dtype=np.float32).mean(0)
