"""Named benchmarks: a builder (permuted, rotated, split, noisy) applied to a dataset, in a scenario; and
bAbI's question-answering tasks (``babi``: the 1k set, ``babi-10k``), a stream of text tasks.

stream = lifelong.benchmarks.permuted("digits", n_tasks=5, seed=0)
stream = lifelong.benchmarks.build("split-mnist", n_tasks=5, scenario="class", data_dir="data/")
stream = lifelong.benchmarks.build("babi", n_tasks=20, data_dir="../shared/data/babi")
"""

from __future__ import annotations

import functools
import sys

import torch

from lifelong.data import budget, builders
from lifelong.data.datasets import DATASETS, Dataset, load
from lifelong.data.task import Stream, Task, make_stream
from lifelong.errors import LifelongError, option

BUILDERS = ("permuted", "rotated", "split", "noisy")
# The scenario each builder is usually run in; any scenario the tasks admit can be asked for.
DEFAULT_SCENARIO = {"permuted": "domain", "rotated": "domain", "split": "task", "noisy": "domain"}
NAMES = (*(f"{b}-{d}" for b in BUILDERS for d in DATASETS), "babi", "babi-10k")


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


def babi(
    n_tasks: int | None = None,
    scenario: str | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    samples_per_task: int | None = None,
    task_order: list[int] | None = None,
    size: str = "1k",
    sentences: int = 50,
) -> Stream:
    """bAbI's tasks 1..``n_tasks`` (default all 20; Weston et al. 2015, arXiv 1502.05698) as a stream of
    text tasks (data/datasets/babi.py reads and verifies the files).

    A sample's input is its story (the ``sentences`` most recent sentences, newest first) and its
    question packed into one int64 tensor of word ids (``babi.pack``: the question is the last row); its
    label is the answer's index in ONE answer vocabulary shared by all tasks: the output units, in every
    scenario (unlike the image builders, tasks that share an answer, such as yes/no, share its unit). A
    task's classes are the answers it uses. The default scenario is domain-IL: one QA model, every
    answer open to every question, no task identity (the lecture's experiment); task-IL restricts a task
    to its own answers, class-IL to the answers taught so far. ``samples_per_task`` keeps a random
    subset (seeded) of each task's training questions; the test sets stay whole.
    """
    from lifelong.data.datasets import babi as data

    n_tasks = len(data.TASKS) if n_tasks is None else n_tasks
    if not 1 <= n_tasks <= len(data.TASKS):
        raise LifelongError(f"bAbI has tasks 1 to {len(data.TASKS)}; set {option('tasks')} between 1 and 20")
    if isinstance(sentences, bool) or not isinstance(sentences, int) or sentences < 1:
        raise LifelongError(f"{option('sentences')} must be a whole number >= 1 (got {sentences!r})")
    numbers = [t + 1 for t in builders.reorder(list(range(n_tasks)), task_order)]
    loaded = data.load_tasks(numbers, size=size, data_dir=data_dir, memory_size=sentences)
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for i, number in enumerate(numbers):
        train, test = loaded.encode(loaded.train[number]), loaded.encode(loaded.test[number])
        keep = torch.arange(len(train))
        if samples_per_task is not None:
            keep = torch.randperm(len(train), generator=g)[:samples_per_task].sort().values
        classes = tuple(sorted(set(train.answer.tolist()) | set(test.answer.tolist())))
        name = f"qa{number}"
        x, y = data.pack(train.story, train.question)[keep], train.answer[keep]
        tasks.append(Task(i, name, x, y, data.pack(test.story, test.question), test.answer, classes))
    shape = (loaded.sentences + 1, loaded.words)
    name, answers = ("babi" if size == "1k" else f"babi-{size}"), list(loaded.vocab.answers)
    return Stream(name, tasks, scenario or "domain", shape, len(answers), answers, vocabulary=list(loaded.vocab.words))


def build(name: str, **options) -> Stream:
    """Build a benchmark by its name, e.g. ``permuted-digits``; options go to the builder."""
    kind, _, data_name = name.partition("-")
    if name not in NAMES:
        raise LifelongError(f"unknown benchmark {name!r}; choose one of: {', '.join(NAMES)}")
    if kind == "babi":
        return babi(size=data_name or "1k", **options)
    builder = {"permuted": permuted, "rotated": rotated, "split": split, "noisy": noisy}[kind]
    return builder(data_name, **options)
