"""Stream builders: turn one dataset into a sequence of raw tasks (labels are still dataset classes).

- permuted: every task is the whole dataset under its own fixed pixel permutation (Goodfellow et al.
  2013; Kirkpatrick et al. 2017). Task 1 is unpermuted unless ``permute_first``.
- rotated: every task is the whole dataset rotated by its own angle (Lopez-Paz & Ranzato 2017).
- split: the classes are dealt out to tasks, ``classes_per_task`` each, in ``class_order``
  (Zenke et al. 2017).
- noisy: every task is the whole dataset under its own level of additive Gaussian pixel noise, the
  opening example of Hung-yi Lee's lecture "Life Long Learning" (task 1 noisy digits, task 2 clean).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lifelong.data.datasets import Dataset
from lifelong.data.task import RawTask
from lifelong.errors import LifelongError, option

Progress = Callable[[int, int], None]  # (task index, number of tasks), called before each task is made


def _check_tasks(n_tasks: int) -> None:
    if n_tasks < 1:
        raise LifelongError(f"{option('tasks')} must be at least 1 (got {n_tasks})")


def _subsample(x, y, n: int | None, g: torch.Generator):
    """At most ``n`` training samples of a task, drawn without replacement (all when n is None)."""
    if n is None or n >= len(y):
        return x, y
    if n < 1:
        raise LifelongError(f"{option('samples_per_task')} must be at least 1 (got {n})")
    keep = torch.randperm(len(y), generator=g)[:n]
    return x[keep], y[keep]


def pad(images: torch.Tensor, to: int | None) -> torch.Tensor:
    """Zero-pad square images (N, H, W) to ``to`` x ``to``, centred (e.g. MNIST 28 -> 32)."""
    if to is None or to == images.shape[-1]:
        return images
    extra = to - images.shape[-1]
    if extra < 0:
        raise LifelongError(
            f"{option('pad_to')} {to} is smaller than the images ({images.shape[-1]} pixels a side); "
            f"give at least {images.shape[-1]}"
        )
    return F.pad(images, (extra // 2, extra - extra // 2, extra // 2, extra - extra // 2))


def permuted(
    data: Dataset,
    n_tasks: int,
    seed: int = 0,
    permute_first: bool = False,
    pad_to: int | None = None,
    samples_per_task: int | None = None,
    progress: Progress | None = None,
) -> list[RawTask]:
    _check_tasks(n_tasks)
    g = torch.Generator().manual_seed(seed)
    train_x, test_x = pad(data.train_x, pad_to), pad(data.test_x, pad_to)
    shape, size = train_x.shape[1:], train_x[0].numel()
    labels = tuple(range(data.n_classes))
    tasks = []
    for t in range(n_tasks):
        if progress:
            progress(t, n_tasks)
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
    progress: Progress | None = None,
) -> list[RawTask]:
    _check_tasks(n_tasks)
    angles = list(angles) if angles is not None else [t * 180.0 / n_tasks for t in range(n_tasks)]
    if len(angles) != n_tasks:
        raise LifelongError(f"{option('angles')} gives {len(angles)} angles for {n_tasks} tasks; give one per task")
    if not all(math.isfinite(a) for a in angles):
        raise LifelongError(f"{option('angles')} must be finite numbers of degrees (got {angles})")
    g = torch.Generator().manual_seed(seed)
    labels = tuple(range(data.n_classes))
    tasks = []
    for t, angle in enumerate(angles):
        if progress:
            progress(t, n_tasks)
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
    everything = list(range(data.n_classes))
    order = list(class_order) if class_order is not None else everything
    if sorted(order) != everything:
        raise LifelongError(
            f"{option('class_order')} must list every class of 0..{data.n_classes - 1} exactly once (got {order})"
        )
    if classes_per_task is not None and (isinstance(classes_per_task, bool) or classes_per_task < 1):
        raise LifelongError(f"{option('classes_per_task')} must be at least 1 (got {classes_per_task})")
    per_task = classes_per_task or len(order) // n_tasks
    if n_tasks > len(order):
        raise LifelongError(
            f"split cannot make {n_tasks} tasks from {len(order)} classes; use at most {len(order)} tasks"
        )
    if per_task * n_tasks > len(order):
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


# The default noisiest task: sd 0.6 on [0, 1] pixels hides much, not all, of a digit.
DEFAULT_NOISE = 0.6


def noise_levels(n_tasks: int, noise: list[float] | None = None) -> list[float]:
    """The noise sd of each task: ``noise`` as given, else evenly from ``DEFAULT_NOISE`` down to 0
    (the last task clean, as in the lecture)."""
    if noise is None:
        if n_tasks == 1:
            return [0.0]
        return [DEFAULT_NOISE * (n_tasks - 1 - t) / (n_tasks - 1) for t in range(n_tasks)]
    levels = [float(v) for v in noise]
    if len(levels) != n_tasks:
        raise LifelongError(
            f"{option('noise')} gives {len(levels)} noise levels for {n_tasks} tasks; give one sd per task"
        )
    bad = [v for v in levels if not math.isfinite(v) or v < 0]
    if bad:
        raise LifelongError(f"{option('noise')} levels must be finite and at least 0 (got {bad[0]:g})")
    return levels


def noisy(
    data: Dataset,
    n_tasks: int,
    noise: list[float] | None = None,
    seed: int = 0,
    samples_per_task: int | None = None,
    progress: Progress | None = None,
) -> list[RawTask]:
    """Tasks that differ only in how noisy their pixels are. The noise is drawn once per task from the
    seed and is then fixed (the same noisy image every epoch); train and test images get their own draws."""
    _check_tasks(n_tasks)
    levels = noise_levels(n_tasks, noise)
    g = torch.Generator().manual_seed(seed)
    labels = tuple(range(data.n_classes))
    tasks = []
    for t, sd in enumerate(levels):
        if progress:
            progress(t, n_tasks)
        x, y = _subsample(data.train_x, data.train_y, samples_per_task, g)
        # Draw both sets even at sd 0, so a task's noise does not depend on the levels of the tasks before it.
        train_noise, test_noise = torch.randn(x.shape, generator=g), torch.randn(data.test_x.shape, generator=g)
        tasks.append(
            RawTask(
                f"noise{sd:g}",
                (x + sd * train_noise).clamp(0.0, 1.0),
                y,
                (data.test_x + sd * test_noise).clamp(0.0, 1.0),
                data.test_y,
                labels,
            )
        )
    return tasks


def reorder(tasks: list[RawTask], order: list[int] | None) -> list[RawTask]:
    """Present the tasks in ``order`` (a permutation of 0..T-1), e.g. to study curricula."""
    if order is None:
        return tasks
    if sorted(order) != list(range(len(tasks))):
        raise LifelongError(f"{option('task_order')} must list each of 0..{len(tasks) - 1} once (got {order})")
    return [tasks[i] for i in order]
