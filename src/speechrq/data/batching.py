"""Duration-bucketed dynamic batches of padded audio, with lengths carried through.

lhotse's :class:`~lhotse.dataset.DynamicBucketingSampler` groups cuts of similar
duration into batches of at most ``max_duration`` seconds of audio;
:class:`AudioBatches` turns such a CutSet into a padded tensor batch. Features
are not computed here: the training loop computes log-Mel for the whole batch on
its device (:class:`speechrq.features.LogMel`).

A cut whose audio cannot be loaded, or is not valid audio
(:func:`speechrq.data.audio.audio_problem`, the check import makes), is dropped from
its batch with a warning that names the file and the problem; the run goes on, and the
count is kept. Each batch lists what it dropped (``"skipped"``: ``id (file): problem``).
:func:`make_loader` never yields a batch left with no loadable file, and when not one file of
its cuts could be loaded it ends in one :class:`~speechrq.errors.SpeechrqError` that names the
first failures and why (``audio file X does not exist``, ``unreadable audio (...)``), never a
tensor error from an empty batch; :func:`sequential_batches` skips such batches too.

**Too short for the encoder.** A job that runs an encoder over a corpus at inference first
calls :func:`refuse_short_cuts` with the encoder's minimum (``min_samples``, 560 samples =
35 ms for a speechrq checkpoint, see :mod:`speechrq.encoders.frozen`): a cut shorter than it
(by its manifest, no audio read) is refused before any work, in one line naming each such
cut (id and file) and the count; nothing is dropped or encoded as empty. The loaders also take
``min_samples`` and skip, with a warning, audio that turns out shorter than its manifest said.
Training streams (:class:`BatchStream`) skip short audio with a named warning and a count
instead: a training step goes on without one utterance.

:class:`BatchStream` is a training run's endless, resumable stream of such
batches, laid out so that any split of a step over ranks and accumulation sees
the same batches.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..checks import describe_cut, name_list
from ..errors import SpeechrqError
from .audio import TARGET_RATE, audio_problem

log = logging.getLogger(__name__)


class AudioBatches(torch.utils.data.Dataset):
    """Maps a CutSet (one sampler batch) to a dict of tensors.

    Returns ``{"audio": [B, S] float32, "audio_lens": [B] int64, "cuts": CutSet, "skipped": [str]}``
    where ``cuts`` are the cuts actually loaded, in batch order, with every label, and
    ``skipped`` says, per cut left out, ``id (file): problem``.
    Several channels are averaged to mono; other sample rates were already
    resampled by the manifest (see :func:`speechrq.data.recipes.import_corpus`).
    """

    def __init__(self, min_samples: int = 1) -> None:
        self.min_samples = min_samples  # shorter audio is dropped (a model needs at least one frame)
        self.skipped = 0

    def load(self, cut) -> np.ndarray | None:
        """The cut's audio (mono float32), or None after a warning naming the cut, its file and the problem."""
        audio, problem = self.read(cut)
        if problem:
            self.skipped += 1
            log.warning("skipping %s: %s", describe_cut(cut), problem)
            return None
        return audio

    def read(self, cut) -> tuple[np.ndarray | None, str | None]:
        """``(audio, None)``, or ``(None, what makes the cut's audio unusable)``."""
        from pathlib import Path

        source = cut.recording.sources[0] if cut.has_recording and cut.recording.sources else None
        if source is not None and source.type == "file" and not Path(source.source).exists():
            return None, f"audio file {source.source} does not exist"
        try:
            audio = cut.load_audio()
        except Exception as e:  # any decoder error: report the file, keep the run going
            return None, f"unreadable audio ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 2:
            audio = audio.mean(axis=0)
        problem = None
        if audio.size == 0:
            problem = "zero-length audio"
        elif audio.size < self.min_samples:
            problem = (f"too short: {audio.size} samples, fewer than the {self.min_samples} one frame needs "
                       f"({self.min_samples * 1000 / TARGET_RATE:g} ms)")
        else:
            problem = audio_problem(audio)  # valid audio as import defines it: finite, no absurd amplitude
        return (None, problem) if problem else (audio, None)

    def __getitem__(self, cuts) -> dict:
        from lhotse import CutSet

        kept, audios, skipped = [], [], []
        for cut in cuts:
            if cut.sampling_rate != TARGET_RATE:
                cut = cut.resample(TARGET_RATE)
            audio, problem = self.read(cut)
            if problem:
                self.skipped += 1
                log.warning("skipping %s: %s", describe_cut(cut), problem)
                skipped.append(f"{describe_cut(cut)}: {problem}")
                continue
            kept.append(cut)
            audios.append(audio)
        lens = torch.tensor([len(a) for a in audios], dtype=torch.long)
        batch = torch.zeros(len(audios), int(lens.max()) if len(audios) else 0)
        for i, a in enumerate(audios):
            batch[i, : len(a)] = torch.from_numpy(a)
        return {"audio": batch, "audio_lens": lens, "cuts": CutSet.from_cuts(kept), "skipped": skipped}


def refuse_short_cuts(cuts, min_samples: int, what: str = "the encoder") -> int:
    """Refuse, before any audio is read, cuts shorter than ``min_samples`` at 16 kHz (by their manifest).

    One :class:`SpeechrqError` line names every such cut (id and file; the first few, then the
    count) and the minimum in samples and ms. Returns the number of cuts checked. ``cuts``: any
    re-iterable (a lazy :class:`~speechrq.data.corpus.LazyCuts` is read once more, not held).
    """
    from lhotse.utils import compute_num_samples

    short, n = [], 0
    for cut in cuts:
        n += 1
        samples = compute_num_samples(cut.duration, TARGET_RATE)
        if samples < min_samples:
            short.append(f"{describe_cut(cut)}: {samples} samples")
    if short:
        raise SpeechrqError(f"{len(short)} of {n} utterance(s) too short for {what}, which reads at least {min_samples} samples "
                            f"({min_samples * 1000 / TARGET_RATE:g} ms at {TARGET_RATE} Hz): {_listed(short)}; "
                            "remove them from the manifest (nothing was computed)")
    return n


SHOWN = 10  # cuts named in a refusal; the count says how many more


def _listed(items: list[str]) -> str:
    return name_list(items, shown=SHOWN, sep="; ")


def no_audio_error(skipped: list[str]) -> SpeechrqError:
    """The one-line error of a job that got not one loadable file: the first failures and why."""
    return SpeechrqError(f"no audio could be loaded: every one of {len(skipped)} file(s) failed: {_listed(skipped)}")


class LoadedBatches:
    """A DataLoader's batches without those left with no loadable file; ``skipped`` lists every cut left out.

    Iterating it to the end when not one file loaded (and some were tried) raises :func:`no_audio_error`
    (``require_audio``): a job that got no audio cannot proceed, and must say why.
    """

    def __init__(self, loader, require_audio: bool = True):
        self.loader, self.require_audio = loader, require_audio
        self.skipped: list[str] = []

    @property
    def dataset(self) -> AudioBatches:
        """The DataLoader's :class:`AudioBatches` (its ``skipped`` count, in this process)."""
        return self.loader.dataset

    def __iter__(self):
        loaded = 0
        for batch in self.loader:
            self.skipped += batch.get("skipped", [])
            if not len(batch["cuts"]):
                continue
            loaded += len(batch["cuts"])
            yield batch
        if self.require_audio and not loaded and self.skipped:
            raise no_audio_error(self.skipped)


def make_sampler(cuts, max_duration: float, shuffle: bool = True, seed: int = 0, num_buckets: int = 10, world_size: int | None = None, rank: int | None = None, drop_last: bool = False):
    """A lhotse DynamicBucketingSampler: batches of at most ``max_duration`` seconds.

    A CutSet smaller than ``num_buckets`` gets fewer buckets (lhotse needs at least
    one cut per bucket), or none at all below two cuts. ``world_size`` and ``rank`` default to one
    process: lhotse would otherwise read them from torchrun's environment and silently give each rank
    a share; a caller that shards says so (:class:`BatchStream`).
    """
    import warnings

    world_size, rank = (1, 0) if world_size is None else (world_size, rank)

    from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler

    num_buckets = min(num_buckets, len(cuts))
    with warnings.catch_warnings():
        # lhotse advises lazy manifests for memory; eager ones are fine here.
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
        if num_buckets < 2:
            return DynamicCutSampler(cuts, max_duration=max_duration, shuffle=shuffle, seed=seed, world_size=world_size, rank=rank, drop_last=drop_last)
        return DynamicBucketingSampler(
            cuts, max_duration=max_duration, shuffle=shuffle, seed=seed, num_buckets=num_buckets,
            world_size=world_size, rank=rank, drop_last=drop_last,
        )


def make_loader(cuts, max_duration: float, shuffle: bool = True, seed: int = 0, num_workers: int = 0, sampler=None,
                min_samples: int = 1, require_audio: bool = True, **sampler_kwargs) -> LoadedBatches:
    """Batches of a DataLoader over dynamic batches (``batch_size=None`` since the sampler batches).

    A batch whose every file failed is not yielded; when no file at all could be loaded, the
    iteration ends in :func:`no_audio_error` (unless ``require_audio`` is False). Audio under
    ``min_samples`` is skipped with a warning (call :func:`refuse_short_cuts` first to refuse it).
    """
    sampler = sampler or make_sampler(cuts, max_duration, shuffle=shuffle, seed=seed, **sampler_kwargs)
    loader = torch.utils.data.DataLoader(AudioBatches(min_samples), sampler=sampler, batch_size=None, num_workers=num_workers)
    return LoadedBatches(loader, require_audio)


def padded_groups(cuts, max_duration: float):
    """Consecutive cuts in groups of at most ``max_duration`` seconds *padded* (cuts x the longest), in order."""
    group, longest = [], 0.0
    for cut in cuts:
        if group and (len(group) + 1) * max(longest, cut.duration) > max_duration:
            yield group
            group, longest = [], 0.0
        group.append(cut)
        longest = max(longest, cut.duration)
    if group:
        yield group


def group_plan(cuts, max_duration: float) -> list[tuple[int, float]]:
    """Each of :func:`padded_groups`' groups as ``(cuts in it, padded seconds)``, in order: the plan of a corpus pass,
    read from the manifest's durations (no audio, no cut kept), from which ranks take their shares
    (:func:`speechrq.distributed.shard_range`)."""
    return [(len(g), len(g) * max(c.duration for c in g)) for g in padded_groups(cuts, max_duration)]


def sequential_batches(cuts, max_duration: float, min_samples: int = 1, skip=None, skipped: list | None = None):
    """Audio batches of consecutive cuts of an iterable (a lazy manifest), in order, each at most ``max_duration``
    seconds padded (:func:`padded_groups`), so no batch tensor grows with the corpus.

    For one pass over a whole corpus in bounded memory (units): no sampler, no shuffling,
    nothing held beyond the batch. Yields :class:`AudioBatches` dicts plus ``"consumed"``,
    the cuts read so far up to this batch (loaded or not), so a job can resume after a batch.
    A group whose every file failed (each named by a warning) is not yielded: every yielded
    batch holds at least one utterance. Audio under ``min_samples`` is skipped with a warning.
    ``skip(group) -> bool`` leaves out whole groups (a resumed pass skips those it finished), so the
    groups that remain are the same as in an uninterrupted pass: an utterance is always computed in the
    same batch, whatever the resume point or the number of ranks sharing the pass (encoders are not
    batch-invariant to the last bit: padding changes the matrix shapes, and so the sums' order).
    ``skipped``: a list that receives every cut left out (``id (file): problem``), so a caller whose
    pass loaded nothing can say why (:func:`no_audio_error`).
    """
    from lhotse import CutSet

    loader, consumed = AudioBatches(min_samples), 0
    for group in padded_groups(cuts, max_duration):
        consumed += len(group)
        if skip is not None and skip(group):  # e.g. every utterance of the group already written: no audio read
            continue
        batch = loader[CutSet.from_cuts(group)]
        if skipped is not None:
            skipped += batch["skipped"]
        if len(batch["cuts"]):
            yield batch | {"consumed": consumed}


class BatchStream:
    """One rank's endless stream of micro-batches, epoch after epoch, with a saveable position.

    An optimizer step consumes ``world_size * accum_steps`` micro-batches in all.
    lhotse's sampler is asked for exactly that layout: slot ``rank * accum + a``
    of a group of ``world_size * accum``, so the micro-batches of one step come
    from one duration bucket, and any split of the same group over ranks and
    accumulation (2 ranks x 1, 1 rank x 2) sees the same batches.
    """

    def __init__(self, cuts, max_duration: float, seed: int, num_buckets: int = 10, num_workers: int = 0, accum_steps: int = 1,
                 world_size: int = 1, rank: int = 0, min_samples: int = 1, dataset=None):
        self.accum, self.group = accum_steps, world_size * accum_steps
        self.first_slot = rank * self.accum
        self.samplers = [make_sampler(cuts, max_duration, shuffle=True, seed=seed, num_buckets=num_buckets,
                                      world_size=self.group, rank=self.first_slot + a) for a in range(self.accum)]
        self.dataset = dataset if dataset is not None else AudioBatches(min_samples)  # CutSet -> batch dict with "cuts"
        self.num_workers = num_workers
        self.epoch = 0
        self.consumed = 0  # micro-batches taken in this epoch
        self.total = 0  # micro-batches taken since the run began (across epochs)
        self._it = None

    def state(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "total": self.total}

    def restore(self, state: dict) -> None:
        self.epoch, self.consumed, self.total = int(state["epoch"]), int(state["consumed"]), int(state["total"])
        self._it = None

    def global_index(self) -> int:
        """The last micro-batch's index in the one-process sequence (seeds its mask)."""
        step, a = divmod(self.total - 1, self.accum)
        return step * self.group + self.first_slot + a

    def _start_epoch(self) -> None:
        for s in self.samplers:
            s.set_epoch(self.epoch)
        skip_groups, samplers = self.consumed // self.accum, self.samplers

        class Slots(torch.utils.data.Sampler):  # this rank's slots in turn, minus the groups already trained on
            def __iter__(self):
                # lhotse samplers are their own iterators and restart on every iter():
                # call iter() once, then only next()
                its = [iter(s) for s in samplers]
                for _ in range(skip_groups):
                    for it in its:
                        next(it, None)
                while True:
                    batches = [next(it, None) for it in its]
                    if any(b is None for b in batches):
                        return
                    yield from batches

        # a generator of its own: creating the iterator would otherwise draw from the global RNG, so a resumed
        # run (which creates it mid-epoch) would shift every dropout mask after it
        loader = torch.utils.data.DataLoader(self.dataset, sampler=Slots(), batch_size=None, num_workers=self.num_workers,
                                             generator=torch.Generator().manual_seed(self.epoch))
        self._it = iter(loader)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        """The next batch holding at least one usable utterance; a batch with none is skipped with a warning."""
        epoch_ends, failed = 0, []
        while epoch_ends < 2:  # past two epoch ends without a usable batch, a whole epoch had none
            if self._it is None:
                self._start_epoch()
            try:
                batch = next(self._it)
            except StopIteration:
                epoch_ends += 1
                self.epoch, self.consumed, self._it = self.epoch + 1, 0, None
                continue
            self.consumed += 1
            self.total += 1
            if len(batch["cuts"]):
                return batch
            failed += batch.get("skipped", [])
            # every file of it failed to load or was too short (each named by a warning above); the
            # position still advances, so a resumed run skips the same batch
            log.warning("skipping a batch with no usable utterance (epoch %d, batch %d)", self.epoch, self.consumed)
        why = f": {_listed(failed)}" if failed else " (see the warnings above)"
        raise SpeechrqError(f"the training split yields no usable batch (every utterance was skipped){why}")
