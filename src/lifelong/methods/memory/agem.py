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
(with replacement) from the memories of all earlier tasks. Defaults: 250 examples per task and a
reference batch of 256, the paper's MNIST setting. ``projection_rate()`` gives, for each task, the
fraction of steps whose gradient was projected.

Cost: from the second task on, every step adds a forward and a backward pass over the reference batch,
8 times the examples of a batch of 32. Most steps are not projected, but knowing that needs ⟨g, g_ref⟩,
and its forward-mode derivative costs as much as g_ref itself; so a smaller ``reference_batch`` is
the only way to a cheaper step, at the price of a noisier g_ref (benchmarks/memory_methods_speed.py).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from lifelong.methods.base import param
from lifelong.methods.memory.gradient_memory import GradientMemory
from lifelong.methods.memory.projection import agem_project


@dataclasses.dataclass
class AGEM(GradientMemory):
    """g̃ = g − (⟨g, g_ref⟩ / ‖g_ref‖²) g_ref when ⟨g, g_ref⟩ < 0: the average memory loss may not rise."""

    name: ClassVar[str] = "agem"

    memory_size: int = param(250, "examples kept per task (its last ones)", min=1)
    reference_batch: int = param(256, "memory examples the reference gradient g_ref is computed on", min=1)

    def after_backward(self, model, task) -> None:
        if len(self.memory) == 0:
            return
        items = self.memory.sample(min(self.reference_batch, len(self.memory)), self._generator)
        g_ref = self.memory_gradient(model, items["x"], items["y"], self.units(items["task"]))
        self.step_along(agem_project(self.layout.flat_grad(), g_ref))
