"""Probe trainings run side by side: one process per job slot, each with its share of the CPU threads.

A probe on cached hidden states (:func:`~speechrq.evaluate.probes.run_probe`) is a small model: on a
CPU, two probes in two single-thread processes finish about 1.4 times sooner than the same two one
after the other with two threads each (a linear CTC probe, 2 cores). Every (encoder, task, fold,
probe seed) of an evaluation is one job; a worker reads the encoder's states from the on-disk cache
(:class:`~speechrq.encoders.HiddenStateCache`) and keeps the last encoder's in memory, so jobs are
queued encoder by encoder.

A job's result depends only on its inputs and the number of threads it ran with (the threads change
the order of floating-point sums): the same command on the same machine gives the same numbers, and
``--probe-jobs 1`` runs every probe in the calling process, as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

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


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    """Probe processes by default: one on a GPU (the probes share it), else one per core, at most 8."""
    return 1 if torch.cuda.is_available() else max(1, min(cores(), MAX_DEFAULT_JOBS))


def store_bytes(cache_root: str | Path, fingerprint: str, ids) -> int:
    """Memory one worker needs for an encoder's states: the cached float16 files' sizes."""
    from ..encoders import HiddenStateCache

    cache = HiddenStateCache(cache_root, fingerprint)
    return sum(cache.path(i).stat().st_size for i in ids if cache.path(i).exists())


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


def _store(cache_root: str, fingerprint: str, ids: tuple[str, ...]) -> StateStore:
    from ..encoders import HiddenStateCache

    key = (cache_root, fingerprint, ids)
    if key not in _STORE:
        _STORE.clear()  # one encoder's states at a time
        _STORE[key] = StateStore(HiddenStateCache(cache_root, fingerprint), list(ids))
    return _STORE[key]


def run_job(job: ProbeJob) -> ProbeResult:
    """Train one probe (in a worker or in the calling process)."""
    store = _store(job.cache_root, job.fingerprint, job.ids)
    return run_probe(job.task, store, job.data, list(job.lrs), job.epochs, preset=job.preset, seed=job.seed)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_jobs(jobs: list[ProbeJob], workers: int, progress: bool = True, on_done=None) -> list[ProbeResult]:
    """Every job's result, in the order of ``jobs``; ``workers`` processes (spawned, so no thread pool is
    inherited half-initialised) share the cores equally. With one worker, or one job, they run here.
    ``on_done(job, result)`` is called in this process as each finishes."""
    from tqdm import tqdm

    results: list[ProbeResult | None] = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="probes", unit="probe", disable=not progress or len(jobs) < 2)
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        for k, job in enumerate(jobs):
            results[k] = run_job(job)
            bar.update()
            if on_done:
                on_done(job, results[k])
        _STORE.clear()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, torch.get_num_threads() // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(run_job, job): k for k, job in enumerate(jobs)}
            try:
                for done in as_completed(futures):
                    k = futures[done]
                    results[k] = done.result()
                    bar.update()
                    if on_done:
                        on_done(jobs[k], results[k])
            except BaseException:  # an error or ^C: no queued probe starts; finished ones were handed to on_done
                for f in futures:
                    f.cancel()
                raise
    bar.close()
    return results
