"""A seeded sample of one encoder layer's frames, streamed from audio into float16 shards.

fairseq's and ESPnet's k-means scripts dump every frame's feature and load them all
into RAM; here the corpus is read once, batch by batch, and each frame is kept with
probability ``p`` by a key drawn from a generator seeded with ``(seed, utterance id)``,
so the sample does not depend on batching, order or resumption. Kept frames go to
``OUT/shard_NNNNN.npy`` (float16 ``[n, D]``) whenever ``shard_frames`` have gathered,
and ``OUT/sample.json`` records the shards and the utterances each covers, so an
interrupted pass resumes after its last shard. Memory is one batch plus one shard,
whatever the corpus size.

``frames=n`` asks for about ``n`` frames: ``p = n / F``, with ``F`` the corpus's frame
count known from the manifest's durations, so the count is binomial around ``n``;
``fraction`` sets ``p`` directly.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import torch

from ..checks import FLOAT16_MAX, describe_cut, require_finite
from ..errors import SpeechrqError
from ..models.conformer import ENCODER_FRAME_SECONDS
from ..io import atomic_path, atomic_write_json, read_json

SAMPLE_FILE = "sample.json"
log = logging.getLogger(__name__)


TRIM_EVERY = 20  # batches between heap trims


def trim_heap() -> None:
    """Give freed heap memory back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    A long pass over batches of varying shapes otherwise creeps up in RSS as glibc keeps
    freed chunks (measured: +110 MB over 10 hours of audio without it, flat with it), and
    the peak would grow with the corpus. Called every :data:`TRIM_EVERY` batches: a few
    milliseconds each.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def utterance_generator(seed: int, utt_id: str) -> torch.Generator:
    """The frame-key stream of one utterance: depends on the seed and the id only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(utt_id.encode()))


def expected_frames(cuts, frame_shift: float = ENCODER_FRAME_SECONDS) -> tuple[int, int]:
    """``(encoder frames, utterances)`` of a corpus from its manifest's durations (frames of ``frame_shift`` seconds,
    40 ms by default), without reading audio."""
    frames = n = 0
    for c in cuts:
        frames += int(c.duration / frame_shift)
        n += 1
    return frames, n


def sample_features(layer, cuts, out: str | Path, seed: int = 0, frames: int | None = None, fraction: float | None = None,
                    max_duration: float = 30.0, shard_frames: int = 200_000, progress: bool = True,
                    corpus_fingerprint: str | None = None, ctx=None) -> dict:
    """Stream ``layer`` (an :class:`~speechrq.encoders.EncoderLayer`) over ``cuts`` into a seeded sample in ``out``.

    ``cuts``: any re-iterable of cuts in a fixed order, best a :class:`~speechrq.data.corpus.LazyCuts`
    (read from the manifest as it goes). Returns ``sample.json``'s content: ``frames`` kept,
    ``corpus_frames`` (from the manifest's durations), ``p``, ``shards``. A finished sample with the
    same settings is reused; another one is an error (a new ``out`` is needed). ``corpus_fingerprint``
    (:func:`speechrq.identity.corpus_fingerprint`) keys the sample by the corpus's content, not only its size.

    ``ctx`` (:class:`speechrq.distributed.Context`): under torchrun each rank samples its share of the
    pass's batches into ``out/partRofN`` (resumable on its own) and rank 0 lists every part's shards, in
    rank order, in ``out/sample.json``: the frames, their order and values are those of one process.
    """
    from .. import distributed

    ctx = ctx or distributed.Context()
    out = Path(out)

    def prepare():
        from ..data.batching import refuse_short_cuts

        refuse_short_cuts(cuts, layer.min_samples, f"encoder layer {layer.layer}")  # named in one line, before any audio is read
        if (frames is None) == (fraction is None):
            raise SpeechrqError("sample: give exactly one of frames (a count) or fraction")
        frame_shift = getattr(layer, "frame_shift", ENCODER_FRAME_SECONDS)
        total, utterances = expected_frames(cuts, frame_shift)
        if total == 0:
            raise SpeechrqError("sample: the corpus has no audio")
        p = min(1.0, frames / total) if frames is not None else fraction
        if not 0 < p <= 1:
            raise SpeechrqError(f"sample: fraction {p}: must be in (0, 1]")
        if frames is not None and frames > total:  # never silently: the sample is the whole corpus, and sample.json says how many
            log.warning("sample: %d frames asked for, the corpus holds about %d; taking every frame (recorded as 'frames' in %s)",
                        frames, total, out / SAMPLE_FILE)
        settings = {"encoder": layer.fingerprint, "layer": layer.layer, "seed": seed, "p": p, "utterances": utterances}
        if corpus_fingerprint is not None:
            settings["corpus"] = corpus_fingerprint
        settings["frame_ms"] = round(frame_shift * 1000)
        state = read_json(out / SAMPLE_FILE) if (out / SAMPLE_FILE).exists() else None
        if state is not None:
            state["settings"] = {"frame_ms": 40} | state["settings"]  # samples made before frame shifts were recorded: 40 ms
        if state is not None and state["settings"] != settings:
            from ..identity import describe_difference

            raise SpeechrqError(f"{out}: holds a sample made with other settings ({describe_difference(state['settings'], settings)}); "
                                "use another directory or delete this one")
        return total, state or {"settings": settings, "dim": layer.dim, "shards": [], "done": False}

    total, state = distributed.on_main(prepare, ctx)
    if state["done"]:
        return state
    if not ctx.distributed:
        _sample_share(layer, cuts, out, state, max_duration, shard_frames, progress)
    else:
        begin, end = distributed.shard_cuts(cuts, max_duration, ctx)
        part_dir = out / f"part{ctx.rank}of{ctx.world_size}"
        settings = state["settings"] | {"cuts": [begin, end]}
        part = read_json(part_dir / SAMPLE_FILE) if (part_dir / SAMPLE_FILE).exists() else None
        if part is None or part["settings"] != settings:  # another corpus, world size or settings: this share starts afresh
            part = {"settings": settings, "dim": layer.dim, "shards": [], "done": False}
        if not part["done"]:
            _sample_share(layer, distributed.rank_cuts(cuts, max_duration, ctx), part_dir, part, max_duration, shard_frames,
                          progress and ctx.is_main)
            part["done"] = True
            atomic_write_json(part_dir / SAMPLE_FILE, part)
        parts = distributed.gather_objects((part_dir.name, begin, part["shards"]), ctx)
        state["shards"] = [{"file": f"{name}/{sh['file']}", "frames": sh["frames"], "cuts": offset + sh["cuts"]}
                           for name, offset, shards in parts for sh in shards]
    state["frames"] = sum(sh["frames"] for sh in state["shards"])
    state["corpus_frames"] = total
    state["done"] = True
    if ctx.is_main:
        atomic_write_json(out / SAMPLE_FILE, state)
    distributed.barrier(ctx)
    return state


def _sample_share(layer, cuts, out: Path, state: dict, max_duration: float, shard_frames: int, progress: bool) -> None:
    """The sampling loop over ``cuts`` (one process's, or one rank's share), resumed after the last shard ``state`` lists;
    ``state`` (``out/sample.json``) is updated and saved as each shard is written."""
    from itertools import islice

    from tqdm import tqdm

    from ..data.batching import sequential_batches

    p = state["settings"]["p"]
    utterances = sum(1 for _ in cuts)
    out.mkdir(parents=True, exist_ok=True)
    start = state["shards"][-1]["cuts"] if state["shards"] else 0  # cuts consumed by the finished shards, in order
    device = next(iter([*layer.parameters(), *layer.buffers()]), torch.zeros(0)).device
    buf, buf_n, consumed = [], 0, start

    def flush() -> None:
        nonlocal buf, buf_n
        path = out / f"shard_{len(state['shards']):05d}.npy"
        with atomic_path(path) as tmp:
            np.save(tmp, np.concatenate(buf) if buf else np.zeros((0, layer.dim), np.float16))
        state["shards"].append({"file": path.name, "frames": buf_n, "cuts": consumed})
        atomic_write_json(out / SAMPLE_FILE, state)
        buf, buf_n = [], 0

    bar = tqdm(total=utterances, initial=start, desc=f"sample layer {layer.layer}", unit="utt", disable=not progress)
    # a resumed pass starts at a batch boundary (shards close after a batch), so its batches are those of an uninterrupted one
    for i, batch in enumerate(sequential_batches(islice(iter(cuts), start, None), max_duration, layer.min_samples)):
        if i % TRIM_EVERY == 0:
            trim_heap()
        if len(batch["cuts"]):
            states, lens = layer(batch["audio"].to(device), batch["audio_lens"].to(device))
            require_finite(  # shards are float16: nothing past its range
                states, lens, [describe_cut(c) for c in batch["cuts"]], f"encoder layer {layer.layer} states",
                limit=FLOAT16_MAX)
            states = states.to("cpu", torch.float16)
            for j, cut in enumerate(batch["cuts"]):
                n = int(lens[j])
                keep = torch.rand(n, generator=utterance_generator(state["settings"]["seed"], cut.id)) < p
                if keep.any():
                    buf.append(states[j, :n][keep].numpy())
                    buf_n += int(keep.sum())
        bar.update(start + batch["consumed"] - consumed)
        consumed = start + batch["consumed"]
        if buf_n >= shard_frames:
            flush()
    bar.close()
    if consumed > (state["shards"][-1]["cuts"] if state["shards"] else 0):
        flush()


def load_sample(directory: str | Path, max_frames: int | None = None) -> np.ndarray:
    """The sample's frames, ``[N, D]`` float32 (the first ``max_frames`` if given)."""
    d = Path(directory)
    if not (d / SAMPLE_FILE).exists():
        raise SpeechrqError(f"{d}: no {SAMPLE_FILE}; make the sample first (`speechrq units fit` does)")
    state = read_json(d / SAMPLE_FILE)
    if not state.get("done"):
        raise SpeechrqError(f"{d}: the sample is unfinished; run the same command again to complete it")
    parts, n = [], 0
    for sh in state["shards"]:
        if max_frames is not None and n >= max_frames:
            break
        a = np.load(d / sh["file"], mmap_mode="r")
        a = a[: None if max_frames is None else max_frames - n]
        parts.append(np.asarray(a, dtype=np.float32))
        n += len(a)
    return np.concatenate(parts) if parts else np.zeros((0, state["dim"]), np.float32)
