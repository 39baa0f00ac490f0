"""Named benchmarks: a builder (permuted, rotated, split, noisy) applied to a dataset, in a scenario.

stream = lifelong.benchmarks.permuted("digits", n_tasks=5, seed=0)
stream = lifelong.benchmarks.build("split-mnist", n_tasks=5, scenario="class", data_dir="data/")
"""

from __future__ import annotations

import functools
import sys

from lifelong.data import budget, builders
from lifelong.data.datasets import DATASETS, Dataset, load
from lifelong.data.task import Stream, make_stream
from lifelong.errors import LifelongError

BUILDERS = ("permuted", "rotated", "split", "noisy")
# The scenario each builder is usually run in; any scenario the tasks admit can be asked for.
DEFAULT_SCENARIO = {"permuted": "domain", "rotated": "domain", "split": "task", "noisy": "domain"}
NAMES = tuple(f"{b}-{d}" for b in BUILDERS for d in DATASETS)


@functools.lru_cache(maxsize=4)
def dataset(name: str, data_dir: str | None = None) -> Dataset:
    """A dataset, loaded once per process (several seeds or methods reuse it)."""
    return load(name, data_dir)


def permuted(
    dataset_name: str = "digits",
    n_tasks: int = 5,
    scenario: str | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    permute_first: bool = False,
    pad_to: int | None = None,
    samples_per_task: int | None = None,
    task_order: list[int] | None = None,
) -> Stream:
    data = dataset(dataset_name, data_dir)
    side = (pad_to,) * 2 if pad_to and data.train_x.dim() == 3 else None
    progress = _budget("permuted", data, n_tasks, samples_per_task, side)
    raw = builders.permuted(data, n_tasks, seed, permute_first, pad_to, samples_per_task, progress)
    return _stream("permuted", data, raw, scenario, task_order)


def rotated(
    dataset_name: str = "digits",
    n_tasks: int = 5,
    scenario: str | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    angles: list[float] | None = None,
    samples_per_task: int | None = None,
    task_order: list[int] | None = None,
) -> Stream:
    data = dataset(dataset_name, data_dir)
    progress = _budget("rotated", data, n_tasks, samples_per_task)
    raw = builders.rotated(data, n_tasks, angles, seed, samples_per_task, progress)
    return _stream("rotated", data, raw, scenario, task_order)


def split(
    dataset_name: str = "digits",
    n_tasks: int = 5,
    scenario: str | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    classes_per_task: int | None = None,
    class_order: list[int] | None = None,
    samples_per_task: int | None = None,
    task_order: list[int] | None = None,
) -> Stream:
    data = dataset(dataset_name, data_dir)
    raw = builders.split(data, n_tasks, classes_per_task, class_order, seed, samples_per_task)
    return _stream("split", data, raw, scenario, task_order)


def noisy(
    dataset_name: str = "digits",
    n_tasks: int = 5,
    scenario: str | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    noise: list[float] | None = None,
    samples_per_task: int | None = None,
    task_order: list[int] | None = None,
) -> Stream:
    data = dataset(dataset_name, data_dir)
    progress = _budget("noisy", data, n_tasks, samples_per_task)
    raw = builders.noisy(data, n_tasks, noise, seed, samples_per_task, progress)
    return _stream("noisy", data, raw, scenario, task_order)


def _budget(kind, data: Dataset, n_tasks: int, samples_per_task, shape=None) -> builders.Progress | None:
    """Refuse a stream that cannot fit in memory, before building it; for a large one, say so on stderr
    (on a terminal, a progress line updated per task)."""
    need = budget.stream_bytes(
        kind, len(data.train_y), len(data.test_y), shape or data.image_shape, n_tasks, samples_per_task
    )
    what = f"{kind}-{data.name} with {n_tasks} tasks"
    budget.check_fits(need, what)
    if need < budget.LARGE:
        return None
    if not sys.stderr.isatty():  # a log gets one line, not a line per task
        sys.stderr.write(f"building {what} (about {budget.human(need)})\n")
        return None

    def progress(t: int, total: int) -> None:
        end = "\n" if t == total - 1 else ""
        sys.stderr.write(f"\rbuilding {what} (about {budget.human(need)}): task {t + 1}/{total}{end}")
        sys.stderr.flush()

    return progress


def _stream(kind, data, raw, scenario, task_order) -> Stream:
    raw = builders.reorder(raw, task_order)
    stream = make_stream(
        f"{kind}-{data.name}", raw, scenario or DEFAULT_SCENARIO[kind], data.image_shape, data.class_names
    )
    used = {c for r in raw for c in r.labels}
    stream.left_out = [data.class_names[c] for c in range(data.n_classes) if c not in used]
    return stream


def build(name: str, **options) -> Stream:
    """Build a benchmark by its name, e.g. ``permuted-digits``; options go to the builder."""
    kind, _, data_name = name.partition("-")
    if name not in NAMES:
        raise LifelongError(f"unknown benchmark {name!r}; choose one of: {', '.join(NAMES)}")
    builder = {"permuted": permuted, "rotated": rotated, "split": split, "noisy": noisy}[kind]
    return builder(data_name, **options)
