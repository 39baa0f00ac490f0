"""The landscape's grid: vectorised over grid points against one point at a time, on MNIST.

A 41 x 41 grid over a plane of the 3 x 50 MLP's parameter space (784-50-50-50-10), each of two tasks of
noisy MNIST (sd 0.4, then clean) scored on 1000 test examples, as `lifelong landscape` does. The plane
passes through the initialised network and two random perturbations of it: the cost of a grid does not
depend on where its points are. Both paths must give the same losses (printed: the largest difference).
Target: seconds, not minutes.

    python benchmarks/landscape_speed.py --data-dir ../shared/data/mnist [--grid 41] [--samples 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import lifelong as ll
from lifelong.landscape import grid
from lifelong.landscape.plane import Plane


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


if __name__ == "__main__":
    main()
