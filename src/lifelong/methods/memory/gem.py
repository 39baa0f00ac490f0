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

Hsu et al.'s GEM (2018, "Re-evaluating continual learning scenarios", arXiv 1810.12488, and their code
GT-RIPL/Continual-Learning-Benchmark, ``agents/exp_replay.py``), the split-MNIST reference, is not the
paper's in two ways, each a setting here (both off by default):

- ``memory_policy`` = ``task-balanced``: ``memory_size`` examples in all, split equally over the tasks
  seen so far, a random sample of each (their 1100: all of it for task 1 while task 2 is learned);
  the paper's ``ring`` keeps ``memory_size`` per task, the last ones seen.
- ``replay``: their GEM class derives from their naive rehearsal, so it also trains on the memory: each
  batch is the current task's data mixed with as many stored examples, each half weighted ½ (their
  loader draws batches from the new data and enough copies of the memory to match it, about 1 : 1).
  The projection then acts on the gradient of that mixed loss, as in their code.

Their code runs the memory update twice per task (in GEM's ``learn_batch`` and again in the rehearsal
parent it calls), so every task holds two random halves of its share as two "tasks" with a constraint
each; here each task is one constraint on its whole share. See benchmarks/split_mnist_memory.py.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from lifelong.errors import LifelongError, option
from lifelong.methods.base import cross_entropy, param
from lifelong.methods.memory.buffer import one_per_task
from lifelong.methods.memory.gradient_memory import GradientMemory
from lifelong.methods.memory.projection import gem_project


@dataclasses.dataclass
class GEM(GradientMemory):
    """g̃ = argmin ½‖z − g‖² s.t. ⟨z, g_k⟩ ≥ 0 for every earlier task k: no memory loss may rise."""

    name: ClassVar[str] = "gem"
    scratch: ClassVar[tuple[str, ...]] = (*GradientMemory.scratch, "_blocks", "_grads")  # memory views, g_k

    memory_size: int = param(256, "examples kept per task (ring), or in all (task-balanced)", min=1)
    memory_policy: str = param(
        "ring",
        "ring: each task's last examples (the paper); task-balanced: Hsu et al.'s",
        choices=("ring", "task-balanced"),
    )
    replay: bool = param(False, "also train on stored examples, half of each batch (Hsu et al.'s GEM)")
    margin: float = param(0.5, "γ: the dual's bound v ≥ γ (the authors' memory_strength)", min=0)
    memory_batch: int | None = param(
        None, "examples per task each g_k is computed on, drawn anew each step (unset: all, as in the paper)"
    )

    def __post_init__(self):
        super().__post_init__()
        m = self.memory_batch
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise LifelongError(f"{self.name}: {option('memory_batch')} must be a whole number >= 1 (got {m!r})")

    def check(self, stream) -> None:
        super().check(stream)
        if self.memory_policy == "task-balanced":
            one_per_task(self.name, self.memory_size, len(stream))

    def loss(self, model, x, y, mask):
        if not self.replay or len(self.memory) == 0:
            return cross_entropy(model(x), y, mask)
        # Hsu et al.'s rehearsal: as many stored examples as the batch has, one forward pass for both
        # halves (their loader mixes them into one batch), each stored example on its own task's units.
        n = len(y)
        old = self.memory.sample(n, self._generator)
        logits = model(torch.cat([x, old["x"]]))
        return 0.5 * (cross_entropy(logits[:n], y, mask) + cross_entropy(logits[n:], old["y"], self.units(old["task"])))

    def before_task(self, task, model) -> None:
        super().before_task(task, model)
        # The memory changes only when a task ends: look up each earlier task's examples (ring: views)
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
