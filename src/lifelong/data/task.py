"""Tasks, streams and the three scenarios.

A scenario (van de Ven & Tolias 2019, "Three scenarios for continual learning", arXiv 1904.07734) is a
setting of the stream, not of the dataset: the same tasks can be run in any of them.

- ``task``   (task-IL):   task identity is given at test time. Each task owns its own output units (a
  single output layer restricted to a task's units *is* a multi-headed network: one head per task).
  Training and testing use only the current task's units.
- ``domain`` (domain-IL): task identity is not given and need not be inferred. All tasks share the
  same output units (label ``k`` of every task is unit ``k``).
- ``class``  (class-IL):  task identity is not given and must be inferred. Each task owns its output
  units; training uses every unit seen so far, testing chooses among all units seen so far.

Because task-IL and class-IL share the same labelling, one run evaluates both views by logit masking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from lifelong.errors import LifelongError, option

SCENARIOS = ("task", "domain", "class")
SCENARIO_NAMES = {"task": "task-IL", "domain": "domain-IL", "class": "class-IL"}  # also the evaluation views


@dataclass(eq=False)
class Task:
    """One task: in-memory tensors and the output units (classes) its labels use."""

    id: int
    name: str
    train_x: torch.Tensor  # (N, *input_shape) float32 (images), or int64 word ids (text)
    train_y: torch.Tensor  # (N,) int64, output units of the stream
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[int, ...]  # output units this task's labels occupy

    def __repr__(self) -> str:
        return f"Task({self.id}, {self.name!r}, train={len(self.train_y)}, test={len(self.test_y)})"


@dataclass(eq=False)
class RawTask:
    """A task before a scenario gives its labels output units: labels are the dataset's classes."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    labels: tuple[int, ...]  # the dataset classes this task contains, in the order they get units


@dataclass(eq=False)
class Stream:
    """An ordered sequence of tasks in one scenario."""

    name: str
    tasks: list[Task]
    scenario: str
    input_shape: tuple[int, ...]
    n_classes: int  # number of output units the model needs
    class_names: list[str] = field(default_factory=list)  # dataset class of each output unit
    left_out: list[str] = field(default_factory=list)  # dataset classes no task uses (an uneven split)
    vocabulary: list[str] = field(default_factory=list)  # a text stream's words: inputs are their indices

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def __getitem__(self, i: int) -> Task:
        return self.tasks[i]

    # ---- logit masks: 0 for allowed units, -inf for the others ---------------------------------

    def _mask(self, units) -> torch.Tensor:
        mask = torch.full((self.n_classes,), float("-inf"))
        mask[list(units)] = 0.0
        return mask

    def units_up_to(self, t: int) -> set[int]:
        return {c for task in self.tasks[: t + 1] for c in task.classes}

    def train_masks(self, stage: list[int]) -> torch.Tensor | None:
        """Masks for training on the tasks of ``stage``: a (T, C) table indexed by each sample's task id,
        or None when every unit is allowed (domain-IL)."""
        if self.scenario == "domain":
            return None
        if self.scenario == "task":
            return torch.stack([self._mask(task.classes) for task in self.tasks])
        seen = self._mask(self.units_up_to(max(stage)))  # class-IL: every unit seen so far
        return seen.expand(len(self.tasks), -1).contiguous()

    def eval_masks(self, after: int) -> dict[str, torch.Tensor | None]:
        """Masks for testing each task after training up to task index ``after`` (-1: before training).

        Returns {view: (T, C) table or None}. Views: "domain" alone for domain-IL streams; "task" and
        "class" for the others. The class-IL candidates for task j are the units seen so far plus task
        j's own, so that a task not learned yet is scored against what the model knows, not zero by
        construction.
        """
        if self.scenario == "domain":
            return {"domain": None}
        seen = self.units_up_to(after) if after >= 0 else set()
        return {
            "task": torch.stack([self._mask(task.classes) for task in self.tasks]),
            "class": torch.stack([self._mask(seen | set(task.classes)) for task in self.tasks]),
        }


def make_stream(
    name: str,
    raw: list[RawTask],
    scenario: str,
    input_shape: tuple[int, ...],
    class_names: list[str] | None = None,
) -> Stream:
    """Give each raw task's labels output units according to the scenario.

    task/class-IL: task t's labels take the next free units, in the task's label order (so split
    tasks keep distinct units and permuted tasks get units 10t..10t+9). domain-IL: label k of every
    task is unit k (tasks must have the same number of labels).
    """
    if scenario not in SCENARIOS:
        raise LifelongError(f"unknown {option('scenario')} {scenario!r}; choose one of: {', '.join(SCENARIOS)}")
    if not raw:
        raise LifelongError(f"a stream needs at least one task; set {option('tasks')} to 1 or more")
    names = class_names or [str(c) for c in range(1 + max(max(r.labels) for r in raw))]
    tasks, unit_names, offset = [], [], 0
    if scenario == "domain":
        sizes = {len(r.labels) for r in raw}
        if len(sizes) != 1:
            raise LifelongError(
                "domain-incremental needs every task to have the same number of classes; "
                f"use {option('scenario')} task or class, or equal classes per task"
            )
        unit_names = [f"#{k}" for k in range(sizes.pop())]
    for t, r in enumerate(raw):
        base = 0 if scenario == "domain" else offset
        lookup = torch.full((1 + max(r.labels),), -1, dtype=torch.long)
        lookup[list(r.labels)] = torch.arange(len(r.labels)) + base
        classes = tuple(range(base, base + len(r.labels)))
        tasks.append(Task(t, r.name, r.train_x, lookup[r.train_y], r.test_x, lookup[r.test_y], classes))
        if scenario != "domain":
            unit_names += [f"{r.name}:{names[c]}" for c in r.labels]
        offset += len(r.labels)
    n_classes = len(unit_names)
    return Stream(name, tasks, scenario, tuple(input_shape), n_classes, unit_names)
