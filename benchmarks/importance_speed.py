"""How long one task's importance estimation takes on full MNIST (60 000 images) with a 2 × 400 MLP.

Target (issue): under 10 s per estimator on 2 CPU cores. Times every Fisher estimator of
lifelong.methods.fisher (vectorised; the default implementation, which for this all-Linear MLP is the
linear-layer identity) and the MAS and SCP importances over all 60 000 training images, then the same
per-sample quantity computed the plain way (one sample and one autograd call at a time) and with
torch.func (vmap over grad, materialising per-sample gradients) on a subset, extrapolated linearly to
60 000, and checks on that subset that all three agree.

    python benchmarks/importance_speed.py [--data-dir ../shared/data/mnist] [--loop-samples 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lifelong.data.datasets import mnist
from lifelong.methods import fisher
from lifelong.methods.regularization.scp import sliced_importance
from lifelong.models import MLP

TARGET_S = 10.0
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def timed(fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def loop_fisher(model, x, y, exact: bool) -> dict[str, torch.Tensor]:
    """The plain way: a Python loop over samples (and, for the exact Fisher, over classes)."""
    params = dict(model.named_parameters())
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(len(x)):
        logp = torch.log_softmax(model(x[i : i + 1])[0], -1)
        classes = range(len(logp)) if exact else [int(y[i])]
        for c in classes:
            grads = torch.autograd.grad(logp[c], list(params.values()), retain_graph=exact)
            weight = logp[c].exp().detach() if exact else 1.0
            for (n, _), g in zip(params.items(), grads, strict=True):
                acc[n] += weight * g * g
    return {n: a / len(x) for n, a in acc.items()}


def max_rel_diff(a, b) -> float:
    return max(((a[n] - b[n]).abs().max() / b[n].abs().max().clamp_min(1e-30)).item() for n in b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA), help="folder with the four MNIST .gz files")
    ap.add_argument("--loop-samples", type=int, default=1000, help="subset for the per-sample loop and vmap")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--repeat", type=int, default=2, help="best of this many timings of each vectorised run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = mnist.load(args.data_dir)
    x, y = data.train_x, data.train_y
    torch.manual_seed(0)
    model = MLP(784, (400, 400), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for idx in torch.randperm(len(y))[: 300 * 128].split(128):  # 300 SGD steps: a partly trained model
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"MNIST train: {len(y)} images; MLP 784-400-400-10 ({n_params} parameters)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({platform.machine()})")
    print(f"target: < {TARGET_S:.0f} s per task's importance on all {len(y)} images\n")

    # ---- vectorised, all 60 000 images ---------------------------------------------------------
    rows = {}
    for est in fisher.ESTIMATORS:
        rows[est], _ = timed(lambda est=est: fisher.diagonal_fisher(model, x, y, None, est), args.repeat)
    rows["mas"], _ = timed(
        lambda: fisher.per_sample_sums(model, x, fisher.output_norm_cotangents, None, power=1), args.repeat
    )
    rows["scp (L=50)"], _ = timed(lambda: sliced_importance(model, x, None, 50, torch.Generator()), args.repeat)

    # ---- the plain loop and torch.func vmap on a subset, extrapolated ----------------------------
    n = min(args.loop_samples, len(y))
    xs, ys = x[:n], y[:n]
    scale = len(y) / n
    loop, vmap, agree = {}, {}, {}
    for est, exact in (("empirical", False), ("exact", True)):
        t_loop, ref = timed(lambda exact=exact: loop_fisher(model, xs, ys, exact))
        t_vmap, via_vmap = timed(lambda est=est: fisher.diagonal_fisher(model, xs, ys, None, est, impl="vmap"))
        fast = fisher.diagonal_fisher(model, xs, ys, None, est)
        loop[est], vmap[est] = t_loop * scale, t_vmap * scale
        agree[est] = max(max_rel_diff(fast, ref), max_rel_diff(via_vmap, ref))
    loop["sampled"], vmap["sampled"] = loop["empirical"], vmap["empirical"]  # the same work, other labels

    print(f"{'importance':<12} {'vectorised (s)':>15} {'< 10 s':>7} {'plain loop (s)*':>16} {'vmap(grad) (s)*':>16}")
    print(f"{'':<12} {'60000 images':>15} {'':>7} {'extrapolated':>16} {'extrapolated':>16}   speed-up vs loop")
    for name, t in rows.items():
        ok = "yes" if t < TARGET_S else "NO"
        if name in loop:
            ratio = f"{loop[name] / t:8.0f}x"
            print(f"{name:<12} {t:15.2f} {ok:>7} {loop[name]:16.1f} {vmap[name]:16.1f}   {ratio}")
        else:
            print(f"{name:<12} {t:15.2f} {ok:>7} {'-':>16} {'-':>16}")
    print(
        f"\n* timed on the first {n} images and multiplied by {scale:.0f} (linear in the number of images); "
        "'sampled' costs what 'empirical' does.\n  batched is a loop over mini-batches by definition; "
        "MAS and SCP have no per-sample-loop baseline here."
    )
    print(
        "agreement on the subset (max relative difference, linear-layer path and vmap path vs the loop): "
        + ", ".join(f"{k} {v:.1e}" for k, v in agree.items())
    )


if __name__ == "__main__":
    main()
