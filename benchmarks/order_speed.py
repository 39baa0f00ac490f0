"""Does `lifelong order` use the cores it is given? A 6-order study (every order of 3 tasks) run with
``--workers 2`` against the same 6 orders run one by one in this process (``--workers 1``); prints both
wall times and their ratio (issue 10: "well under" 1 on 2 cores). Every run of the study is one
single-threaded process, so the ideal ratio on 2 free cores is about 0.5 plus the workers' start-up
(importing torch, building the stream: about 2 s).

The default stream is the main job's (permuted minimnist, MLP 3 x 50, SGD lr 0.1, batch 32) with 3 tasks
and 5 epochs per task (the main job's), about 10 s per order: the start-up is a small part of it.

    python benchmarks/order_speed.py [--workers 2] [--epochs 5] [--benchmark permuted-minimnist]
    python benchmarks/order_speed.py --quick     # a smoke test: 3 tasks of 200 samples, 20 iterations
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from lifelong import config
from lifelong.studies import orders

RESULTS = Path(__file__).parent / "results" / "order_speed.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--benchmark", default="permuted-minimnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data-dir")
    parser.add_argument("--quick", action="store_true", help="tiny settings, nothing written")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the serial baseline uses one core, as each worker does
    flags = {"benchmark": args.benchmark, "tasks": 3, "method": ["finetune"], "epochs": args.epochs}
    if args.data_dir:
        flags["data_dir"] = args.data_dir
    if args.quick:
        flags.update({"samples_per_task": 200, "iterations": 20})
    cfg = config.resolve(None, flags)
    every = orders.all_orders(3)  # 6 orders

    times = {}
    for workers in (args.workers, 1):
        t0 = time.perf_counter()
        study = orders.study(cfg, every, workers=workers)
        times[workers] = time.perf_counter() - t0
        accs = ", ".join(f"{a * 100:.1f}" for a in study.scores("finetune", "acc").values())
        print(f"workers {workers}: {len(study.records)} orders in {times[workers]:.1f} s (ACC per order: {accs})")
    ratio = times[args.workers] / times[1]
    print(
        f"\n6-order study: {times[args.workers]:.1f} s with {args.workers} workers, {times[1]:.1f} s one by one; "
        f"ratio {ratio:.2f} (ideal 1/{args.workers} = {1 / args.workers:.2f}; {os.cpu_count()} cores here)"
    )
    if not args.quick:
        out = {"flags": flags, "workers": args.workers, "parallel_s": times[args.workers], "serial_s": times[1]}
        RESULTS.write_text(json.dumps({**out, "ratio": ratio}, indent=1))
        print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
