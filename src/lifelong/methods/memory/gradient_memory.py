"""What GEM and A-GEM share: a ring memory of each task's last examples, the memory's loss scored on each
example's own task units, and writing a projected gradient back before the optimizer steps."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from lifelong.methods.base import Method, cross_entropy
from lifelong.methods.memory.buffer import EpisodicMemory
from lifelong.methods.memory.scoring import own_units
from lifelong.methods.regularization.base import ParamLayout


@dataclasses.dataclass
class GradientMemory(Method):
    """The base of GEM and A-GEM: subclasses project the gradient in ``after_backward``."""

    scratch: ClassVar[tuple[str, ...]] = ("_masks",)  # the current task's: rebuilt by before_task
    memory_size: int = 256  # redefined by each subclass with its own default and help

    def prepare(self, model, stream):
        self.stream = stream
        self.layout = ParamLayout(model)
        # GEM may also take Hsu et al.'s task-balanced memory (memory_size in all); A-GEM keeps the ring.
        policy = getattr(self, "memory_policy", "ring")
        per = "task" if policy == "ring" else "total"
        self.memory = EpisodicMemory(self.memory_size, policy, per=per, n_tasks=len(stream), seed=torch.initial_seed())
        self._generator = torch.Generator().manual_seed(torch.initial_seed() + 1)
        self._projected: list[list[int]] = []  # per task: [projected steps, steps]
        return model

    def before_task(self, task, model) -> None:
        self._masks = own_units(self.stream, task)
        self._projected.append([0, 0])

    def after_task(self, task, model) -> None:
        self.memory.add(task.train_x, task.train_y, task.id)  # the ring keeps the task's last examples

    def units(self, task: torch.Tensor | int) -> torch.Tensor | None:
        """The logit mask of stored examples of ``task`` (a task id, or one per example): their own task's
        units (its head in task-IL); None in domain-IL."""
        return None if self._masks is None else self._masks[task]

    def flat(self, grads, out: torch.Tensor | None = None) -> torch.Tensor:
        """Gradients from torch.autograd.grad as one flat vector (zeros for unused parameters), written into
        ``out`` when given (a row of a buffer allocated once: no new tensor per step)."""
        params = self.layout.params
        parts = [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)]
        return torch.cat(parts) if out is None else torch.cat(parts, out=out)

    def memory_gradient(self, model, x, y, mask, out: torch.Tensor | None = None) -> torch.Tensor:
        """The flat gradient of the mean loss on stored examples ``x, y`` with logit mask ``mask`` (a row, or
        one per example, or None), computed with ``torch.autograd.grad``: the current batch's ``.grad`` is
        left untouched."""
        loss = cross_entropy(model(x), y, mask)
        return self.flat(torch.autograd.grad(loss, self.layout.params, allow_unused=True), out)

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

    def facts(self) -> dict:
        """The memory's size in samples and bytes, and how often each task's gradient was projected."""
        return {"memory": self.memory.summary(), "projection_rate": self.projection_rate()}
