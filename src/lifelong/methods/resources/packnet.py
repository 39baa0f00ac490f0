"""PackNet (Mallya & Lazebnik 2018, "PackNet: Adding Multiple Tasks to a Single Network by Iterative
Pruning", CVPR, arXiv 1711.05769; the authors' code: arunmallya/packnet).

One fixed network holds every task. Each weight is free or owned by exactly one task (``ownership.py``).
Task k trains every free weight; then, in every layer, the fraction ``prune`` of the weights it trained with
the smallest magnitude is pruned: set to zero and freed for the tasks after it. The network is retrained
briefly with the pruned weights held at zero, and the weights task k kept are frozen for good. Task k's
binary mask is "owned by tasks 0..k" (tasks count from 0): at test time it computes with those weights
only, so nothing later tasks learn reaches it and its outputs stay bit-identical (BWT exactly 0). The
price is capacity: every task leaves the next ones fewer weights.

As in the paper: pruning by magnitude, per layer, among the task's own weights only (the authors' code,
``round(prune · n)`` weights per layer); the biases are trained with the first task and frozen after it
(the paper's default); retraining uses the same optimizer with a tenth of the learning rate (the authors'
10⁻⁴ after 10⁻³). Choices and deviations:

- The MLP (``lifelong.models.MLP``) only. Task-IL only: its one output layer is a multi-head network in
  which each task owns its output units; a task owns its units' rows and biases outright (the paper's
  per-task classifier): trained with the task, frozen after it, never pruned. Task k's test-time mask
  covers the output layer too, so the other tasks' units give it logit 0.
- ``prune`` unset shares the free weights equally among the tasks left: task k of T keeps 1/(T − k) of the
  free weights it trained (prunes 1 − 1/(T − k); the last task keeps all). The paper picks 50% or 75% by hand.
- ``retrain_epochs`` defaults to 2 epochs of the task's data (the authors retrain half as long as they
  train: 10 of 20 epochs; fit()'s default is 5), in batches of fit()'s size.
- The kept weights are exactly the ``n − round(prune · n)`` largest-|w| ones (the authors cut at the k-th
  value, which prunes more on ties). Released weights stay zero and the next task trains them from zero
  (as the authors' code does).
- A task not learned yet is answered by the network as it stands (every weight, free ones included): what
  it will start training from, so R[0] is the untrained network's accuracy.
- Freezing is exact: frozen gradients are zeroed after backward and frozen values restored after each
  step, so weight decay, momentum and Adam cannot move them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from lifelong.errors import LifelongError, option, warn
from lifelong.methods.base import Method, cross_entropy, param
from lifelong.methods.resources import TASK_IL_ONLY
from lifelong.methods.resources.ownership import Freezer, Ownership, forward, linears
from lifelong.models import MLP


def keep_largest(weight: torch.Tensor, mine: torch.Tensor, prune: float) -> torch.Tensor:
    """The entries of ``mine`` (a boolean mask) to keep: all but the ``round(prune · n)`` of the n with the
    smallest magnitude."""
    n = int(mine.sum())
    n_keep = n - round(prune * n)
    keep = torch.zeros_like(mine)
    if n_keep > 0:
        where = mine.flatten().nonzero().squeeze(1)
        top = weight.flatten()[where].abs().topk(n_keep).indices
        keep.view(-1)[where[top]] = True
    return keep


@dataclasses.dataclass
class PackNet(Method):
    """PackNet (MLP only): prune each task's weights by magnitude, retrain, freeze; a binary mask per task."""

    name: ClassVar[str] = "packnet"
    scenarios: ClassVar[tuple[str, ...]] = ("task",)
    scenarios_why: ClassVar[str] = TASK_IL_ONLY
    scratch: ClassVar[tuple[str, ...]] = ("_usable", "_freezer")  # the current task's masks and frozen values

    prune: float | None = param(
        None, "fraction of each task's weights pruned per layer, in [0, 1); unset: 1 - 1/(tasks left)"
    )
    retrain_epochs: int = param(2, "epochs of retraining after pruning (0: none)", min=0)
    retrain_lr: float | None = param(None, "> 0: learning rate of the retraining; unset: a tenth of the task's")

    def __post_init__(self):
        super().__post_init__()
        if self.prune is not None and not 0 <= self.prune < 1:
            raise LifelongError(f"packnet: {option('prune')} must be in [0, 1), or unset (got {self.prune!r})")
        if self.retrain_lr is not None and not 0 < self.retrain_lr < math.inf:
            raise LifelongError(
                f"packnet: {option('retrain_lr')} must be a finite number > 0 (got {self.retrain_lr!r})"
            )

    def prepare(self, model, stream):
        if not isinstance(model, MLP):
            raise LifelongError(f"packnet works on lifelong.models.MLP only (got {type(model).__name__}); use an MLP")
        self.stream, self.owners = stream, Ownership(model)
        self.hidden = range(len(self.owners) - 1)  # the prunable layers; the last is the output layer
        self.learned: list[int] = []  # task ids, in the order learned
        self.stats: list[dict] = []
        self._task, self._optimizer, self._batch_size = None, None, None
        self._g = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, ())))  # fit() seeded the global RNG
        return model

    # ---- training a task, driven by fit() --------------------------------------------------------

    def before_task(self, task, model) -> None:
        if self.owners.free_fraction(self.hidden) == 0:
            warn(f"packnet: no free weights are left for task {task.name}; only its output units will learn")
        self.owners.claim_free(task.id, self.hidden)  # the paper's finetuning mask: every free weight
        self.owners.claim_units(task.id, len(self.owners) - 1, task.classes)
        self._task = task
        self._start(model)

    def _start(self, model) -> None:
        """The masks of the task being trained, and a freezer for everything it does not own."""
        self._usable = self.owners.usable(self._task.id, training=True)
        self._freezer = Freezer(model, self.owners.trainable(self._task.id))

    def on_optimizer(self, optimizer) -> None:
        self._optimizer = optimizer  # the retraining uses one of the same kind and settings

    def loss(self, model, x, y, mask):
        self._batch_size = self._batch_size or len(y)
        return cross_entropy(forward(model, x, self._usable), y, mask)

    def after_backward(self, model, task) -> None:
        self._freezer.zero_grads(model)

    def after_step(self, model, task) -> None:
        self._freezer.restore(model)

    # ---- pruning and retraining, after fit()'s loop ----------------------------------------------

    def after_task(self, task, model) -> None:
        prune = self.prune if self.prune is not None else 1 - 1 / max(len(self.stream) - task.id, 1)
        trained = self.owners.counts(task.id)
        with torch.no_grad():
            for i in self.hidden:
                lin, mine = linears(model)[i], self.owners.weight[i] == task.id + 1
                self.owners.release(model, i, mine & ~keep_largest(lin.weight, mine, prune))
        if sum(trained) > sum(self.owners.counts(task.id)) and self.retrain_epochs > 0:
            self._start(model)  # the released weights are free now: frozen at zero
            self._retrain(model, task)
        self.learned.append(task.id)
        self.stats.append({"task": task.name, "prune": prune, "weights": self.owners.counts(task.id)})
        self._task = None

    def _retrain(self, model, task) -> None:
        kind, settings = torch.optim.SGD, {"lr": 0.1}
        if self._optimizer is not None:
            kind, settings = type(self._optimizer), dict(self._optimizer.defaults)
        settings["lr"] = self.retrain_lr or settings["lr"] / 10
        optimizer = kind(model.parameters(), **settings)
        units = self.stream.train_masks([task.id])[task.id].to(task.train_x.device)
        n = len(task.train_y)
        for _ in range(self.retrain_epochs):
            order = torch.randperm(n, generator=self._g).to(task.train_x.device)
            for idx in order.split(self._batch_size or 32):
                loss = cross_entropy(forward(model, task.train_x[idx], self._usable), task.train_y[idx], units)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._freezer.zero_grads(model)
                optimizer.step()
                self._freezer.restore(model)

    # ---- test time and accounting ------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, model, x, task):
        if task.id in self.learned:  # its binary mask: the weights of tasks up to it
            return forward(model, x, self.owners.usable(task.id))
        if self._task is not None and task.id == self._task.id:  # being learned (per-epoch curves)
            return forward(model, x, self._usable)
        return model(x)  # not learned yet: the network it will start from

    def capacity(self, model) -> dict:
        out = super().capacity(model)
        if hasattr(self, "owners"):  # stored_bytes: the owner tensors (Ownership.nbytes)
            out["free_fraction"] = self.owners.free_fraction(self.hidden)
        return out

    def facts(self) -> dict:
        """Per task learned: the fraction pruned and the weights it owns per layer (the output layer last)."""
        if not getattr(self, "stats", None):
            return {}
        return {"prune": [s["prune"] for s in self.stats], "owned_weights": [s["weights"] for s in self.stats]}
