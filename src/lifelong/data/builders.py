"""Stream builders: turn one dataset into a sequence of raw tasks (labels are still dataset classes).

- permuted: every task is the whole dataset under its own fixed pixel permutation (Goodfellow et al.
  2013; Kirkpatrick et al. 2017). Task 1 is unpermuted unless ``permute_first``.
- rotated: every task is the whole dataset rotated by its own angle (Lopez-Paz & Ranzato 2017).
- split: the classes are dealt out to tasks, ``classes_per_task`` each, in ``class_order``
  (Zenke et al. 2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelong.data.datasets import Dataset
from lifelong.data.task import RawTask
from lifelong.errors import LifelongError


def _check_tasks(n_tasks: int) -> None:
    if n_tasks < 1:
        raise LifelongError(f"--tasks must be at least 1 (got {n_tasks})")


def _subsample(x, y, n: int | None, g: torch.Generator):
    """At most ``n`` training samples of a task, drawn without replacement (all when n is None)."""
    if n is None or n >= len(y):
        return x, y
    if n < 1:
        raise LifelongError(f"--samples-per-task must be at least 1 (got {n})")
    keep = torch.randperm(len(y), generator=g)[:n]
    return x[keep], y[keep]


def pad(images: torch.Tensor, to: int | None) -> torch.Tensor:
    """Zero-pad square images (N, H, W) to ``to`` x ``to``, centred (e.g. MNIST 28 -> 32)."""
    if to is None or to == images.shape[-1]:
        return images
    extra = to - images.shape[-1]
    if extra < 0:
        raise LifelongError(f"--pad {to} is smaller than the images ({images.shape[-1]} pixels a side)")
    return F.pad(images, (extra // 2, extra - extra // 2, extra // 2, extra - extra // 2))


def permuted(
    data: Dataset,
    n_tasks: int,
    seed: int = 0,
    permute_first: bool = False,
    pad_to: int | None = None,
    samples_per_task: int | None = None,
) -> list[RawTask]:
    _check_tasks(n_tasks)
    g = torch.Generator().manual_seed(seed)
    train_x, test_x = pad(data.train_x, pad_to), pad(data.test_x, pad_to)
    shape, size = train_x.shape[1:], train_x[0].numel()
    labels = tuple(range(data.n_classes))
    tasks = []
    for t in range(n_tasks):
        perm = torch.randperm(size, generator=g) if (t > 0 or permute_first) else torch.arange(size)
        x, y = _subsample(train_x, data.train_y, samples_per_task, g)
        tasks.append(
            RawTask(
                f"perm{t + 1}",
                x.reshape(len(x), -1)[:, perm].reshape(len(x), *shape),
                y,
                test_x.reshape(len(test_x), -1)[:, perm].reshape(len(test_x), *shape),
                data.test_y,
                labels,
            )
        )
    return tasks


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate (N, H, W) images about their centre, bilinear, zeros outside (no torchvision needed)."""
    theta = torch.tensor(degrees * torch.pi / 180.0)
    c, s = torch.cos(theta), torch.sin(theta)
    affine = torch.tensor([[c, -s, 0.0], [s, c, 0.0]]).expand(len(images), 2, 3)
    grid = F.affine_grid(affine, [len(images), 1, *images.shape[1:]], align_corners=False)
    return F.grid_sample(images[:, None], grid, align_corners=False)[:, 0]


def rotated(
    data: Dataset,
    n_tasks: int,
    angles: list[float] | None = None,
    seed: int = 0,
    samples_per_task: int | None = None,
) -> list[RawTask]:
    _check_tasks(n_tasks)
    angles = list(angles) if angles is not None else [t * 180.0 / n_tasks for t in range(n_tasks)]
    if len(angles) != n_tasks:
        raise LifelongError(f"--angles gives {len(angles)} angles for {n_tasks} tasks; give one per task")
    g = torch.Generator().manual_seed(seed)
    labels = tuple(range(data.n_classes))
    tasks = []
    for angle in angles:
        x, y = _subsample(data.train_x, data.train_y, samples_per_task, g)
        tasks.append(RawTask(f"rot{angle:g}", rotate(x, angle), y, rotate(data.test_x, angle), data.test_y, labels))
    return tasks


def split(
    data: Dataset,
    n_tasks: int,
    classes_per_task: int | None = None,
    class_order: list[int] | None = None,
    seed: int = 0,
    samples_per_task: int | None = None,
) -> list[RawTask]:
    _check_tasks(n_tasks)
    order = list(class_order) if class_order is not None else list(range(data.n_classes))
    if sorted(order) != sorted(set(order)) or not set(order) <= set(range(data.n_classes)):
        raise LifelongError(f"--class-order must list distinct classes of 0..{data.n_classes - 1} (got {order})")
    per_task = classes_per_task or len(order) // n_tasks
    if n_tasks > len(order):
        raise LifelongError(
            f"split cannot make {n_tasks} tasks from {len(order)} classes; use at most {len(order)} tasks"
        )
    if per_task < 1 or per_task * n_tasks > len(order):
        raise LifelongError(
            f"split cannot make {n_tasks} tasks of {per_task} classes from {len(order)} classes; "
            f"use fewer tasks or fewer classes per task"
        )
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        labels = tuple(order[t * per_task : (t + 1) * per_task])
        pick_train = torch.isin(data.train_y, torch.tensor(labels))
        pick_test = torch.isin(data.test_y, torch.tensor(labels))
        x, y = _subsample(data.train_x[pick_train], data.train_y[pick_train], samples_per_task, g)
        name = "-".join(data.class_names[c] for c in labels)
        tasks.append(RawTask(name, x, y, data.test_x[pick_test], data.test_y[pick_test], labels))
    return tasks


def reorder(tasks: list[RawTask], order: list[int] | None) -> list[RawTask]:
    """Present the tasks in ``order`` (a permutation of 0..T-1), e.g. to study curricula."""
    if order is None:
        return tasks
    if sorted(order) != list(range(len(tasks))):
        raise LifelongError(f"--task-order must be a permutation of 0..{len(tasks) - 1} (got {order})")
    return [tasks[i] for i in order]
