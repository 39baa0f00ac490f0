"""What the regularisers' penalty costs on top of fine-tuning, with the proximal step (the default under
plain SGD) and with the papers' explicit step (regularization/base.py).

Work: 5 permuted-digits tasks, MLP 64-50-50-50-10, SGD lr 0.1, batch 32, 10 epochs per task, one
thread. CPU time of the whole fit() (process time: the machines are shared, so wall time is mostly other
people's noise), best of ``--repeats``.

    python benchmarks/penalty_step.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

import lifelong as ll

# λ where the explicit step is still stable on this work (EWC's default 10 diverges with it here, which is
# why the proximal step is the default); the cost of a step does not depend on λ.
METHODS = {"l2": 0.01, "ewc": 1.0, "si": 0.1}


def cpu_seconds(stream, method) -> float:
    torch.manual_seed(0)
    model = ll.models.MLP(stream.input_size, [50, 50, 50], stream.n_classes)
    start = time.process_time()
    ll.fit(stream, model, method, epochs=10, lr=0.1, batch_size=32)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    stream = ll.benchmarks.permuted("digits", n_tasks=5, seed=0)
    runs = {"finetune": lambda: ll.methods.Finetune()}
    for name, lam in METHODS.items():
        for step in ("explicit", "proximal"):
            runs[f"{name} ({step})"] = lambda name=name, lam=lam, step=step: ll.methods.create(name, lam=lam, step=step)
    best = {label: min(cpu_seconds(stream, make()) for _ in range(args.repeats)) for label, make in runs.items()}
    base = best["finetune"]
    print(f"5 permuted-digits tasks, 10 epochs, SGD lr 0.1, 1 thread; CPU seconds of fit(), best of {args.repeats}")
    print(f"{'method':<20} {'CPU s':>7} {'over finetune':>14} {'ratio':>7}")
    for label, seconds in best.items():
        print(f"{label:<20} {seconds:7.3f} {seconds - base:14.3f} {seconds / base:7.2f}")


if __name__ == "__main__":
    main()
