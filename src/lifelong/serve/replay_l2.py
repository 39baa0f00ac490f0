"""The learner's default method, ``replay-l2``: the library's experience replay with the library's L2
penalty, driven together through the Method hooks.

Why two methods. A served model meets both failure modes of the lecture at once: the next task's
feedback pulls the shared weights away from the old tasks (forgetting), and micro-batches are small, so
a candidate can over-fit the latest feedback. Replay (methods/memory/replay.py; Robins 1995, Chaudhry
et al. 2019) mixes every batch with one drawn from an episodic memory of earlier tasks' feedback, which
is what works in domain- and class-incremental streams (van de Ven & Tolias 2019, arXiv 1904.07734,
Table 4). L2 (methods/regularization/l2.py; the "L2" baseline of Kirkpatrick et al. 2017) pulls the
weights towards those served when the previous task closed, which limits how far one candidate can drift
between two evaluations. Both are the library's own classes, used unchanged: the library has no method
composition, so this class is the smallest faithful one, a Method whose hooks call both in fit()'s order:

- ``prepare`` / ``before_task`` / ``after_task``: both (the memory receives a task's feedback when the task
  closes; L2's anchor θ* becomes the weights at that moment);
- ``on_optimizer``: L2 (it picks its proximal step for plain SGD, see regularization/base.py);
- ``loss``: Replay's (1/t) CE(current) + (1 − 1/t) CE(replayed), plus L2's penalty when L2 takes the
  explicit step (with momentum or Adam); with plain SGD the penalty is applied exactly by L2's proximal
  step in ``after_step`` instead;
- ``after_step``: L2 (the proximal step); Replay has none.

The settings are Replay's (``memory_size``, ``memory_policy``, ``memory_per``) and L2's ``lam``, with
their defaults: 1000 examples, reservoir, λ = 0.01.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from lifelong.methods.base import Method, param
from lifelong.methods.memory.buffer import PER, POLICIES
from lifelong.methods.memory.replay import Replay
from lifelong.methods.regularization.l2 import L2

NAME = "replay-l2"


@dataclasses.dataclass
class ReplayL2(Method):
    """Replay's mixed batches plus L2's pull towards the weights served when the previous task closed."""

    name: ClassVar[str] = NAME
    scenarios: ClassVar[tuple[str, ...]] = tuple(s for s in Replay.scenarios if s in L2.scenarios)

    memory_size: int = param(1000, "examples the episodic memory holds (in all, or per task/class)", min=1)
    memory_policy: str = param("reservoir", "which examples stay when the memory is full", choices=POLICIES)
    memory_per: str = param("total", "memory_size counts in total, per task (ring) or per class", choices=PER)
    lam: float = param(0.01, "λ: strength of L2's pull towards the previous task's weights", min=0)

    def __post_init__(self):
        super().__post_init__()
        self.replay = Replay(self.memory_size, self.memory_policy, self.memory_per)
        self.anchor = L2(lam=self.lam)

    def check(self, stream) -> None:
        self.replay.check(stream)
        self.anchor.check(stream)

    def prepare(self, model, stream):
        return self.anchor.prepare(self.replay.prepare(model, stream), stream)

    def before_task(self, task, model) -> None:
        self.replay.before_task(task, model)
        self.anchor.before_task(task, model)

    def on_optimizer(self, optimizer) -> None:
        self.anchor.on_optimizer(optimizer)

    def loss(self, model, x, y, mask):
        loss = self.replay.loss(model, x, y, mask)
        return loss + self.anchor.penalty(model) if self.anchor.in_loss else loss

    def after_step(self, model, task) -> None:
        self.anchor.after_step(model, task)

    def after_task(self, task, model) -> None:
        self.replay.after_task(task, model)
        self.anchor.after_task(task, model)

    def facts(self) -> dict:
        return self.replay.facts()
