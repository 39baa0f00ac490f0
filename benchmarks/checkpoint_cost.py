"""What a checkpoint after every task costs: fit() with and without ``checkpoint=`` on the loop-overhead work.

The work of benchmarks/loop_overhead.py (permuted MNIST, 5 tasks of 60 000 images, the 3 x 50 MLP, SGD,
batch 32, 1 epoch per task), once as fit() alone and once saving a checkpoint after each task (model,
optimizer, method, random states: lifelong.checkpoint), alternated, best of each; then a run stopped
after task 2 and resumed, against the R matrix of the run never stopped. With EWC (``--method ewc``) the
checkpoint also holds the method's importances and anchor.

    python benchmarks/checkpoint_cost.py --data-dir ../shared/data/mnist [--repeats 3] [--method finetune]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

import lifelong as ll


class Stop(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--method", default="finetune")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stream = ll.benchmarks.permuted("mnist", n_tasks=5, seed=0, data_dir=args.data_dir)

    def run(folder=None, **kw):
        torch.manual_seed(0)
        model = ll.models.MLP(stream.input_size, [50, 50, 50], stream.n_classes)
        method = ll.methods.create(args.method)
        return ll.fit(stream, model, method, epochs=1, lr=0.1, batch_size=32, seed=0, checkpoint=folder, **kw)

    plain_s, saved_s, checkpoint_s = [], [], []
    for _ in range(args.repeats):  # alternate the two so that machine noise hits both alike
        t0 = time.perf_counter()
        plain = run()
        plain_s.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as folder:
            t0 = time.perf_counter()
            saved = run(folder)
            saved_s.append(time.perf_counter() - t0)
            checkpoint_s.append(saved.timings["checkpoint_s"])
    with tempfile.TemporaryDirectory() as folder:

        def stop(done, n_stages, rows):
            if done == 2:
                raise Stop

        try:
            run(folder, on_row=stop)
        except Stop:
            pass
        resumed = run(folder, resume=True)
    print(f"permuted MNIST, 5 tasks x 60000 samples, MLP 784-50-50-50-10, {args.method}, SGD, batch 32, 1 epoch/task")
    print(f"threads: {args.threads}; repeats: {args.repeats} (best of each)")
    print(f"fit()                      : {min(plain_s):7.2f} s")
    print(f"fit(), checkpoint each task: {min(saved_s):7.2f} s  (of which saving {min(checkpoint_s):.3f} s, 5 times)")
    print(f"ratio                      : {min(saved_s) / min(plain_s):7.3f}x")
    print(
        f"same R with checkpoints: {np.array_equal(plain.R, saved.R)}; "
        f"stopped after task 2 and resumed: {np.array_equal(plain.R, resumed.R)}"
    )


if __name__ == "__main__":
    main()
