"""What GEM and A-GEM share: a ring memory of each task's last examples, the memory's loss scored on each
example's own task units, and writing a projected gradient back before the optimizer steps."""

from __future__ import annotations

import dataclasses

import torch

from lifelong.methods.base import Method
from lifelong.methods.memory.buffer import EpisodicMemory
from lifelong.methods.memory.scoring import memory_losses, own_units
from lifelong.methods.regularization.base import ParamLayout


@dataclasses.dataclass
class GradientMemory(Method):
    """The base of GEM and A-GEM: subclasses project the gradient in ``after_backward``."""

    memory_size: int = 256  # redefined by each subclass with its own default and help

    def prepare(self, model, stream):
        self.stream = stream
        self.layout = ParamLayout(model)
        self.memory = EpisodicMemory(self.memory_size, "ring", per="task", n_tasks=len(stream))
        self._generator = torch.Generator().manual_seed(torch.initial_seed() + 1)
        self._projected: list[list[int]] = []  # per task: [projected steps, steps]
        return model

    def before_task(self, task, model) -> None:
        self._masks = own_units(self.stream, task)
        self._projected.append([0, 0])

    def after_task(self, task, model) -> None:
        self.memory.add(task.train_x, task.train_y, task.id)  # the ring keeps the task's last examples

    def memory_losses(self, model, items: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each stored example's loss, on its own task's units (its head in task-IL)."""
        return memory_losses(model, items, self._masks)

    def flat(self, grads, batch: tuple[int, ...] = ()) -> torch.Tensor:
        """Gradients from torch.autograd.grad as flat vectors (zeros for unused parameters); ``batch`` are
        the leading dimensions of batched gradients (one per earlier task for GEM)."""
        parts = [
            (g if g is not None else p.new_zeros(*batch, *p.shape)).reshape(*batch, -1)
            for g, p in zip(grads, self.layout.params, strict=True)
        ]
        return torch.cat(parts, dim=-1)

    def step_along(self, projection) -> None:
        """Count the step, and write a projected gradient back for the optimizer to use."""
        self._projected[-1][1] += 1
        if not projection.active:
            return
        self._projected[-1][0] += 1
        for p, value in zip(self.layout.params, self.layout.views(projection.grad), strict=True):
            if p.grad is None:
                p.grad = value.clone()
            else:
                p.grad.copy_(value)

    def projection_rate(self) -> list[float]:
        """For each task learned so far, the fraction of its steps whose gradient was projected."""
        return [done / steps if steps else 0.0 for done, steps in self._projected]
