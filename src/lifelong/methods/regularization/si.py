"""Synaptic intelligence (SI): importance = each parameter's share of the drop in the task loss.

Zenke, Poole & Ganguli 2017, "Continual learning through synaptic intelligence", ICML, arXiv 1703.04200:

    ω_i^t = Σ_steps −g_i(s) Δθ_i(s)                 path integral over task t's training steps s,
                                                    g = ∂L_t/∂θ (the task loss, not the penalty),
                                                    Δθ(s) = the parameter change of step s
    Ω_i^t = Ω_i^{t−1} + ω_i^t / ((Δ_i^t)² + ξ),     Δ_i^t = θ_i(end of t) − θ_i(start of t)
    L'(θ) = L(θ) + c Σ_i Ω_i (θ_i − θ*_i)²,         θ* = the parameters after the previous task

c is ``lam`` here (the paper has no 1/2, as here). The path integral is exact for the update
actually made: Δθ is read after each step (SGD, momentum or Adam, and after the proximal pull of
regularization/base.py when that step is used), g before it; g is the task loss's gradient (with the
explicit step, the total gradient minus the penalty's 2cΩ(θ − θ*)), so the penalty adds no importance.

Defaults: c = 0.1 and ξ = 0.1, the permuted-MNIST setting (the paper's Fig. 4 uses c = 0.1; its
authors' code, github.com/ganguli-lab/pathint, fig_permuted_mnist, sets xi = 0.1 and sweeps c over
0, 0.01, 0.1, 1; it uses ξ = 1e-3 for split CIFAR). c = 0.1 is also the best validation ACC of
``lifelong tune --param lam`` on the main job's stream (78.2 %; benchmarks/main_job_search.py).

Deviation (as the authors' code, not the paper's equations): the accumulated Ω is clamped at zero,
Ω ← max(0, Ω + ω/(Δ² + ξ)). With momentum, Adam or the penalty a step can move against the task
gradient, making a contribution negative; a negative Ω would reward moving away from the anchor.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from lifelong.methods.base import param
from lifelong.methods.regularization.base import Regularizer


@dataclasses.dataclass
class SI(Regularizer):
    """c Σ Ω (θ − θ*)² with Ω the path integral of −g·Δθ over training, damped by ξ."""

    name: ClassVar[str] = "si"
    accumulate: ClassVar[str] = "sum"
    positive: ClassVar[tuple[str, ...]] = ("xi",)
    # The path integral and its start are the current task's, restarted by before_task.
    scratch: ClassVar[tuple[str, ...]] = (*Regularizer.scratch, "_path", "_start", "_previous", "_grad")

    lam: float = param(0.1, "c: penalty strength", min=0)
    xi: float = param(0.1, "ξ: damping of the squared total change Δ² (> 0)", min=0)

    def prepare(self, model, stream):
        model = super().prepare(model, stream)
        self._path = torch.zeros(self.layout.size, device=self.layout.params[0].device)
        return model

    def before_task(self, task, model) -> None:
        self._start = self.layout.flat()
        self._previous = self._start.clone()
        self._path.zero_()

    def after_backward(self, model, task) -> None:
        self._grad = self.task_gradient()  # at the parameters before the step

    def after_step(self, model, task) -> None:
        super().after_step(model, task)  # the proximal pull (if any) first: Δθ is the whole step
        theta = self.layout.flat()
        self._path.addcmul_(self._grad, theta - self._previous, value=-1.0)  # ω += −g·Δθ
        self._previous = theta

    def task_importance(self, task, model) -> torch.Tensor:
        delta = self.layout.flat() - self._start
        return self._path / (delta.square() + self.xi)

    def clean(self, omega: torch.Tensor) -> torch.Tensor:
        return omega.clamp_(min=0.0)
