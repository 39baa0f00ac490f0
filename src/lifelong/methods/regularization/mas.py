"""Memory aware synapses (MAS): importance = sensitivity of the output's squared L2 norm.

Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars 2018, "Memory aware synapses: learning what (not)
to forget", ECCV, arXiv 1711.09601:

    Ω_i^t = Ω_i^{t−1} + 1/N Σ_n | ∂ ‖F(x_n; θ)‖²₂ / ∂θ_i |        F = the network's output (logits)
    L'(θ) = L(θ) + λ Σ_i Ω_i (θ_i − θ*_i)²                           (no 1/2, as in the paper)

It needs no labels: any data of the task would do; here it is the task's training inputs. The output
is the task's own units (its head in task-IL, the units seen so far in class-IL, all in domain-IL),
computed in eval mode after the task.

Defaults: ``samples`` = None (all); λ = 0.01, the best validation ACC of ``lifelong tune --param lam``
(half decades from 1e-3 to 1e4, 10 % of the training data held out, mean of seeds 0-2) on the main job's
stream (permuted minimnist, 5 tasks, the 3 × 50 MLP, 5 epochs of SGD at lr 0.1, batch 32): 78.4 % at
0.01, 63.3 % at 1 (benchmarks/main_job_search.py). The paper's λ = 1 (its object-recognition
experiments with AlexNet; reg_lambda = 1 in the authors' code, github.com/rahafaljundi/MAS-Memory-Aware-
Synapses) pins this MLP's weights: Ω, the output norm's sensitivity, reaches ≈ 50 after one task of
permuted digits, and with the papers' explicit step λ = 1 diverges there (lr · 2λ · max Ω ≈ 10.7 > 2;
see regularization/base.py).

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

    lam: float = param(0.01, "λ: penalty strength", min=0)
    samples: int | None = param(None, "training inputs to estimate the importance on (0 or unset: all)")

    def task_importance(self, task, model) -> torch.Tensor:
        x = task.train_x
        keep = subsample(len(x), self.as_count(self.samples), self.generator(task, x.device), x.device)
        if keep is not None:
            x = x[keep]
        units = units_of(self.task_mask(task))
        sums = per_sample_sums(model, x, output_norm_cotangents, units, power=1)
        return self.layout.flatten(sums) / len(x)
