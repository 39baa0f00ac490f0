"""What one training step costs on each bAbI task (1k set, batch 32, one thread): the memory network, LAMOL's
transformer trained on the answer only (finetune, joint, replay with ``--model transformer``), and LAMOL's
own step (the QA and LM losses of the same batch, before any pseudo-samples are mixed in).

A transformer reads every token of a story where the memory network sums each sentence's words, so its
cost follows the stories' lengths (task 3's QA inputs: 230 tokens on average). Prints the milliseconds per
step for each task, the mean QA input length, and one epoch over all 20 tasks for each model.

    python benchmarks/babi_step_cost.py --data-dir ../shared/data/babi [--steps 5]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import lifelong as ll
from lifelong.experiment import build_model


def step_ms(loss_of, parameters, x, y, steps: int) -> float:
    """Median milliseconds of ``steps`` Adam steps on batches of 32 taken in turn from (x, y)."""
    optimizer = torch.optim.Adam(parameters, 1e-3)
    times = []
    for i in range(steps + 1):  # the first step warms up and is not counted
        batch = slice(32 * i, 32 * (i + 1))
        t0 = time.perf_counter()
        loss = loss_of(x[batch], y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return 1000 * sorted(times[1:])[len(times[1:]) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/babi")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    stream = ll.benchmarks.babi(data_dir=args.data_dir)
    torch.manual_seed(0)
    memn2n = build_model(stream, {"embedding": 50, "hops": 3})
    transformer = build_model(stream, {"model": "transformer"})
    lamol = ll.methods.LAMOL()
    lamol_model = lamol.prepare(None, stream)
    print(
        f"parameters: memn2n {sum(p.numel() for p in memn2n.parameters()) / 1e6:.2f} M, transformer "
        f"{sum(p.numel() for p in transformer.parameters()) / 1e6:.2f} M"
    )
    print("| task | QA tokens (mean) | memn2n ms | transformer ms | LAMOL ms |\n|---|---|---|---|---|")
    epoch = {"memn2n": 0.0, "transformer": 0.0, "lamol": 0.0}
    for task in stream.tasks:
        x, y = task.train_x, task.train_y
        tokens = transformer.tokens.qa(x)[1].float().mean()
        lamol.before_task(task, lamol_model)
        costs = {
            "memn2n": step_ms(lambda a, b: F.cross_entropy(memn2n(a), b), memn2n.parameters(), x, y, args.steps),
            "transformer": step_ms(
                lambda a, b: F.cross_entropy(transformer(a), b), transformer.parameters(), x, y, args.steps
            ),
            "lamol": step_ms(lambda a, b: lamol.loss(lamol_model, a, b, None), lamol_model.parameters(), x, y, 3),
        }
        for name, ms in costs.items():
            epoch[name] += ms * len(y) / 32 / 1000
        print(f"| {task.name} | {tokens:.0f} | " + " | ".join(f"{ms:.1f}" for ms in costs.values()) + " |")
    print("one epoch over all 20 tasks: " + ", ".join(f"{name} {s:.0f} s" for name, s in epoch.items()))


if __name__ == "__main__":
    main()
