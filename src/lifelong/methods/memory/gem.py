"""GEM: gradient episodic memory.

Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for continual learning", NeurIPS, arXiv 1706.08840,
eq. 10–13. Each earlier task k keeps an episodic memory M_k; a step may not increase any of their
losses. With g the current batch's gradient and g_k the gradient of the loss on M_k, if some
⟨g, g_k⟩ < 0 the step follows the closest vector g̃ to g with ⟨g̃, g_k⟩ ≥ 0 for every k, found by
solving the QP's dual (``gem_project``, methods/memory/projection.py, exact; with the authors'
``margin`` γ, their memory_strength: the dual's bound v ≥ γ).

Each g_k is computed from task k's own stored examples only: one forward and one backward pass over
each task's block, so all of them together cost one forward and one backward pass over the memory.
(One forward over the whole memory with a batched backward over t one-hot cotangents, the first
version, sends each of the t backward passes through every stored example; with torch.func's vmap
over tasks the work is the same as the loop's but slower on CPU. Measured at 4 x 256 MNIST examples,
3 x 50 MLP, one thread, CPU time: loop 3.7 ms, batched backward 10.2 ms, vmap 5.4 ms.) Each stored
example is scored on its own task's units. Memory: each task's last ``memory_size`` training examples
(the paper keeps the last ones it saw). Defaults: 256 per task and γ = 0.5, the paper's MNIST
settings. ``projection_rate()`` gives, for each task, the fraction of steps whose gradient was projected.

Cost. While task k is learned every step runs a forward and a backward pass over all (k − 1) · 256
stored examples, 8 (k − 1) times the examples of a batch of 32; over 5 tasks that is 17 times
fine-tuning's arithmetic, which one step's fixed costs at batch 32 cannot hide: on the 5-task
permuted MNIST of benchmarks/memory_methods_speed.py GEM takes about 7 times fine-tuning's time, the
issue's target is 2. Checking first whether any ⟨g, g_k⟩ < 0 (forward-mode derivatives of the memory
losses along g), to skip the gradients when no constraint is violated (60–85 % of the steps there),
does not pay: that check costs more than the gradients themselves (5 ms against 3.7 ms above), and
the gradients give every ⟨g, g_k⟩ for free.

Deviation from the paper, off by default: ``memory_batch`` = m computes each g_k on m examples drawn
at random (without replacement, anew each step) from task k's memory instead of all of them; a
stochastic estimate of g_k, so the constraints hold for that draw, not for the whole memory. It makes
the cost per step independent of ``memory_size``, not of the number of earlier tasks (one forward and
backward pass each): 32 per task takes 3.8 times fine-tuning's time on the benchmark's work (the
default 7.4). None (the default) uses every stored example, as the paper does.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from lifelong.errors import LifelongError, option
from lifelong.methods.base import param
from lifelong.methods.memory.gradient_memory import GradientMemory
from lifelong.methods.memory.projection import gem_project


@dataclasses.dataclass
class GEM(GradientMemory):
    """g̃ = argmin ½‖z − g‖² s.t. ⟨z, g_k⟩ ≥ 0 for every earlier task k: no memory loss may rise."""

    name: ClassVar[str] = "gem"

    memory_size: int = param(256, "examples kept per task (its last ones)", min=1)
    margin: float = param(0.5, "γ: the dual's bound v ≥ γ (the authors' memory_strength)", min=0)
    memory_batch: int | None = param(
        None, "examples per task each g_k is computed on, drawn anew each step (unset: all, as in the paper)"
    )

    def __post_init__(self):
        super().__post_init__()
        m = self.memory_batch
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise LifelongError(f"{self.name}: {option('memory_batch')} must be a whole number >= 1 (got {m!r})")

    def before_task(self, task, model) -> None:
        super().before_task(task, model)
        # The memory changes only when a task ends: look up each earlier task's slots (views, no copy)
        # and allocate the (t, p) matrix of memory gradients once per task, not once per step.
        tasks = self.memory.items()["task"].unique().tolist() if len(self.memory) else []
        self._blocks = [(self.memory.items(task=k), self.units(k)) for k in tasks]
        self._grads = torch.empty(len(tasks), self.layout.size, device=self.layout.params[0].device)

    def after_backward(self, model, task) -> None:
        if not self._blocks:
            return
        for row, (items, mask) in zip(self._grads, self._blocks, strict=True):  # g_k: task k's own examples only
            x, y = items["x"], items["y"]
            if self.memory_batch is not None and self.memory_batch < len(y):  # the deviation: a random subset
                pick = torch.randperm(len(y), generator=self._generator)[: self.memory_batch].to(y.device)
                x, y = x.index_select(0, pick), y.index_select(0, pick)
            self.memory_gradient(model, x, y, mask, out=row)
        self.step_along(gem_project(self.layout.flat_grad(), self._grads, self.margin))
