"""Memory aware synapses (MAS): importance = sensitivity of the output's squared L2 norm.

Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars 2018, "Memory aware synapses: learning what (not)
to forget", ECCV, arXiv 1711.09601:

    Ω_i^t = Ω_i^{t−1} + 1/N Σ_n | ∂ ‖F(x_n; θ)‖²₂ / ∂θ_i |        F = the network's output (logits)
    L'(θ) = L(θ) + λ Σ_i Ω_i (θ_i − θ*_i)²                           (no 1/2, as in the paper)

It needs no labels: any data of the task would do; here it is the task's training inputs. The output
is the task's own units (its head in task-IL, the units seen so far in class-IL, all in domain-IL),
computed in eval mode after the task.

Defaults: λ = 1, the value of the paper's object-recognition experiments (reg_lambda = 1 in the
authors' code, github.com/rahafaljundi/MAS-Memory-Aware-Synapses); ``samples`` = None (all).

Deviation from the authors' code, not from the paper: the paper's equation takes the absolute value of
each sample's gradient; the authors' code by default takes it of mini-batch gradients (per-sample only
with its b1 option). Here it is per sample, vectorised (see methods/fisher.py).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from lifelong.methods.base import param
from lifelong.methods.fisher import output_norm_cotangents, per_sample_sums, subsample, units_of
from lifelong.methods.regularization.base import Regularizer


@dataclasses.dataclass
class MAS(Regularizer):
    """λ Σ Ω (θ − θ*)² with Ω the mean |∂‖output‖²/∂θ| over the task's inputs, summed over tasks."""

    name: ClassVar[str] = "mas"
    accumulate: ClassVar[str] = "sum"

    lam: float = param(1.0, "λ: penalty strength", min=0)
    samples: int | None = param(None, "training inputs to estimate the importance on (0 or unset: all)")

    def task_importance(self, task, model) -> torch.Tensor:
        x = task.train_x
        keep = subsample(len(x), self.as_count(self.samples), self.generator(task, x.device), x.device)
        if keep is not None:
            x = x[keep]
        units = units_of(self.task_mask(task))
        sums = per_sample_sums(model, x, output_norm_cotangents, units, power=1)
        return self.layout.flatten(sums) / len(x)
