"""Ten seeds as one vectorised model against one seed and against ten separate runs (issue 12, item 3).

The loop-overhead work of benchmarks/loop_overhead.py: permuted MNIST, 5 tasks of 60 000 images, the
MLP 784-50-50-50-10, finetune, SGD lr 0.1, batch 32, 1 epoch per task, R[0] and a row after every task.
Seed s fixes the initialisation (torch.manual_seed(s) before building the MLP) and the batch order (fit's
generator); the stream is the same for every seed, as in loop_overhead.py. Target: the 10 vectorised seeds
in at most 2x the wall time of one seed. Also printed: the matrix-product work (FLOP) of the 10 seeds and the
rate it ran at, beside this machine's rate on one large matrix product with the same threads.

    python benchmarks/vectorized_seeds.py --data-dir ../shared/data/mnist [--threads 1] [--seeds 10] [--repeats 1]
        [--device cuda]

On a GPU (``--device cuda``) one seed's step of this tiny MLP is a few dozen kernel launches that leave the
chip almost idle; ten stacked seeds launch the same kernels, only wider, which is where the target is met.

``--steps`` instead times one SGD step of the seeds (random data, no stream) three ways for the 3 x 50 and
the 2 x 100 MLP at batch 32 and 128: one seed's nn.Module, the library's batched matrix products
(lifelong.vectorized.stacked), and torch.func (stack_module_state + functional_call + vmap): the
measurement behind the library's choice of batched products.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import lifelong as ll
from lifelong.vectorized import fit_seeds
from lifelong.vectorized.hooks import cross_entropy
from lifelong.vectorized.stacked import StackedMLP

HIDDEN = [50, 50, 50]
SETTINGS = {"epochs": 1, "lr": 0.1, "batch_size": 32}


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def model(stream, seed: int):
    torch.manual_seed(seed)
    return ll.models.MLP(stream.input_size, HIDDEN, stream.n_classes)


def flop(stream, S: int) -> float:
    """Multiply-adds x 2 of the matrix products: forward, dW and dx (not the first layer's) per step;
    forward on every test set for R[0] and after each task."""
    sizes = [stream.input_size, *HIDDEN, stream.n_classes]
    pairs = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    per_sample_train = 2 * (2 * sum(pairs) + sum(pairs[1:]))
    train = sum(len(t.train_y) for t in stream.tasks) * per_sample_train
    test = (len(stream.tasks) + 1) * sum(len(t.test_y) for t in stream.tasks) * 2 * sum(pairs)
    return S * (train + test)


def peak_rate(device: str) -> float:
    """FLOP/s of one large float32 matrix product (TF32 stays off, as in training)."""
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    sync(device)
    return 5 * 2 * 2048**3 / (time.perf_counter() - t)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_times(S: int, hidden: list[int], batch: int, steps: int = 200) -> tuple[float, float, float]:
    """ms per SGD step: one seed, S seeds as batched products, S seeds with torch.func.vmap."""
    from torch.func import functional_call, stack_module_state, vmap

    x, y = torch.randn(60000, 784), torch.randint(0, 10, (60000,))
    models = [ll.models.MLP(784, hidden, 10) for _ in range(S)]
    one = models[0]
    one_opt = torch.optim.SGD(one.parameters(), lr=0.1)

    def one_step():
        idx = torch.randint(0, len(y), (batch,))
        loss = torch.nn.functional.cross_entropy(one(x[idx]), y[idx])
        one_opt.zero_grad(set_to_none=True)
        loss.backward()
        one_opt.step()

    stacked = StackedMLP([ll.models.MLP(784, hidden, 10) for _ in range(S)])
    stacked_opt = torch.optim.SGD(stacked.params, lr=0.1)

    def stacked_step():
        idx = torch.randint(0, len(y), (S * batch,))
        loss = cross_entropy(stacked(x.index_select(0, idx).view(S, batch, -1)), y[idx].view(S, batch), None)
        stacked_opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        stacked_opt.step()

    params, _ = stack_module_state(models)
    skeleton = ll.models.MLP(784, hidden, 10).to("meta")
    forward = vmap(lambda p, xb: functional_call(skeleton, p, (xb,)))
    vmap_opt = torch.optim.SGD(list(params.values()), lr=0.1)

    def vmap_step():
        idx = torch.randint(0, len(y), (S * batch,))
        logits = forward(params, x.index_select(0, idx).view(S, batch, -1))
        loss = cross_entropy(logits, y[idx].view(S, batch), None)
        vmap_opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        vmap_opt.step()

    def ms(step) -> float:  # CPU time of this process: on a shared machine, wall time also counts the others
        for _ in range(20):
            step()
        best = math.inf
        for _ in range(3):
            t = time.process_time()
            for _ in range(steps):
                step()
            best = min(best, (time.process_time() - t) / steps * 1e3)
        return best

    return ms(one_step), ms(stacked_step), ms(vmap_step)


def compare_steps(S: int, threads: int) -> None:
    print(f"CPU ms per SGD step, 784 inputs, 10 outputs, {S} seeds; threads: {threads}; best of 3 x 200 steps")
    print(f"{'MLP':<14}{'batch':>6}{'1 seed':>9}{'batched':>9}{'vmap':>9}")
    for hidden in ([50, 50, 50], [100, 100]):
        for batch in (32, 128):
            one, batched, vmapped = step_times(S, hidden, batch)
            name = "-".join(map(str, hidden))
            print(f"{name:<14}{batch:>6}{one:>9.2f}{batched:>9.2f}{vmapped:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--dataset", default="mnist", help="mnist (the loop-overhead work) or minimnist (shipped)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--steps", action="store_true", help="time single steps: batched products against vmap")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where every run trains and is evaluated")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.steps:
        return compare_steps(args.seeds, args.threads)
    data_dir = args.data_dir if args.dataset == "mnist" else None
    stream = ll.benchmarks.permuted(args.dataset, n_tasks=5, seed=0, data_dir=data_dir)
    seeds = list(range(args.seeds))
    settings = {**SETTINGS, "device": args.device}
    # Warm-up: the first fit() of a process pays one-off costs (allocator, kernels' first calls).
    warm = {"iterations": 200, "batch_size": 32, "device": args.device}
    ll.fit(stream, model(stream, 0), "finetune", seed=0, **warm)
    fit_seeds(stream, [model(stream, s) for s in seeds], "finetune", seeds, **warm)
    one, separate, vectorised = [], [], []
    for _ in range(args.repeats):  # alternate the three so that machine noise hits all alike
        _, wall, cpu = timed(lambda: ll.fit(stream, model(stream, 0), "finetune", seed=0, **settings))
        one.append((wall, cpu))
        separate_results, wall, cpu = timed(
            lambda: [ll.fit(stream, model(stream, s), "finetune", seed=s, **settings) for s in seeds]
        )
        separate.append((wall, cpu))
        vectorised_results, wall, cpu = timed(
            lambda: fit_seeds(stream, [model(stream, s) for s in seeds], "finetune", seeds, **settings)
        )
        vectorised.append((wall, cpu))
    best = {name: min(times) for name, times in (("one", one), ("separate", separate), ("vectorised", vectorised))}
    delta = max(np.abs(a.R - b.R).max() for a, b in zip(separate_results, vectorised_results, strict=True))
    identical = sum(np.array_equal(a.R, b.R) for a, b in zip(separate_results, vectorised_results, strict=True))
    S = len(seeds)
    sizes = "-".join(map(str, [stream.input_size, *HIDDEN, stream.n_classes]))
    print(
        f"permuted {args.dataset}, 5 tasks x {len(stream.tasks[0].train_y)} samples, MLP {sizes}, finetune, "
        "SGD lr 0.1, batch 32, 1 epoch/task"
    )
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, threads: {args.threads}"
    print(f"device: {device}; torch {torch.__version__}")
    print(f"threads: {args.threads}; repeats: {args.repeats} (best of each); wall s (CPU s)")
    print(f"1 seed                  : {best['one'][0]:7.2f} s ({best['one'][1]:.2f})")
    print(f"{S} seeds, separate runs : {best['separate'][0]:7.2f} s ({best['separate'][1]:.2f})")
    print(f"{S} seeds, vectorised    : {best['vectorised'][0]:7.2f} s ({best['vectorised'][1]:.2f})")
    print(f"vectorised / 1 seed     : {best['vectorised'][0] / best['one'][0]:7.2f}x   (target <= 2x)")
    print(f"separate / vectorised   : {best['separate'][0] / best['vectorised'][0]:7.2f}x   (speed-up)")
    rate = flop(stream, S) / best["vectorised"][0]
    print(
        f"matrix products of the {S} seeds: {flop(stream, S) / 1e9:.0f} GFLOP, {rate / 1e9:.0f} GFLOP/s; one "
        f"2048^3 product on this machine: {peak_rate(args.device) / 1e9:.0f} GFLOP/s"
    )
    print(f"max |R vectorised - R separate| over the {S} seeds: {delta:.2e}; R identical for {identical} of {S} seeds")


if __name__ == "__main__":
    main()
