"""A sweep from start to end: plan every run, leave those the store already holds, run the others on
an executor, and read back from the store what each run is now.

What is dispatched: a run with no record in the sweep's group, and one that was killed (its process is
gone) or interrupted, which its unit resumes from its checkpoint. Not dispatched: a finished run, a
failed one (it would fail the same way again) and one running in a live process (another sweep of the
same file, or a worker on another host). The unit claims each run itself (Store.claim), so two sweeps
of one file started at once split the runs between them and record each once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lifelong.results.store import Store
from lifelong.sweep import executors, unit
from lifelong.sweep.plan import Job, plan
from lifelong.sweep.schema import Sweep

RESUMABLE = ("killed", "interrupted")


@dataclasses.dataclass
class Entry:
    """One run of the sweep after this invocation: its job, its row in the store now (None when it has
    none) and what this invocation did with it (None: not dispatched; else the unit's record)."""

    job: Job
    row: dict[str, Any] | None
    done: dict[str, Any] | None
    before: str | None  # its status before this invocation (None: no record)

    @property
    def status(self) -> str:
        return self.row["status"] if self.row else "not run"

    @property
    def this_time(self) -> str:
        """What happened to the run in this invocation, in a word or three."""
        if self.done is None:  # not dispatched (or a dry run)
            if self.before is None:
                return "to run"
            if self.before in RESUMABLE:
                return "to resume"
            return {"finished": "recorded before", "failed": "failed before"}.get(self.before, "left to its process")
        if self.done.get("action") == "left":
            return "taken by another process"
        return self.done.get("action", "lost")  # lost: the worker died before its unit returned


def run(
    sweep: Sweep,
    store_path: str | Path,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    done: Callable[[int, int], None] | None = None,
    dry_run: bool = False,
    jobs: list[Job] | None = None,
) -> list[Entry]:
    """Run the sweep's missing runs and resume its killed ones; with ``dry_run``, only plan and read.
    ``jobs``: the sweep's plan, when the caller has made it already."""
    jobs = plan(sweep) if jobs is None else jobs  # every check before any record
    store = Store(store_path)
    path = store.location  # workers (Ray's included) may start in another folder
    before = _rows(store, sweep.group)
    todo = [j for j in jobs if j.key not in before or before[j.key]["status"] in RESUMABLE]
    results: list = []
    if todo and not dry_run:
        args = [j.args(path, sweep.group, sweep.validation) for j in todo]
        results = executors.run(unit.run_point, args, executor, workers, address, done)
    records = dict(zip([j.key for j in todo], results, strict=True)) if results else {}
    after = _rows(store, sweep.group)
    status = {k: r["status"] for k, r in before.items()}
    return [Entry(j, after.get(j.key), records.get(j.key), status.get(j.key)) for j in jobs]


def _rows(store: Store, group: str) -> dict[str, dict[str, Any]]:
    """The sweep's rows in the store by config hash."""
    return {r["config_hash"]: r for r in store.runs(group) if r.get("config_hash")}
