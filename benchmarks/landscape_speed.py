"""The landscape's grid: vectorised over grid points against one point at a time, on MNIST.

A 41 x 41 grid over a plane of the 3 x 50 MLP's parameter space (784-50-50-50-10), each of two tasks of
noisy MNIST (sd 0.4, then clean) scored on 1000 test examples, as `lifelong landscape` does. The plane
passes through the initialised network and two random perturbations of it: the cost of a grid does not
depend on where its points are. Both paths must give the same losses (printed: the largest difference).
Target: seconds, not minutes.

Also the cost of recording the path, against the same fine-tuning without it: fit() on two tasks of noisy
MNIST (10 000 training images each, SGD lr 0.1, batch 32, 5 epochs: 1565 steps a task), plain and with the
landscape's Recorder copying θ every k steps of task 2 (k as `lifelong landscape` chooses: at most 200
points; and k = 1, every step).

    python benchmarks/landscape_speed.py --data-dir ../shared/data/mnist [--grid 41] [--samples 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import lifelong as ll
from lifelong.landscape import grid
from lifelong.landscape.path import Recorder, auto_every
from lifelong.landscape.plane import Plane


def recording_cost(data_dir: str, repeats: int) -> None:
    """Wall seconds of fit() with no on_step, and with a Recorder every k steps of task 2."""
    stream = ll.benchmarks.noisy("mnist", n_tasks=2, noise=[0.4, 0.0], seed=0, data_dir=data_dir,
                                 samples_per_task=10000)  # fmt: skip
    settings = {"epochs": 5, "lr": 0.1, "batch_size": 32, "seed": 0}
    steps = 5 * -(-len(stream.tasks[1].train_y) // 32)

    def run(every: int | None) -> float:
        best = float("inf")
        for _ in range(repeats):
            torch.manual_seed(0)
            model = ll.models.MLP(stream.input_size, [50, 50, 50], stream.n_classes)
            hooks = {}
            if every is not None:
                recorder = Recorder(model, stage=1, steps=steps, every=every)
                hooks = {"on_step": recorder.step, "on_row": recorder.row}
            t0 = time.perf_counter()
            ll.fit(stream, model, "finetune", **settings, **hooks)
            best = min(best, time.perf_counter() - t0)
        return best

    plain, auto, each = run(None), run(auto_every(steps)), run(1)
    print(
        f"\nrecording the path: fit(), finetune, 2 tasks x 10000 noisy MNIST, 5 epochs, batch 32 ({steps} steps a task)"
    )
    print(f"no recording             : {plain:7.2f} s")
    print(f"every {auto_every(steps)} steps (default)  : {auto:7.2f} s  ({auto / plain:.3f}x)")
    print(f"every step               : {each:7.2f} s  ({each / plain:.3f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--grid", type=int, default=41)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timings of each path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Only the test sets are scored; a few training samples keep the stream small.
    stream = ll.benchmarks.noisy(
        "mnist", n_tasks=2, noise=[0.4, 0.0], seed=0, data_dir=args.data_dir, samples_per_task=1000
    )
    torch.manual_seed(0)
    model = ll.models.MLP(stream.input_size, [50, 50, 50], stream.n_classes)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    plane = Plane.through(theta, theta + 0.05 * torch.randn_like(theta), theta + 0.05 * torch.randn_like(theta))
    data = grid.task_data(stream, args.samples, "test", seed=0)
    a = np.linspace(-1, 2, args.grid)
    b = np.linspace(-1, 2, args.grid)

    def timed(vectorize: bool):
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = grid.on_plane(model, plane, a, b, data, vectorize=vectorize)
            best = min(best, time.perf_counter() - t0)
        return best, out

    fast_s, (fast_loss, _) = timed(True)
    slow_s, (slow_loss, _) = timed(False)
    points = args.grid**2
    print(
        f"noisy MNIST, 2 tasks x {args.samples} test examples, MLP 784-50-50-50-10, "
        f"grid {args.grid} x {args.grid} = {points} points"
    )
    print(f"threads: {args.threads}; best of {args.repeats}")
    print(f"vectorised     : {fast_s:7.2f} s  ({1e3 * fast_s / points:.2f} ms a point)")
    print(f"point by point : {slow_s:7.2f} s  ({1e3 * slow_s / points:.2f} ms a point)")
    print(f"ratio          : {slow_s / fast_s:7.1f}x faster vectorised")
    print(f"largest loss difference between the two: {np.abs(fast_loss - slow_loss).max():.2e}")
    recording_cost(args.data_dir, args.repeats)


if __name__ == "__main__":
    main()
