"""Does `lifelong sweep` use the cores it is given? One sweep of 8 runs (finetune and EWC at λ 1, 10, 100,
seeds 0 and 1) run by the local executor with ``--workers 2`` and one by one in this process
(``--workers 1``), each into a fresh store; prints both wall times (plan, runs and records, as the
command does them) and their ratio (issue 12: sweep throughput of 2 workers against sequential). Every
run uses one thread either way, so the ideal ratio on 2 free cores is 0.5 plus the workers' start-up
(importing torch, building the stream: about 2 s each). ``--ray`` also times the Ray executor (a local
instance of ``--workers`` CPUs, its start included).

The default runs are the main job's (permuted minimnist, 5 tasks, MLP 3 x 50, SGD lr 0.1, batch 32, 5
epochs per task): about 2 s each on one core, so a worker's start (about 2 s: a new Python importing torch
and lifelong, loading the data, torch's first steps) is still a visible part of the whole.

    python benchmarks/sweep_throughput.py [--workers 2] [--epochs 5] [--ray] [--repeats 3]
    python benchmarks/sweep_throughput.py --quick     # a smoke test: 200 samples per task, 20 iterations
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from lifelong.sweep import driver, schema

RESULTS = Path(__file__).parent / "results" / "sweep_throughput.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--benchmark", default="permuted-minimnist")
    parser.add_argument("--ray", action="store_true", help="also time the Ray executor")
    parser.add_argument("--repeats", type=int, default=1, help="time each executor this many times; keep the best")
    parser.add_argument("--quick", action="store_true", help="tiny settings, nothing written")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fixed = {"benchmark": args.benchmark, "tasks": 5, "epochs": args.epochs}
    if args.quick:
        fixed |= {"samples_per_task": 200, "iterations": 20}
    data = {"fixed": fixed, "methods": {"finetune": {}, "ewc": {"lam": [1, 10, 100]}}, "seeds": [0, 1]}
    sweep = schema.parse(data, "sweep_throughput", default_name="throughput")

    runs = {"sequential": ("local", 1), f"local, {args.workers} workers": ("local", args.workers)}
    if args.ray:
        runs[f"ray, {args.workers} CPUs"] = ("ray", args.workers)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")  # other work on the machine
    times: dict[str, float] = {}
    accs = {}
    for repeat in range(args.repeats):  # interleaved, so that a busy spell does not hit one executor only
        for name, (executor, workers) in runs.items():
            with tempfile.TemporaryDirectory() as folder:
                t0 = time.perf_counter()
                entries = driver.run(sweep, Path(folder) / "runs.db", executor, workers)
                wall = time.perf_counter() - t0
            times[name] = min(times.get(name, wall), wall)
            accs[name] = [e.row["metrics"]["acc"] for e in entries]
            shown = ", ".join(f"{a * 100:.1f}" for a in accs[name])
            print(f"{name} (#{repeat + 1}): {len(entries)} runs in {wall:.1f} s (ACC: {shown})", flush=True)
    same = all(a == accs["sequential"] for a in accs.values())
    print(f"\nthe same ACC for every run on every executor: {'yes' if same else 'NO'}")
    for name in list(runs)[1:]:
        ratio = times[name] / times["sequential"]
        print(
            f"{name}: {times[name]:.1f} s against {times['sequential']:.1f} s one by one; ratio {ratio:.2f} "
            f"(ideal 1/{args.workers} = {1 / args.workers:.2f}; {os.cpu_count()} cores, load {load:.1f} at the start)"
        )
    if not args.quick:
        out = {"sweep": data, "best_wall_s": times, "repeats": args.repeats, "load_at_start": load, "same_acc": same}
        RESULTS.write_text(json.dumps(out, indent=1))
        print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
