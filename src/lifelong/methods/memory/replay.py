"""Experience replay: every training batch of the current task is mixed with a batch drawn from an
episodic memory of earlier tasks' examples.

Rehearsal in the sense of Robins 1995 ("Catastrophic forgetting, rehearsal and pseudorehearsal",
Connection Science 7(2)); with a small memory and reservoir sampling, Chaudhry et al. 2019 ("On tiny
episodic memories in continual learning", arXiv 1902.10486). With t the number of tasks seen so far,
the loss weights the current task and the replayed ones as van de Ven & Tolias do ("Three scenarios
for continual learning", arXiv 1904.07734, and their code: the new task's relative weight is 1/t):

    L = (1/t) · CE(current batch) + (1 − 1/t) · CE(replayed batch)

so every task seen so far counts equally, whatever the memory holds. Each replayed example is scored
with its own task's logit mask: its task's units in task-IL, every unit seen so far in class-IL, all
units in domain-IL. The replayed batch has the current batch's size. Both batches go through the model
in one forward pass (the same logits, half the calls: on the 3 x 50 MLP at batch 32 most of a step is
per-call overhead), except in a model with batch norm, whose statistics would then mix the two batches.

The memory (methods/memory/buffer.py) receives each task's training data once, when the task ends;
with ``reservoir`` that is the same as streaming the data through it. Defaults: 1000 examples in all
(``memory_size``), reservoir selection. Hsu et al. 2018 (arXiv 1810.12488), "naive rehearsal", use
1100 on split MNIST.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import LifelongError, option
from lifelong.methods.base import Method, cross_entropy, param
from lifelong.methods.memory.buffer import PER, POLICIES, EpisodicMemory, one_per_task
from lifelong.methods.memory.scoring import own_units

INSERT_CHUNK = 4096  # the task's data enters the memory in chunks of this many examples


@dataclasses.dataclass
class Replay(Method):
    """(1/t) CE(current) + (1 − 1/t) CE(replayed): each batch mixed with one drawn from the episodic memory."""

    name: ClassVar[str] = "replay"
    scratch: ClassVar[tuple[str, ...]] = ("_masks", "_weights")  # the current task's masks and loss weights

    memory_size: int = param(1000, "examples the episodic memory holds (in all, or per task/class)", min=1)
    memory_policy: str = param("reservoir", "which examples stay when the memory is full", choices=POLICIES)
    memory_per: str = param("total", "memory_size counts in total, per task (ring) or per class", choices=PER)

    def check(self, stream) -> None:
        """A memory split over classes must hold one example of each class the stream will show: refused
        here, before any training, rather than when the memory overflows tasks later."""
        super().check(stream)
        n_classes = len(stream.tasks[0].classes) if stream.scenario == "domain" else stream.n_classes
        by_class = self.memory_policy in ("class-balanced", "herding") and self.memory_per == "total"
        if by_class and self.memory_size < n_classes:
            raise LifelongError(
                f"replay: a {self.memory_policy} memory of {self.memory_size} examples cannot keep one of each of "
                f"the stream's {n_classes} classes; use {option('memory_size')} {n_classes} or more"
            )
        if self.memory_policy == "task-balanced":
            one_per_task(self.name, self.memory_size, len(stream))

    def prepare(self, model, stream):
        self.stream = stream
        self.memory = EpisodicMemory(
            self.memory_size,
            self.memory_policy,
            per=self.memory_per,
            n_tasks=len(stream),
            n_classes=stream.n_classes,
            seed=torch.initial_seed(),
        )
        self._generator = torch.Generator().manual_seed(torch.initial_seed() + 1)
        self._tasks_seen = 0
        # Batch norm in training mode normalises with its batch's statistics: there the two batches must
        # go through the model apart, as they always did; for every other layer one pass is the same.
        self._one_forward = not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        return model

    def before_task(self, task, model) -> None:
        self._tasks_seen += 1
        self._masks = own_units(self.stream, task)
        self._weights: dict[int, torch.Tensor] = {}  # per batch size: each example's weight in the loss

    def loss(self, model, x, y, mask):
        if len(self.memory) == 0:
            return cross_entropy(model(x), y, mask)
        n = len(y)
        old = self.memory.sample(n, self._generator)
        old_mask = None if self._masks is None else self._masks[old["task"]]
        new_weight = 1.0 / self._tasks_seen
        if not self._one_forward:
            current = cross_entropy(model(x), y, mask)
            return new_weight * current + (1.0 - new_weight) * cross_entropy(model(old["x"]), old["y"], old_mask)
        # One forward pass and one cross-entropy over both batches, each example weighted by its batch's
        # weight over the batch size: the same loss as the two means, with half the calls.
        logits = model(torch.cat([x, old["x"]]))
        if mask is not None or old_mask is not None:
            no_mask = logits.new_zeros(n, logits.shape[1])
            new_units = no_mask if mask is None else mask.expand(n, -1)
            logits = logits + torch.cat([new_units, no_mask if old_mask is None else old_mask])
        if n not in self._weights:
            new, replayed = logits.new_full((n,), new_weight / n), logits.new_full((n,), (1 - new_weight) / n)
            self._weights[n] = torch.cat([new, replayed])
        return F.cross_entropy(logits, torch.cat([y, old["y"]]), reduction="none") @ self._weights[n]

    def after_task(self, task, model) -> None:
        if self.memory_policy == "herding":  # iCaRL's selection sees a whole task at once, in feature space
            self.memory.add(task.train_x, task.train_y, task.id, features=features(model, task.train_x))
            return
        for start in range(0, len(task.train_y), INSERT_CHUNK):
            end = start + INSERT_CHUNK
            self.memory.add(task.train_x[start:end], task.train_y[start:end], task.id)

    def facts(self) -> dict:
        """The memory's policy, capacity, samples and bytes at the end of the run, for the run record."""
        return {"memory": self.memory.summary()}


@torch.no_grad()
def features(model, x: torch.Tensor) -> torch.Tensor:
    """L2-normalised features for herding, as iCaRL uses them: the model's ``features`` (the MLP's last
    hidden layer) when it has them, else the inputs themselves; in eval mode, in chunks."""
    was_training = model.training
    model.eval()
    embed = getattr(model, "features", lambda v: v.reshape(len(v), -1))
    out = torch.cat([embed(chunk) for chunk in x.split(INSERT_CHUNK)])
    model.train(was_training)
    return F.normalize(out.reshape(len(out), -1), dim=1)
