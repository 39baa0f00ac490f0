"""The episodic memory's insert and sample time must not grow with the number of stored tasks (issue 7).

MNIST-sized items (784 floats), batches of 32, a memory of 5000 items; a stream of 20 tasks of
2000 items, two new classes per task (class-incremental: the worst case for class-balanced selection,
whose classes grow with the tasks). After 1, 5, 10 and 20 tasks have been inserted, times 200 inserts
of the next task's batches and 200 samples of 32, and prints the median time per call (the best of
3 repeats) and the ratio of the 20-task time to the 1-task time (target: about 1).
``reservoir+logits`` stores a 10-float extra field too. Herding (iCaRL) inserts a whole task at once
from its features (64 floats here), so its insert column is the time per task; it falls as the
exemplars per class (5000 / classes seen) shrink.

    python benchmarks/memory_speed.py [--capacity 5000] [--tasks 20] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from lifelong.methods.memory.buffer import EpisodicMemory

CHECKPOINTS = (1, 5, 10, 20)


def median_time(fn, calls):
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def task_data(t, n, g):
    x = torch.randn(n, 784, generator=g)
    y = 2 * t + torch.randint(2, (n,), generator=g)
    return x, y


def run(policy, args, logits=False):
    kw = {"n_tasks": args.tasks + 1} if policy == "ring" else {}  # one more task: the timed inserts
    memory = EpisodicMemory(args.capacity, policy, seed=0, **kw)
    g, sampler = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    rows = {}
    extra = (lambda b: {"logits": torch.randn(len(b), 10)}) if logits else (lambda b: {})
    for t in range(args.tasks):
        x, y = task_data(t, args.task_size, g)
        if policy == "herding":
            t0 = time.perf_counter()
            memory.add(x, y, t, features=torch.nn.functional.normalize(x[:, :64], dim=1), **extra(x))
            insert = time.perf_counter() - t0
        else:
            for xb, yb in zip(x.split(args.batch), y.split(args.batch), strict=True):
                memory.add(xb, yb, t, **extra(xb))
        if t + 1 in CHECKPOINTS:
            if policy != "herding":  # the next task's first batches
                nx, ny = task_data(t + 1, args.batch * args.calls, g)
                batches = iter(list(zip(nx.split(args.batch), ny.split(args.batch), strict=True)))

                def insert_one(batches=batches, t=t):
                    xb, yb = next(batches)
                    memory.add(xb, yb, t + 1, **extra(xb))

                insert = median_time(insert_one, args.calls)
            sample = median_time(lambda: memory.sample(args.batch, sampler), args.calls)
            rows[t + 1] = (insert, sample)
    return rows, memory


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capacity", type=int, default=5000)
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--task-size", type=int, default=2000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} · {platform.processor() or platform.machine()} · {args.threads} threads")
    print(f"capacity {args.capacity} · batch {args.batch} · 784-float inputs · {args.task_size} items/task")
    print("median time per call in µs (herding insert: ms per task) after k tasks; ratio = 20 tasks / 1 task\n")
    ks = [k for k in CHECKPOINTS if k <= args.tasks]
    head = "".join(f"{'k=' + str(k):>8}" for k in ks)
    print(f"{'policy':18}{'op':8}{head}{'ratio':>8}   stored / MB")
    for policy, logits in [
        ("reservoir", False),
        ("reservoir", True),
        ("ring", False),
        ("class-balanced", False),
        ("herding", False),
    ]:
        # the best of a few repeats: other processes on a shared machine only ever add time
        runs = [run(policy, args, logits) for _ in range(args.repeats)]
        memory = runs[0][1]
        rows = {k: tuple(min(r[0][k][i] for r in runs) for i in range(2)) for k in ks}
        name = policy + ("+logits" if logits else "")
        for op, col in (("insert", 0), ("sample", 1)):
            scale = 1e3 if policy == "herding" and op == "insert" else 1e6
            values = [rows[k][col] * scale for k in ks]
            tail = f"   {len(memory)} / {memory.nbytes / 2**20:.1f}" if op == "insert" else ""
            cells = "".join(f"{v:8.1f}" for v in values)
            print(f"{name:18}{op:8}{cells}{values[-1] / values[0]:8.2f}{tail}")


if __name__ == "__main__":
    main()
