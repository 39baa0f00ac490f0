"""The reference points of the lecture: fine-tuning (lower bound), joint training (upper bound),
cumulative (incremental joint) training and one independent model per task."""

from __future__ import annotations

import copy
import dataclasses
from typing import ClassVar

import torch
from torch import nn
from torch.func import functional_call

from lifelong.methods.base import Method


@dataclasses.dataclass
class Finetune(Method):
    """Plain sequential training on each task in turn: catastrophic forgetting, the lower bound."""

    name: ClassVar[str] = "finetune"


@dataclasses.dataclass
class Joint(Method):
    """Offline multi-task training on all tasks at once: the upper bound.

    There is one stage, so fit() fills every row R[1..T] with the one evaluation after it; BWT is 0
    by construction and the row to read is the last.
    """

    name: ClassVar[str] = "joint"

    def stages(self, n_tasks: int) -> list[list[int]]:
        return [list(range(n_tasks))]


@dataclasses.dataclass
class Cumulative(Method):
    """Incremental joint training: at task t, train on the data of tasks 1..t (all data seen so far)."""

    name: ClassVar[str] = "cumulative"

    def stages(self, n_tasks: int) -> list[list[int]]:
        return [list(range(t + 1)) for t in range(n_tasks)]


@dataclasses.dataclass
class Independent(Method):
    """One fresh model per task, each trained on its task alone; task t is tested with model t.

    It needs the task identity at test time (to choose the model), so it is a reference point for
    task- and domain-incremental streams, not a class-incremental learner. A task not trained yet is
    tested with a freshly initialised model, so R[i][j] for j > i is random-init accuracy.
    """

    name: ClassVar[str] = "independent"
    scenarios: ClassVar[tuple[str, ...]] = ("task", "domain")
    scenarios_why: ClassVar[str] = "it tests task t with model t, so it needs the task's identity at test time"

    def prepare(self, model: nn.Module, stream) -> nn.Module:
        self.initial = copy.deepcopy(model.state_dict())
        self.models: dict[int, dict[str, torch.Tensor]] = {}
        return model

    def before_task(self, task, model: nn.Module) -> None:
        model.load_state_dict(self.initial)  # a fresh model: the same initialisation for every task

    def after_task(self, task, model: nn.Module) -> None:
        self.models[task.id] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def predict(self, model: nn.Module, x: torch.Tensor, task) -> torch.Tensor:
        return functional_call(model, self.models.get(task.id, self.initial), (x,))
