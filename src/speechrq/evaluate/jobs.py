"""Probe trainings run side by side (:mod:`speechrq.parallel`): one process per job slot, each with its share of the threads.

A probe on cached hidden states (:func:`~speechrq.evaluate.probes.run_probe`) is a small model that uses
two threads poorly. Every (encoder, task, fold, probe seed) of an evaluation is one job; a worker reads the encoder's states from the on-disk cache
(:class:`~speechrq.encoders.HiddenStateCache`) and keeps the last encoder's in memory, so jobs are
queued encoder by encoder.

A job's result depends only on its inputs and the number of threads it ran with (the threads change
the order of floating-point sums): the same command on the same machine gives the same numbers, and
``--probe-jobs 1`` runs every probe in the calling process, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..parallel import cores, run_in_processes
from .probes import ProbeResult, StateStore, run_probe

MAX_DEFAULT_JOBS = 8
MEMORY_SHARE = 0.5  # the workers' copies of the hidden states may take at most this share of the available memory


@dataclass(frozen=True)
class ProbeJob:
    """One probe training: ``task`` on the states of encoder ``fingerprint`` in ``cache_root`` for one fold and seed."""

    key: tuple  # the caller's name for it (encoder, task, fold), results are grouped by it
    task: str
    cache_root: str
    fingerprint: str
    ids: tuple[str, ...]  # every utterance the encoder's probes read (one store per encoder)
    data: dict  # role -> [(utterance id, label)]
    lrs: tuple[float, ...]
    epochs: int
    preset: str
    seed: int
    languages: dict | None = None  # test utterance id -> language, on a corpus of several (scored per language)
    mean_ids: tuple[str, ...] = ()  # utterances whose means (not frames) the encoder's utterance-level probes read
    in_memory: bool = True  # hold the cached frames in memory (else read from disk per batch)


def default_jobs() -> int:
    """Probe processes by default: one on a GPU (the probes share it), else one per core, at most 8."""
    return 1 if torch.cuda.is_available() else max(1, min(cores(), MAX_DEFAULT_JOBS))


def store_bytes(cache_root: str | Path, fingerprint: str, ids, mean_ids=()) -> int:
    """Memory one worker needs for an encoder's states: the cached files' sizes (frames of ``ids``, means of ``mean_ids``)."""
    from ..encoders import HiddenStateCache

    cache = HiddenStateCache(cache_root, fingerprint)
    return (sum(cache.path(i).stat().st_size for i in ids if cache.path(i).exists())
            + sum(cache.mean_path(i).stat().st_size for i in mean_ids if cache.mean_path(i).exists()))


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable``), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def fit_jobs(jobs: int, per_worker_bytes: int) -> int:
    """``jobs`` lowered so that every worker's copy of the largest store fits in :data:`MEMORY_SHARE` of the memory."""
    free = available_memory()
    if free is None or per_worker_bytes <= 0:
        return jobs
    return max(1, min(jobs, int(MEMORY_SHARE * free) // per_worker_bytes))


_STORE: dict = {}  # a worker's states of the encoder it read last
PROVIDED: dict = {}  # fingerprint -> a StateStore made by the caller (one that recomputes states: jobs run in the calling process)


def _store(job: ProbeJob) -> StateStore:
    from ..encoders import HiddenStateCache

    if job.fingerprint in PROVIDED:
        return PROVIDED[job.fingerprint]
    key = (job.cache_root, job.fingerprint, job.ids, job.mean_ids, job.in_memory)
    if key not in _STORE:
        _STORE.clear()  # one encoder's states at a time
        _STORE[key] = StateStore(HiddenStateCache(job.cache_root, job.fingerprint), list(job.ids), list(job.mean_ids),
                                 in_memory=job.in_memory)
    return _STORE[key]


def run_job(job: ProbeJob) -> ProbeResult:
    """Train one probe (in a worker or in the calling process)."""
    store = _store(job)
    return run_probe(job.task, store, job.data, list(job.lrs), job.epochs, preset=job.preset, seed=job.seed,
                     languages=job.languages)


def run_jobs(jobs: list[ProbeJob], workers: int, progress: bool = True, on_done=None) -> list[ProbeResult]:
    """Every job's result, in the order of ``jobs``, from ``workers`` processes (:func:`speechrq.parallel.run_in_processes`)."""
    if any(j.fingerprint in PROVIDED for j in jobs):
        workers = 1  # a store that recomputes holds its encoder: it lives in this process
    results = run_in_processes(run_job, jobs, workers, progress, desc="probes", on_done=on_done)
    _STORE.clear()  # the states read here (one worker) are not kept past the evaluation
    return results
