"""Whole corpora to discrete units, attached to lhotse cuts.

``encode_corpus`` runs the quantizer's encoder layer over every cut of a split and
writes each utterance's units, ``uint16 [frames, M]``, as ``OUT/arrays/<id>.npy``
(written atomically; a rerun skips utterances already written, so an interrupted
job resumes). The manifest ``OUT/cuts_<split>.jsonl.gz`` is the corpus's CutSet with
the units attached as the temporal array ``cut.units`` (frame shift: the layer's, 20 ms for a
Hugging Face model, 40 ms for a speechrq encoder), read
with ``cut.load_custom("units")``: discrete-unit ASR reads a manifest, not a private
format. Its paths are absolute (the arrays' folder, the corpus's audio), so lhotse alone
reads it from any directory; ``OUT/paths.json`` records OUT's path, so a moved OUT still reads
in speechrq (:func:`load_units`) and :func:`speechrq.data.corpus.relocate` rewrites it for everyone else. Single-stream units are also written as Kaldi-style text
(``OUT/units_<split>.txt``: ``utt-id u1 u2 ...``), what ESPnet's asr2 recipes read.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..checks import describe_cut, require_finite
from ..data.corpus import text_id
from ..errors import SpeechrqError
from ..frames import SAMPLE_RATE
from ..io import atomic_path, utterance_file
from .sample import TRIM_EVERY, trim_heap

UNITS_FIELD = "units"


def manifest_path(out: str | Path, split: str) -> Path:
    return Path(out) / f"cuts_{split}.jsonl.gz"


def _attach(cut, arrays_dir: Path, path: Path, frames: int, streams: int, frame_shift: float):
    from lhotse.array import Array, TemporalArray

    # an absolute folder: lhotse alone reads the units from any directory; a moved folder reads in speechrq (load_units) and,
    # once rewritten by speechrq.data.corpus.relocate, in lhotse too
    array = Array(storage_type="numpy_files", storage_path=str(arrays_dir.resolve()), storage_key=str(path.relative_to(arrays_dir)),
                  shape=[frames, streams])
    return cut.with_custom(UNITS_FIELD, TemporalArray(array=array, temporal_dim=0, frame_shift=frame_shift, start=0))


def encode_corpus(layer, quantizer, cuts, out: str | Path, split: str, max_duration: float = 30.0, progress: bool = True,
                  ctx=None) -> dict:
    """Units of every cut of ``cuts`` (a re-iterable, best a lazy :class:`~speechrq.data.corpus.LazyCuts`) into ``out``.

    One pass encodes the utterances not written yet, a second streams the manifest (and the
    Kaldi text): memory is one batch, whatever the corpus size. Returns counts and throughput.
    Cuts too short for ``layer`` are the caller's to refuse first (:func:`~speechrq.units.run.encode_units` checks
    every split before encoding any); the layer itself refuses a short row.

    The pass's batches are consecutive cuts of at most ``max_duration`` padded seconds; a batch whose
    utterances are all written is skipped whole, so a resumed pass computes each utterance in the same
    batch as an uninterrupted one. ``ctx`` (:class:`speechrq.distributed.Context`): under torchrun each
    rank encodes its share of those batches (:func:`speechrq.distributed.shard_cuts`) and rank 0 writes
    the manifest and the text once all are done: the output is one process's (arrays and texts byte for byte,
    the manifest as decompressed, with the same threads per process).
    Throughput (``frames_per_s``) is per process; ``processes`` says how many shared the pass.
    """
    import time

    import torch
    from tqdm import tqdm

    from .. import distributed
    from ..data.batching import sequential_batches

    ctx = ctx or distributed.Context()
    out = Path(out)
    arrays = out / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    device = next(iter([*layer.parameters(), *layer.buffers()]), torch.zeros(0)).device
    frames, t_encode, t_quantize = 0, 0.0, 0.0
    done = lambda group: all(utterance_file(arrays, c.id).exists() for c in group)  # noqa: E731
    share = distributed.rank_cuts(cuts, max_duration, ctx)
    batches = sequential_batches(share, max_duration, layer.min_samples, skip=done)
    for i, batch in enumerate(tqdm(batches, desc=f"units {split}", unit="batch", disable=not progress or not ctx.is_main)):
        if i % TRIM_EVERY == 0:
            trim_heap()  # RSS stays flat over a long pass (see speechrq.units.sample.trim_heap)
        if not len(batch["cuts"]):
            continue
        t0 = time.perf_counter()
        states, lens = layer(batch["audio"].to(device), batch["audio_lens"].to(device))
        require_finite(  # a NaN state is named here, never turned into a unit
            states, lens, [describe_cut(c) for c in batch["cuts"]], f"encoder layer {layer.layer} states")
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        valid = torch.arange(states.shape[1], device=states.device)[None] < lens[:, None]
        flat = states[valid]  # valid frames only, utterance after utterance
        # on a GPU the nearest centroids are found there (torch); on the CPU by faiss
        codes = (quantizer.encode_torch(flat).cpu().numpy().astype(np.uint16) if device.type == "cuda"
                 else quantizer.encode(flat.float().cpu().numpy()))
        t_quantize += time.perf_counter() - t1
        t_encode += t1 - t0
        offset = 0
        for j, cut in enumerate(batch["cuts"]):
            n = int(lens[j])
            with atomic_path(utterance_file(arrays, cut.id)) as tmp:
                np.save(tmp, codes[offset: offset + n])
            offset += n
        frames += len(flat)
    per_rank = distributed.gather_objects((frames, t_encode, t_quantize), ctx)  # every rank's share done past here
    if not ctx.is_main:
        return {}
    return _write_manifest(layer, quantizer, cuts, out, split, arrays, per_rank)


def _write_manifest(layer, quantizer, cuts, out: Path, split: str, arrays: Path, per_rank: list) -> dict:
    """The manifest and Kaldi text of every written utterance, in ``cuts``' order, and the pass's counts."""
    from lhotse import CutSet

    frames = sum(f for f, _, _ in per_rank)
    busy = [e + q for _, e, q in per_rank]
    t_encode, t_quantize = sum(e for _, e, _ in per_rank), sum(q for _, _, q in per_rank)
    # the manifest: every cut with its units, streamed (cuts whose audio failed to load have none and are left out)
    manifest = manifest_path(out, split)
    kaldi = out / f"units_{split}.txt" if quantizer.num_streams == 1 else None
    utterances = missing = split_frames = 0  # the split's frames, whichever pass encoded them (a resumed one: some)
    hours = 0.0
    from ..data.corpus import record_root

    record_root(out)  # OUT's path, which the arrays' paths start with (the other splits' manifests rewritten first if OUT moved)
    with atomic_path(manifest) as tmp, CutSet.open_writer(tmp) as writer, \
            (atomic_path(kaldi) if kaldi else contextlib.nullcontext()) as tmp_text, \
            (open(tmp_text, "w") if kaldi else contextlib.nullcontext()) as text:
        for c in cuts:
            path = utterance_file(arrays, c.id)
            if not path.exists():
                missing += 1
                continue
            units = np.load(path)
            split_frames += units.shape[0]
            writer.write(_attach(c, arrays, path, units.shape[0], units.shape[1], layer.frame_shift))
            if text is not None:
                text.write(f"{text_id(c.id, kaldi)} {' '.join(map(str, units[:, 0].tolist()))}\n")  # no whitespace in an id
            utterances += 1
            hours += c.duration / 3600
    if not utterances:
        raise SpeechrqError(f"{out}: no utterance of split {split} could be encoded")
    return {"split": split, "utterances": utterances, "missing": missing, "encoded_frames": split_frames,
            "encoder_s": t_encode, "quantize_s": t_quantize, "processes": len(per_rank),
            # frames per second of one process's busy time (the pass's wall clock is about that over the processes)
            "frames_per_s": frames / sum(busy) if frames and sum(busy) else None, "manifest": str(manifest.resolve()),
            "audio_hours": hours, "sample_rate": SAMPLE_RATE}


def load_units(manifest: str | Path):
    """A units manifest back as a CutSet (``cut.load_custom("units")`` -> ``uint16 [frames, M]``)."""
    from lhotse import CutSet

    from ..data.corpus import relocated, written_root

    path = Path(manifest)
    if not path.exists():
        raise SpeechrqError(f"{path}: no units manifest (make it with `speechrq units encode`)")
    root = path.resolve().parent
    # the arrays under the folder where it lies now (moved since it was written: paths.json; an older version's: relative)
    old = written_root(root)
    return CutSet.from_cuts(relocated(c, old, str(root)) for c in CutSet.from_file(path))
