"""Running the units of a study in parallel worker processes on one machine.

A unit of work is a plain top-level function of picklable arguments (a config dict, an order, a seed)
that returns a JSON-able record, so that a later executor (a cluster, Ray) can run the same function
unchanged. Here the workers are ``spawn`` processes (a fork of a process that has run torch can hang),
each with one intra-op thread: ``workers`` processes use ``workers`` cores, no more. ``workers=1`` runs
every unit in this process, one after another (the baseline the speed benchmark compares against).

A warning a unit raises (a method's caveat, an unstable step size) is carried back with its record and
raised again here, once, so that the user sees it as from a run in this process.

A worker that dies (killed, out of memory, a crash in native code) ends the study with a one-line error
rather than a hang: concurrent.futures' pool notices a worker gone and fails the units it held, where
multiprocessing.Pool waits for them forever.

A worker whose parent is gone exits at once: a parent killed with SIGKILL cannot stop its pool, and an
orphaned worker would finish its unit unseen (and, in a sweep, hold a run that the next sweep would take
for a live one instead of resuming it).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from lifelong.errors import LifelongError, LifelongWarning, option, warn


def default_workers() -> int:
    """The cores this process may use (the affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LifelongError(f"{option('workers')} must be a whole number >= 1 (got {workers!r})")
    return workers


def _start_worker(parent: int) -> None:
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()


def _exit_without(parent: int) -> None:
    """End this worker once its parent process ``parent`` has ended (it is then adopted by another)."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def _call(fn: Callable, args: tuple) -> tuple[object, list[str]]:
    """``fn(*args)`` with the LifelongWarnings it raised, as messages."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LifelongWarning)
        out = fn(*args)
    return out, [str(w.message) for w in caught if issubclass(w.category, LifelongWarning)]


def run(
    fn: Callable,
    jobs: Sequence[tuple],
    workers: int | None = None,
    done: Callable[[int, int], None] | None = None,
) -> list:
    """``[fn(*job) for job in jobs]``, in ``workers`` processes; results in the order of ``jobs``.
    ``done(k, n)`` is called in this process as each of the n jobs finishes (k finished so far)."""
    workers = min(check_workers(workers), max(len(jobs), 1))
    out: list = []
    seen: set[str] = set()

    def keep(item: tuple[object, list[str]]) -> None:
        result, messages = item
        out.append(result)
        for message in messages:
            if message not in seen:
                seen.add(message)
                warn(message)
        if done is not None:
            done(len(out), len(jobs))

    if workers == 1:
        for job in jobs:
            keep(_call(fn, tuple(job)))
        return out
    context = mp.get_context("spawn")
    try:
        with ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=(os.getpid(),)) as pool:
            for item in pool.map(_call_job, [(fn, tuple(job)) for job in jobs]):
                keep(item)
    except BrokenProcessPool:
        raise LifelongError(
            f"a worker process died after {len(out)} of {len(jobs)} units (killed, out of memory, or a crash); "
            f"run again, with fewer {option('workers')} if memory is short"
        ) from None
    return out


def _call_job(item: tuple[Callable, tuple]) -> tuple[object, list[str]]:
    return _call(*item)
