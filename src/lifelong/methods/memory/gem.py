"""GEM: gradient episodic memory.

Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for continual learning", NeurIPS, arXiv 1706.08840,
eq. 10–13. Each earlier task k keeps an episodic memory M_k; a step may not increase any of their
losses. With g the current batch's gradient and g_k the gradient of the loss on M_k, if some
⟨g, g_k⟩ < 0 the step follows the closest vector g̃ to g with ⟨g̃, g_k⟩ ≥ 0 for every k, found by
solving the QP's dual (``gem_project``, methods/memory/projection.py, exact; with the authors'
``margin`` γ, their memory_strength: the dual's bound v ≥ γ).

All t memory gradients come from one forward pass over the stored examples and one batched backward
pass (``is_grads_batched`` over the t per-task mean losses), not t separate passes. Each stored example
is scored on its own task's units. Memory: each task's last ``memory_size`` training examples (the
paper keeps the last ones it saw). Defaults: 256 per task and γ = 0.5, the paper's MNIST settings.
``projection_rate()`` gives, for each task, the fraction of steps whose gradient was projected.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from lifelong.methods.base import param
from lifelong.methods.memory.gradient_memory import GradientMemory
from lifelong.methods.memory.projection import gem_project


@dataclasses.dataclass
class GEM(GradientMemory):
    """g̃ = argmin ½‖z − g‖² s.t. ⟨z, g_k⟩ ≥ 0 for every earlier task k: no memory loss may rise."""

    name: ClassVar[str] = "gem"

    memory_size: int = param(256, "examples kept per task (its last ones)", min=1)
    margin: float = param(0.5, "γ: the dual's bound v ≥ γ (the authors' memory_strength)", min=0)

    def after_backward(self, model, task) -> None:
        if len(self.memory) == 0:
            return
        items = self.memory.items()
        tasks = items["task"].unique()  # the earlier tasks, sorted
        losses = self.memory_losses(model, items)
        which = (items["task"][None] == tasks[:, None]).float()  # (t, n): example n belongs to task k
        per_task = which @ losses / which.sum(1)  # each earlier task's mean memory loss
        eye = torch.eye(len(tasks), device=losses.device)
        grads = torch.autograd.grad(per_task, self.layout.params, eye, is_grads_batched=True, allow_unused=True)
        self.step_along(gem_project(self.layout.flat_grad(), self.flat(grads, (len(tasks),)), self.margin))
