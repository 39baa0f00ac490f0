"""The library's training loop against a bare hand-written PyTorch loop on the same work.

Permuted MNIST, 5 tasks, the 3 x 50 MLP, SGD lr 0.1, batch 32, 1 epoch per task, the same batches
(the same seeded permutation of indices for every epoch), the same evaluation before training and after every task.
Target: the library's wall time at most 1.15x the bare loop's.

    python benchmarks/loop_overhead.py --data-dir ../shared/data/mnist [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import lifelong as ll


def bare_loop(stream, model, lr: float, batch_size: int, seed: int):
    """What a user would write by hand: index batches of in-memory tensors, SGD, evaluate each task."""
    g = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def evaluate():
        return [(model(t.test_x).argmax(1) == t.test_y).float().mean().item() for t in stream.tasks]

    rows = [evaluate()]  # R[0]: before any training, as fit() does
    for task in stream.tasks:
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for idx in torch.randperm(len(task.train_y), generator=g).split(batch_size):
            loss = F.cross_entropy(model(task.train_x[idx]), task.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rows.append(evaluate())
    return np.array(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stream = ll.benchmarks.permuted("mnist", n_tasks=5, seed=0, data_dir=args.data_dir)
    lr, batch, seed = 0.1, 32, 0

    def fresh_model():
        torch.manual_seed(seed)
        return ll.models.MLP(stream.input_size, [50, 50, 50], stream.n_classes)

    bare_s, lib_s, lib_train_s = [], [], []
    for _ in range(args.repeats):  # alternate the two so that machine noise hits both alike
        t0 = time.perf_counter()
        bare_R = bare_loop(stream, fresh_model(), lr, batch, seed)
        bare_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = ll.fit(stream, fresh_model(), ll.methods.Finetune(), epochs=1, lr=lr, batch_size=batch, seed=seed)
        lib_s.append(time.perf_counter() - t0)
        lib_train_s.append(sum(result.timings["train_s"]))

    same = np.allclose(result.R, bare_R, atol=1e-6)
    print(f"permuted MNIST, 5 tasks x 60000 samples, MLP 784-50-50-50-10, SGD, batch {batch}, 1 epoch/task")
    print(f"threads: {args.threads}; repeats: {args.repeats} (best of each)")
    print(f"bare PyTorch loop : {min(bare_s):7.2f} s")
    print(f"lifelong.fit      : {min(lib_s):7.2f} s  (of which training {min(lib_train_s):.2f} s)")
    print(f"ratio             : {min(lib_s) / min(bare_s):7.3f}x   (target <= 1.15x)")
    print(f"same R matrix as the bare loop: {same}")


if __name__ == "__main__":
    main()
