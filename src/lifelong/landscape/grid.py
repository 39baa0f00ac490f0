"""Each task's loss and accuracy at many points of parameter space, in large batches.

The points are those of an affine subspace, θ(c) = θ_0 + Σ_k c_k d_k: K = 2 for a plane (lifelong.landscape
.plane), K = 1 for a straight line (linear.py). Each task is scored on a fixed subsample of its data
(``task_data``: e.g. 1000 test examples), with the logit mask it was trained with, the loss being the mean
cross-entropy and the accuracy the share of argmax hits.

Vectorised for the MLP (lifelong.models.MLP): a chunk of P points is one forward pass with stacked weights,
(P, N, in) @ (P, in, out) as one batched matrix product per layer. The first layer needs no stacking at
all: its pre-activation is linear in the coordinates, x W(c)ᵀ + b(c) = (x W_0ᵀ + b_0) + Σ_k c_k (x D_kᵀ +
β_k), so its K + 1 products are computed once per task and every point costs only a weighted sum; that
layer holds most of the MLP's weights (784 · 50 of the 3 × 50 MLP's 42 K on MNIST). Chunks are sized so
that their activations stay under ``memory`` bytes. Any other model is evaluated one point at a time
(torch.func.functional_call with the point's parameters), which gives the same numbers, more slowly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.data.task import Stream
from lifelong.errors import LifelongError, option
from lifelong.models.mlp import MLP

MEMORY = 8 * 2**20  # bytes of activations per chunk of grid points: small enough to stay in cache (4-16 MB: fastest)
SPLITS = ("test", "train")


@dataclasses.dataclass
class TaskData:
    """The examples one task is scored on: inputs, labels, and its logit mask (None: every unit)."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None


def task_data(stream: Stream, samples: int | None = 1000, split: str = "test", seed: int = 0) -> list[TaskData]:
    """A seeded subsample of ``samples`` examples of each task's ``split`` set (None: all of it), with the
    mask each task was trained with (its own units in task-IL, the units seen so far in class-IL)."""
    if split not in SPLITS:
        raise LifelongError(f"{option('eval_split')} must be one of {', '.join(SPLITS)} (got {split!r})")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise LifelongError(f"{option('eval_samples')} must be a whole number >= 1 (got {samples!r})")
    g = torch.Generator().manual_seed(seed)
    out = []
    for task in stream.tasks:
        x, y = (task.test_x, task.test_y) if split == "test" else (task.train_x, task.train_y)
        if samples is not None and samples < len(y):
            keep = torch.randperm(len(y), generator=g)[:samples]
            x, y = x[keep], y[keep]
        masks = stream.train_masks([task.id])
        out.append(TaskData(task.name, x, y, None if masks is None else masks[task.id]))
    return out


def evaluate(
    model: nn.Module,
    origin: torch.Tensor,
    directions: torch.Tensor,
    coords,
    data: list[TaskData],
    vectorize: bool = True,
    memory: int = MEMORY,
) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy of every task at θ = origin + coords @ directions; coords (P, K), directions (K, D).
    Returns two (tasks, P) float64 arrays. ``model`` gives the architecture (its own weights are not used);
    ``vectorize=False`` forces the one-point-at-a-time path."""
    origin = origin.detach().float()
    directions = torch.as_tensor(directions).detach().float().reshape(-1, origin.numel())
    coords = torch.as_tensor(np.asarray(coords, dtype=np.float64)).float().reshape(-1, len(directions))
    n_params = sum(p.numel() for p in model.parameters())
    if origin.numel() != n_params:
        raise LifelongError(f"the points have {origin.numel()} parameters but the model has {n_params}")
    layers = mlp_layers(model) if vectorize else None
    loss = np.empty((len(data), len(coords)))
    acc = np.empty((len(data), len(coords)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for j, d in enumerate(data):
                if layers is not None:
                    loss[j], acc[j] = _mlp_scores(layers, origin, directions, coords, d, memory)
                else:
                    loss[j], acc[j] = _pointwise_scores(model, origin, directions, coords, d)
    finally:
        model.train(was_training)
    return loss, acc


def at(model: nn.Module, theta: torch.Tensor, data: list[TaskData]) -> tuple[np.ndarray, np.ndarray]:
    """Every task's loss and accuracy at one θ (tasks,), by the same path as the grid."""
    loss, acc = evaluate(model, theta, torch.zeros(1, theta.numel()), [[0.0]], data)
    return loss[:, 0], acc[:, 0]


def mlp_layers(model: nn.Module) -> list[tuple[slice, tuple, slice]] | None:
    """For a lifelong MLP whose parameters are exactly its Linear layers (in order): each layer's slice of
    the flat vector for its weight (and shape) and for its bias; None for any other model."""
    if type(model) is not MLP:
        return None
    body = list(model.body)
    pattern = [nn.Flatten] + [nn.Linear, nn.ReLU] * ((len(body) - 1) // 2)
    if [type(m) for m in body] != pattern:
        return None
    linears = [m for m in body if isinstance(m, nn.Linear)] + [model.head]
    expected = [p for m in linears for p in (m.weight, m.bias)]
    params = list(model.parameters())
    if len(params) != len(expected) or any(p is not q for p, q in zip(params, expected, strict=True)):
        return None
    out, offset = [], 0
    for m in linears:
        w = slice(offset, offset + m.weight.numel())
        offset = w.stop
        b = slice(offset, offset + m.bias.numel())
        offset = b.stop
        out.append((w, tuple(m.weight.shape), b))
    return out


def _mlp_scores(layers, origin, directions, coords, d: TaskData, memory: int):
    x = d.x.reshape(len(d.x), -1).float()
    (w0, shape0, b0), rest = layers[0], layers[1:]

    def first(theta):  # x Wᵀ + b for one flat vector (or a direction)
        return x @ theta[w0].view(shape0).T + theta[b0]

    base = first(origin)  # (N, h): the first layer at the origin
    per_direction = torch.stack([first(dk) for dk in directions])  # (K, N, h): its change per unit of c_k
    widest = max([shape0[0]] + [shape[0] for _, shape, _ in rest])
    chunk = max(1, memory // (4 * len(x) * widest * 3))
    loss, acc = [], []
    flat_base, flat_directions = base.reshape(1, -1), per_direction.reshape(len(directions), -1)
    for c in coords.split(chunk):
        h = torch.addmm(flat_base, c, flat_directions).view(len(c), *base.shape).relu_()  # (P, N, h)
        for k, (w, shape, b) in enumerate(rest):
            # Only this layer's slice of each point's θ: (P, out, in) weights and (P, 1, out) biases.
            weight = torch.addmm(origin[w][None], c, directions[:, w]).view(len(c), *shape)
            bias = torch.addmm(origin[b][None], c, directions[:, b]).unsqueeze(1)
            h = torch.baddbmm(bias, h, weight.transpose(1, 2))
            if k < len(rest) - 1:
                h.relu_()
        scored = _scores(h, d)
        loss.append(scored[0])
        acc.append(scored[1])
    return torch.cat(loss).double().numpy(), torch.cat(acc).double().numpy()


def _pointwise_scores(model, origin, directions, coords, d: TaskData):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    loss, acc = [], []
    for c in coords:
        theta = origin + c @ directions
        params = {n: t.view(s) for n, t, s in zip(names, theta.split(sizes), shapes, strict=True)}
        logits = torch.func.functional_call(model, params, (d.x,))
        scored = _scores(logits[None], d)
        loss.append(scored[0])
        acc.append(scored[1])
    return torch.cat(loss).double().numpy(), torch.cat(acc).double().numpy()


def _scores(logits: torch.Tensor, d: TaskData) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy per point of (P, N, C) logits under the task's mask."""
    if d.mask is not None:
        logits = logits + d.mask
    y = d.y.expand(len(logits), -1)
    loss = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)
    acc = (logits.argmax(2) == y).float().mean(1)
    return loss, acc


def axes(points: np.ndarray, n: int, border: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """The grid's a and b values: ``n`` each, evenly over the box around ``points`` (M, 2), widened by
    ``border`` times the box's larger side on every side (one scale for both axes: the plane is drawn with
    equal axes, so the margins look alike)."""
    lo, hi = points.min(0), points.max(0)
    pad = border * float((hi - lo).max())
    return np.linspace(lo[0] - pad, hi[0] + pad, n), np.linspace(lo[1] - pad, hi[1] + pad, n)


def on_plane(
    model: nn.Module, plane, a: np.ndarray, b: np.ndarray, data: list[TaskData], vectorize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy of every task at every grid point (a_i, b_j): two (tasks, len(b), len(a)) arrays,
    row j being b_j (the layout matplotlib's contour takes)."""
    aa, bb = np.meshgrid(a, b)
    coords = np.stack([aa.ravel(), bb.ravel()], axis=1)
    loss, acc = evaluate(model, plane.origin, plane.basis.float(), coords, data, vectorize)
    shape = (len(data), len(b), len(a))
    return loss.reshape(shape), acc.reshape(shape)
