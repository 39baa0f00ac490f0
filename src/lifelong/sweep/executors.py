"""Where a sweep's units run: ``local``, the process pool of lifelong.studies.pool on this machine, or
``ray``, tasks of a Ray cluster (Moritz et al. 2018), an existing distributed engine rather than a
scheduler of our own.

Both run the same unit (a plain function, unit.run_point) with one CPU and one intra-op thread each (also
a local sweep of one worker, which runs in this process: tiny models gain nothing from more threads, lose
much on a busy machine, and a run's numbers must not depend on where it ran), and
both write through the one Store API: the local pool and a Ray instance on this machine share the
SQLite file; a cluster whose workers sit on other machines needs a store they can all reach (see the
package's docstring). A unit's LifelongWarnings come back with its record and are raised here, once.

Ray is an optional extra (``pip install 'lifelong[ray]'``). ``address``: None starts a Ray instance in
this process with ``workers`` CPUs (default: the cores available) and stops it at the end; ``auto``
joins the cluster that ``ray start --head`` started on this machine; ``HOST:PORT`` the cluster whose head
listens there (``ray://HOST:10001`` goes through Ray Client). An instance that this process already
started (``ray.init()`` before, e.g. in a test) is used as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lifelong.errors import LifelongError, option, warn
from lifelong.studies import pool

EXECUTORS = ("local", "ray")
RAY_PIP = "pip install 'lifelong[ray]' (or pip install 'ray>=2.9')"


def run(
    fn: Callable,
    jobs: Sequence[tuple],
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    done: Callable[[int, int], None] | None = None,
) -> list:
    """``[fn(*job) for job in jobs]`` on ``executor``; results in the order of ``jobs``; ``done(k, n)`` as
    each job ends. A unit that a Ray worker could not finish (the worker died) gives {"error": why}."""
    if executor == "local":
        if address is not None:
            raise LifelongError(f"{option('address')} is for the ray executor; add {option('executor')} ray")
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in every worker: a run's numbers do not depend on where it ran
        try:
            return pool.run(fn, jobs, workers, done)
        finally:
            torch.set_num_threads(threads)
    if executor == "ray":
        return _ray(fn, jobs, workers, address, done)
    raise LifelongError(f"{option('executor')} {executor!r} is not one of: {', '.join(EXECUTORS)}")


def import_ray():
    """The ray module, or a one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise LifelongError(f"the ray executor needs Ray, which is not installed; {RAY_PIP}") from None
    return ray


def _ray(fn: Callable, jobs: Sequence[tuple], workers: int | None, address: str | None, done) -> list:
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        if address is not None and workers is not None:
            raise LifelongError(
                f"{option('workers')} sizes a Ray instance started here; a cluster at {option('address')} "
                "has the CPUs it was started with"
            )
        where = {"address": address} if address else {"num_cpus": pool.check_workers(workers)}
        try:
            ray.init(**where, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        except ConnectionError as e:
            raise LifelongError(
                f"cannot reach a Ray cluster at {address} ({e}); start one with `ray start --head`"
            ) from None
    try:
        unit = ray.remote(num_cpus=1)(_ray_unit)
        refs = [unit.remote(fn, tuple(job)) for job in jobs]
        pending, n_done = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            n_done += len(ready)
            if done is not None:
                done(n_done, len(jobs))
        out, seen = [], set()
        for ref in refs:
            try:
                result, messages = ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker died (killed, out of memory): its run stays resumable
                result, messages = {"error": f"the Ray worker failed ({type(e).__name__})"}, []
            out.append(result)
            for message in messages:
                if message not in seen:
                    seen.add(message)
                    warn(message)
        return out
    finally:
        if started:
            ray.shutdown()


def _ray_unit(fn: Callable, args: tuple):
    """One unit in a Ray worker: one intra-op thread (Ray gives it one CPU), its warnings carried back."""
    import torch

    torch.set_num_threads(1)
    return pool._call(fn, args)
