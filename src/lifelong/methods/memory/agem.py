"""A-GEM: averaged gradient episodic memory.

Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, "Efficient lifelong learning with A-GEM", ICLR,
arXiv 1812.00420, eq. 11. GEM asks that no earlier task's memory loss rises; A-GEM asks only that the
average memory loss does not rise. With g the gradient of the current batch and g_ref the gradient of
the loss on a batch drawn from the memories of all earlier tasks:

    g̃ = g − (⟨g, g_ref⟩ / ⟨g_ref, g_ref⟩) g_ref     if ⟨g, g_ref⟩ < 0,     else g.

The projection is ``agem_project`` (methods/memory/projection.py), applied in ``after_backward`` to the
flat gradient of all trainable parameters, so the optimizer steps along g̃. g_ref is computed with
``torch.autograd.grad``, which leaves the current batch's ``.grad`` untouched until g̃ is written back.
Each memory example is scored on its own task's units, as it was trained (its head in task-IL).

Memory: each task keeps its last ``memory_size`` training examples (a ring buffer per task, as in the
paper's and GEM's episodic memory); the reference batch is ``reference_batch`` examples drawn uniformly
from the memories of all earlier tasks. Defaults: 250 examples per task and a reference batch of 256,
the paper's MNIST setting. ``projection_rate()`` gives, for each task, the fraction of steps whose
gradient was projected.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F

from lifelong.methods.base import Method, param
from lifelong.methods.memory.buffer import EpisodicMemory
from lifelong.methods.memory.projection import agem_project
from lifelong.methods.regularization.base import ParamLayout


@dataclasses.dataclass
class AGEM(Method):
    """g̃ = g − (⟨g, g_ref⟩ / ‖g_ref‖²) g_ref when ⟨g, g_ref⟩ < 0: the average memory loss may not rise."""

    name: ClassVar[str] = "agem"

    memory_size: int = param(250, "examples kept per task (its last ones)", min=1)
    reference_batch: int = param(256, "memory examples the reference gradient g_ref is computed on", min=1)

    def prepare(self, model, stream):
        self.stream = stream
        self.layout = ParamLayout(model)
        self.memory = EpisodicMemory(self.memory_size, "ring", per="task", n_tasks=len(stream))
        self._generator = torch.Generator().manual_seed(torch.initial_seed() + 1)
        self._projected: list[list[int]] = []  # per task: [projected steps, steps]
        return model

    def before_task(self, task, model) -> None:
        masks = self.stream.train_masks([task.id])  # one row per task: the units its examples are scored on
        self._masks = None if masks is None else masks.to(task.train_x.device)
        self._projected.append([0, 0])

    def after_backward(self, model, task) -> None:
        if len(self.memory) == 0:
            return
        old = self.memory.sample(min(self.reference_batch, len(self.memory)), self._generator)
        logits = model(old["x"])
        if self._masks is not None:
            logits = logits + self._masks[old["task"]]
        grads = torch.autograd.grad(F.cross_entropy(logits, old["y"]), self.layout.params, allow_unused=True)
        g_ref = torch.cat(
            [
                (gr if gr is not None else torch.zeros_like(p)).reshape(-1)
                for gr, p in zip(grads, self.layout.params, strict=True)
            ]
        )
        projection = agem_project(self.layout.flat_grad(), g_ref)
        self._projected[-1][1] += 1
        if projection.active:
            self._projected[-1][0] += 1
            for p, value in zip(self.layout.params, self.layout.views(projection.grad), strict=True):
                if p.grad is None:
                    p.grad = value.clone()
                else:
                    p.grad.copy_(value)

    def after_task(self, task, model) -> None:
        self.memory.add(task.train_x, task.train_y, task.id)

    def projection_rate(self) -> list[float]:
        """For each task learned so far, the fraction of its steps whose gradient was projected."""
        return [done / steps if steps else 0.0 for done, steps in self._projected]
