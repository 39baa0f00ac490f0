"""The unit of work of a sweep: one run, identified by its configuration, recorded in the store.

:func:`run_point` is a plain top-level function of picklable arguments (a resolved config, the method
spec, the seed, ...) that returns a small dict, so that the local process pool and Ray run it unchanged,
and every worker writes through the one Store API.

A run's identity is :func:`config_hash`: the sha256 of the canonical JSON (sorted keys, no spaces) of
the settings Experiment.config records for it (the benchmark and its options, the task order, the model,
the method and every hyper-parameter, the training settings, the seed, the validation share), resolved,
so ``ewc`` at its default λ and ``ewc:lam=10.0`` are the same run. Left out: ``method_spec`` (how the
method was written, not what it is) and ``data_dir`` (where the data lies, not what it is: every
dataset is checked against its checksum). Nor is the code version part of it: after an edit, a re-run
of the sweep keeps the runs it recorded (``code_version`` in each row says which code made it).

In the store, (group, hash) is unique (Store.claim), so a configuration has one record per sweep
whatever the number of processes that reach it at once. What a worker does with the record it gets:

- created by its claim: it runs it;
- finished, or failed (a diverged run diverges again): nothing;
- killed (its process is gone) or interrupted: it takes it over (Store.resume) and resumes it from its
  last checkpoint, as `lifelong resume` does;
- running in a live process, or on another host: nothing (that process has it).
"""

from __future__ import annotations

import hashlib
import json

from lifelong.errors import LifelongError

NOT_IDENTITY = ("method_spec", "data_dir")


def config_hash(run_config: dict) -> str:
    """The sha256 (hex) of a run's resolved settings, as Experiment.config gives them."""
    identity = {k: v for k, v in run_config.items() if k not in NOT_IDENTITY}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def run_point(cfg: dict, spec: str, seed: int, validation: float | None, store_path: str, group: str, key: str) -> dict:
    """Run (or resume, or leave) the run of ``cfg`` (a resolved config of one method and seed) in the
    store at ``store_path``, group ``group``; ``key`` is the hash the sweep expects it to have. Returns
    {"key", "run_id", "action": ran | resumed | left | not started, "error"?: why it failed or did not
    start, "note"?: why it was left to another process}."""
    from lifelong.experiment import Experiment, resume_note
    from lifelong.results.store import Store, not_resumable

    try:  # build and check the data before claiming: a run that cannot start leaves no record
        store = Store(store_path)
        exp = Experiment(cfg, validation_fraction=validation)
        run_config = exp.config(seed, spec)
        if config_hash(run_config) != key:  # the planner and this worker must agree on what the run is
            raise LifelongError(f"{spec} (seed {seed}) resolved to other settings in this worker than in the sweep")
        run_id, created = store.claim(run_config, seed, group, key)
    except Exception as e:  # noqa: BLE001  said in the sweep's summary; the other runs go on
        return {"key": key, "run_id": None, "action": "not started", "error": str(e) or type(e).__name__}
    out = {"key": key, "run_id": run_id, "action": "ran"}
    if not created:
        row = store.get(run_id)
        why = not_resumable(row)
        if why:
            return out | {"action": "left", "note": why}
        note = resume_note(exp, seed, spec, store.folder(run_id))
        try:
            store.resume(run_id, f"{note} by {group}")
        except LifelongError as e:  # another worker took it over between our read and our switch
            return out | {"action": "left", "note": str(e)}
        out["action"] = "resumed"
    try:
        # resume= also for a run just created: its folder holds no checkpoint, so it starts from the start.
        exp.execute(seed, spec, store, group, resume=run_id, plots=False)
    except LifelongError as e:  # diverged, or a checkpoint it cannot resume from: recorded by execute()
        return out | {"error": str(e)}
    except Exception as e:  # noqa: BLE001  a broken run is recorded as failed; the sweep goes on with the others
        return out | {"error": f"{type(e).__name__}: {e}"}
    return out
