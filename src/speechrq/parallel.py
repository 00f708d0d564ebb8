"""Independent jobs run side by side on a CPU: one spawned process per job slot, the cores shared equally.

Small models (a probe on cached states, the tiny ASR model) use two threads poorly: on 2 cores,
two single-thread processes finish two linear CTC probes about 1.2 times sooner, and two tiny
ASR trainings about as much, than the same jobs one after the other with two threads each.
Processes are spawned, not forked, so no thread pool (torch's, OpenMP's, faiss's) is inherited
half-initialised. A job's result depends on its inputs and on the threads it ran with (they change
the order of floating-point sums): the same command on the same machine gives the same numbers.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def die_with_parent(parent: int | None) -> None:
    """Linux: this worker is killed (SIGKILL) when ``parent``, the process that started it, ends, however it ends: a
    command killed by SIGKILL leaves no worker writing into its folder or holding its lock (a forked worker inherits
    the lock) after it. Elsewhere nothing."""
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it ended before the call
        os._exit(1)


def _init_worker(threads: int, parent: int | None = None) -> None:
    die_with_parent(parent)  # first: the imports below take seconds

    import torch

    from .allocator import keep_freed_memory
    from .errors import install_termination_handlers

    install_termination_handlers()  # a worker stopped by SIGTERM removes its temporaries like the parent does
    keep_freed_memory()  # as the command that spawned it (speechrq.allocator)

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def run_in_processes(fn: Callable, jobs: Sequence, workers: int, progress: bool = True, desc: str = "jobs",
                     on_done: Callable | None = None) -> list:
    """``[fn(job) for job in jobs]``, in ``workers`` processes sharing this process's threads (``fn`` must be a
    module-level function and jobs picklable); with one worker or one job, here. ``on_done(job, result)`` runs in
    this process as each finishes (in any order), so finished work can be saved before the rest is done.
    An error in a job (or ^C) cancels the jobs not started and is raised here."""
    import torch
    from tqdm import tqdm

    results: list = [None] * len(jobs)
    workers = max(1, min(workers, len(jobs)))
    bar = tqdm(total=len(jobs), desc=desc, unit="job", disable=not progress or len(jobs) < 2)
    try:
        if workers == 1:
            for k, job in enumerate(jobs):
                results[k] = fn(job)
                bar.update()
                if on_done:
                    on_done(job, results[k])
            return results
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, torch.get_num_threads() // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                 initargs=(threads, os.getpid())) as pool:
            futures = {pool.submit(fn, job): k for k, job in enumerate(jobs)}
            try:
                for done in as_completed(futures):
                    k = futures[done]
                    results[k] = done.result()
                    bar.update()
                    if on_done:
                        on_done(jobs[k], results[k])
            except BaseException as e:
                for f in futures:
                    f.cancel()
                if not isinstance(e, Exception):  # ^C or SIGTERM: the running jobs end too (after an error they finish)
                    for proc in list((getattr(pool, "_processes", None) or {}).values()):
                        if proc.is_alive():
                            proc.terminate()  # their own handler removes their temporaries
                raise
        return results
    finally:
        bar.close()
