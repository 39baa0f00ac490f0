"""What the accuracy benchmarks share: one run through the command line's own code, and a resumable pool
of such runs whose results are kept in a JSON file as each one finishes.

A job is ``(key, options, seed, validation)``: ``options`` are the command line's options (as
config.resolve takes them), ``validation`` the part of each task's training data held out to score on
instead of the test sets (``lifelong tune``'s procedure), or None for a final run on the test sets.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
from pathlib import Path

# Images in a run's facts (DGR's generated samples, FearNet's pseudo-examples): the report's, not the table's.
IMAGES = {"generated", "pseudo_examples"}


def command(opts: dict, verb: str = "run") -> str:
    """The shell command equivalent to ``opts``."""
    parts = [f"lifelong {verb}"]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            value = "true"
        if isinstance(value, list):
            value = ",".join(map(str, value))
        parts.append(f"{flag} {value}")
    return " ".join(parts)


def run_one(job: tuple) -> tuple[str, dict]:
    """Run one job in this process (one thread) and return its key and record."""
    key, opts, seed, validation = job
    import torch

    from lifelong import config
    from lifelong.experiment import Experiment

    torch.set_num_threads(1)
    cfg = config.resolve(None, {**opts, "seed": seed})
    t0 = time.perf_counter()
    try:
        exp = Experiment(cfg, validation_fraction=validation)
        _, result = exp.execute(seed, exp.method_names[0])
    except Exception as e:  # a diverged, refused or broken run is a result too: kept, shown, the rest go on
        return key, {"opts": opts, "acc": float("nan"), "error": f"{type(e).__name__}: {e}"}
    return key, {
        "opts": opts,
        "acc": result.acc,
        "bwt": result.bwt,
        "fwt": result.fwt,
        "R": result.R.tolist(),
        "facts": {k: v for k, v in result.facts.items() if k not in IMAGES},
        "capacity": result.capacity,
        "train_s": sum(result.timings["train_s"]),
        "train_s_per_task": list(result.timings["train_s"]),
        "wall_s": time.perf_counter() - t0,
    }


def same_run(a: dict, b: dict) -> bool:
    """The same settings, wherever it ran (a CUDA run is not redone on the CPU)."""
    return {k: v for k, v in a.items() if k != "device"} == {k: v for k, v in b.items() if k != "device"}


def run_all(jobs: list[tuple], workers: int, path: Path, gpu_workers: int = 0) -> dict:
    """Run the jobs not done yet (or done with other options) in worker processes, CUDA jobs in a pool of
    their own; every result is written to ``path`` as soon as it is in."""
    done = json.loads(path.read_text()) if path.exists() else {}
    todo = [j for j in jobs if j[0] not in done or not same_run(done[j[0]]["opts"], j[1])]
    print(f"{len(todo)} runs to do, {len(jobs) - len(todo)} already done", flush=True)
    if not todo:
        return done
    lock = threading.Lock()

    def keep(item: tuple[str, dict]) -> None:
        key, record = item
        with lock:
            done[key] = record
            path.write_text(json.dumps(done, indent=1))
        note = record.get("error") or f"ACC {record['acc'] * 100:.2f}  ({record['wall_s']:.0f} s)"
        print(f"  {key}: {note}", flush=True)

    spawn = mp.get_context("spawn")
    pools = {"cpu": spawn.Pool(workers)}
    if any(j[1].get("device", "cpu") != "cpu" for j in todo):
        pools["cuda"] = spawn.Pool(max(gpu_workers, 1))
    pending = [pools[j[1].get("device", "cpu")].apply_async(run_one, (j,), callback=keep) for j in todo]
    for result in pending:
        result.wait()
    for pool in pools.values():
        pool.close()
        pool.join()
    return done


def best_value(done: dict, prefix: str, param: str, values: list) -> tuple[object | None, str]:
    """`lifelong tune`'s choice among the tuning runs ``{prefix}/{param}={value}`` kept in ``done``: the
    value with the best validation ACC, first of equals (None when none finished), and a line of the
    scores tried."""
    scores = {v: done.get(f"{prefix}/{param}={v}", {}).get("acc", float("nan")) for v in values}
    tried = "  ".join(f"{v:g}: {a * 100:.2f}" for v, a in scores.items())
    if all(a != a for a in scores.values()):  # every one NaN: not run, or failed
        return None, tried
    return max(values, key=lambda v: -1 if scores[v] != scores[v] else scores[v]), tried
