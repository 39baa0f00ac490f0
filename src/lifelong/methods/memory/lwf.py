"""LwF: learning without forgetting, by distilling the previous model's outputs on the new task's inputs.

Li & Hoiem 2016/2017 ("Learning without Forgetting", ECCV / TPAMI, arXiv 1606.09282): no old data is
kept. Before a new task, the network's answers for the *old* tasks on the *new* task's inputs are
recorded; while the new task is learned, a distillation loss (Hinton et al. 2015, methods/memory/
distillation.py) keeps the old outputs close to those recordings.

This file follows van de Ven & Tolias 2019 ("Three scenarios for continual learning", arXiv 1904.07734,
and their code), the numbers this library reproduces (split MNIST, Table 4: 99.57 / 71.50 / 23.85 % for
task / domain / class-IL). With t the number of tasks seen so far, the current one included:

    L = (1/t) · CE(current batch, its units) + (1 − 1/t) · KD(current model, previous model)

where KD is the distillation with temperature T (T = 2) on these units:

- task-IL:   each earlier task's own head, one KD per head, averaged over the t − 1 earlier tasks;
- class-IL:  the targets are the previous model's outputs on the classes seen up to task t − 1, the
  current model is scored on every class seen so far, the new task's too: the targets put no mass on
  the new classes (van de Ven's zero padding, ``loss_fn_kd``), so the KD also pushes the new classes
  down on the new inputs (one KD). Scored on the old classes alone, the KD cannot do that: split MNIST
  class-IL then ends at 19.9 % instead of 23.85 (benchmarks/split_mnist_memory.py, 5 seeds);
- domain-IL: all units (one KD).

The previous model is a frozen copy of the network taken at the end of each task (one copy at a time:
the memory LwF spends is one model). One no-grad forward of it per batch gives the targets of every head.

Where this differs from Li & Hoiem:

- weighting: they minimise L_new + λ_o · L_old with λ_o = 1; here (1/t, 1 − 1/t), so every task seen so
  far counts equally (van de Ven). ``weight=λ`` gives theirs, CE + λ · KD (with KD as above: averaged
  over the earlier heads in task-IL, where Li & Hoiem add one term per old task);
- KD is multiplied by T² (Hinton's scaling, as van de Ven's code does); Li & Hoiem's L_old is not;
- they record the old outputs once, on the new task's data, before training; the frozen copy gives
  the same targets, computed per batch (no storage of N × C responses);
- no warm-up (Li & Hoiem first train the new head alone with the shared layers frozen) and no separate
  weight decay term (use ``weight_decay``);
- their setting is multi-head (a new classifier per task, i.e. task-IL); the class- and domain-IL
  versions above are van de Ven's.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import ClassVar

import torch

from lifelong.errors import LifelongError, option
from lifelong.methods.base import Method, cross_entropy, param
from lifelong.methods.memory.distillation import distillation


@dataclasses.dataclass
class LwF(Method):
    """(1/t) CE(current) + (1 − 1/t) KD(previous model's outputs on the new inputs): no data kept."""

    name: ClassVar[str] = "lwf"
    scratch: ClassVar[tuple[str, ...]] = ("_distilled",)  # the current task's distilled units
    known_failures: ClassVar[dict[str, str]] = {
        "class": "distilling the previous model's outputs on the new task's inputs keeps what it said about "
        "old classes but cannot teach it to tell them apart from the new ones; LwF scores 23.85 % on class-IL "
        "split MNIST (van de Ven & Tolias 2019, arXiv 1904.07734, Table 4)"
    }

    # Bounds are checked in __post_init__: the base's `min` is inclusive (T = 0 must be refused) and
    # cannot be compared with None (weight's "unset").
    temperature: float = param(2.0, "T: distillation temperature, > 0 (Li & Hoiem and van de Ven use 2)")
    weight: float | None = param(None, "λ ≥ 0: CE + λ·KD (Li & Hoiem's λ_o, their 1); unset: (1/t)CE + (1−1/t)KD")

    def __post_init__(self):
        super().__post_init__()  # types first: the comparisons below need numbers
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise LifelongError(
                f"{self.name}: {option('temperature')} must be a finite number > 0 (got {self.temperature!r})"
            )
        if self.weight is not None and not (self.weight >= 0 and math.isfinite(self.weight)):
            raise LifelongError(
                f"{self.name}: {option('weight')} must be a finite number >= 0, or unset for van de Ven's "
                f"1/t weighting (got {self.weight!r})"
            )

    def prepare(self, model, stream):
        self.stream = stream
        self.previous = None  # the frozen copy of the model at the end of the last task
        self._learned: list[int] = []  # ids of the tasks learned so far, in order
        return model

    def before_task(self, task, model) -> None:
        self._distilled = self._distilled_units(task) if self._learned else None

    def _distilled_units(self, task) -> torch.Tensor | None:
        """The additive logit masks of the distilled units, one row per KD term: each earlier head
        (task-IL), the classes seen up to the previous task (class-IL); None: all units (domain-IL)."""
        last = self._learned[-1]
        masks = self.stream.train_masks([last])  # class-IL: every row holds the units seen up to `last`
        if masks is None:
            return None
        masks = masks.to(task.train_x.device)
        return masks[self._learned] if self.stream.scenario == "task" else masks[last : last + 1]

    def loss(self, model, x, y, mask):
        logits = model(x)
        current = cross_entropy(logits, y, mask)
        if self.previous is None:
            return current
        with torch.no_grad():
            old = self.previous(x)  # one forward serves every head
        kd = self.distill(logits, old, mask)
        if self.weight is not None:
            return current + self.weight * kd
        new_weight = 1.0 / (len(self._learned) + 1)
        return new_weight * current + (1.0 - new_weight) * kd

    def distill(self, logits: torch.Tensor, old: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """KD on the distilled units, averaged over the KD terms (the earlier heads in task-IL); in class-IL
        the current model is scored under ``mask``, the current task's units (every class seen so far)."""
        masks = self._distilled
        if masks is None:
            return distillation(logits, old, self.temperature)
        if self.stream.scenario == "class":
            return distillation(logits, old + masks[0], self.temperature, mask)
        if len(masks) == 1:
            return distillation(logits, old, self.temperature, masks[0])
        # Every head in one call: the batch repeated once per head, each copy under its head's mask. The
        # mean over the H·B rows is the mean over heads of each head's batch mean (H small calls cost more).
        h, b = len(masks), len(logits)
        return distillation(logits.repeat(h, 1), old.repeat(h, 1), self.temperature, masks.repeat_interleave(b, 0))

    def after_task(self, task, model) -> None:
        self._learned.append(task.id)
        self.previous = copy.deepcopy(model).eval().requires_grad_(False)
        for p in self.previous.parameters():  # deepcopy copies the gradients too: they are not needed
            p.grad = None

    def facts(self) -> dict:
        """The memory LwF spends: one stored model (its parameters and buffers, in bytes)."""
        if getattr(self, "previous", None) is None:
            return {"stored_models": 0, "bytes": 0}
        tensors = [*self.previous.parameters(), *self.previous.buffers()]
        return {"stored_models": 1, "bytes": sum(t.numel() * t.element_size() for t in tensors)}
