"""Elastic weight consolidation (EWC) and online EWC: importance = the diagonal Fisher information.

EWC (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks", PNAS 114(13),
arXiv 1612.00796), one penalty per earlier task t around its own solution θ*_t:

    L'(θ) = L(θ) + λ Σ_t Σ_i F_{t,i} (θ_i − θ*_{t,i})²,
    F_{t,i} = 1/N Σ_n E_{c ~ p_θ(·|x_n)} [(∂ log p_θ(c|x_n)/∂θ_i)²]  at θ = θ*_t, on task t's data.

Online EWC (Schwarz et al. 2018, "Progress & Compress", ICML, arXiv 1805.06370; Huszár 2018), one
running Fisher with decay γ and one anchor, the parameters after the previous task:

    F*_t = γ F*_{t−1} + F_t,     L'(θ) = L(θ) + λ Σ_i F*_{t−1,i} (θ_i − θ*_{t−1,i})².

The papers write λ/2 in front of the sum; here there is none (see regularization/base.py), so
λ_paper = 2 · lam. Progress & Compress also multiplies the running Fisher by γ once more inside its
penalty ((λ/2) ‖θ − θ*‖²_{γF*}); here γ is applied only when a task is added, so P&C's λ is 2 · lam / γ.

How F is estimated is the ``fisher`` setting (see methods/fisher.py): ``exact`` (the default: the
definition above; van de Ven 2025, arXiv 2502.11756, finds it the best), ``sampled`` (one label
drawn from the model per sample), ``empirical`` (the true labels), ``batched`` (squared mini-batch
gradients of ``fisher_batch`` samples, as several libraries do; about 1/batch of the others, so its
lam must be about that much larger). The Fisher is computed with the task's own output mask, in eval
mode, at the end of the task, on its training data.

Defaults and where they come from:
- ``fisher_samples`` = None (all of the task's training samples): the estimate is a mean over
  samples, cheap with the vectorised estimators (about 3 s for exact on 60 000 MNIST images and a
  2 × 400 MLP on 2 CPU cores), and subsampling only adds noise that moves the best lam.
- ``gamma`` = 1: the exact recursive posterior of Huszár 2018 ("Note on the quadratic penalties in
  elastic weight consolidation", PNAS); Progress & Compress leave γ ≤ 1 as a hyper-parameter.
- ``lam`` = 10 (λ_paper = 20): Kirkpatrick et al. report no value for their MNIST experiments; it is
  the best validation ACC of ``lifelong tune --param lam`` (half decades from 1e-3 to 1e4, 10 % of the
  training data held out, mean of seeds 0-2) on the main job's stream (permuted minimnist, 5 tasks, the
  3 × 50 MLP, 5 epochs of SGD at lr 0.1, batch 32): 77.8 % at 10, 75.1 % at 1
  (benchmarks/main_job_search.py). Online EWC inherits it (its own best there is 3). Values of
  thousands, common with Adam at lr 1e-4, make the papers' explicit step with plain SGD diverge (it
  is stable only while lr · 2 · lam · max F < 2); the default proximal step (regularization/base.py)
  is stable for any lam.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from lifelong.methods.base import param
from lifelong.methods.fisher import ESTIMATORS, diagonal_fisher
from lifelong.methods.regularization.base import Regularizer


@dataclasses.dataclass
class EWC(Regularizer):
    """λ Σ_t Σ_i F_{t,i} (θ_i − θ*_{t,i})²: one Fisher-weighted penalty per earlier task."""

    name: ClassVar[str] = "ewc"
    accumulate: ClassVar[str] = "sum"
    anchor: ClassVar[str] = "per-task"

    lam: float = param(10.0, "λ: penalty strength (no 1/2: the EWC paper's λ is 2·lam)", min=0)
    fisher: str = param("exact", "how the Fisher is estimated", choices=ESTIMATORS)
    fisher_samples: int | None = param(None, "training samples to estimate the Fisher on (0 or unset: all)")
    fisher_batch: int = param(128, "mini-batch size of the batched Fisher", min=1)

    def task_importance(self, task, model) -> torch.Tensor:
        x = task.train_x
        fisher = diagonal_fisher(
            model,
            x,
            task.train_y,
            self.task_mask(task),
            self.fisher,
            self.as_count(self.fisher_samples),
            self.fisher_batch,
            self.generator(task, x.device),
        )
        return self.layout.flatten(fisher)


@dataclasses.dataclass
class OnlineEWC(EWC):
    """λ Σ_i F*_i (θ_i − θ*_i)² with one running Fisher F* ← γ F* + F_t and the latest anchor."""

    name: ClassVar[str] = "online-ewc"
    accumulate: ClassVar[str] = "online"
    anchor: ClassVar[str] = "latest"

    gamma: float = param(1.0, "γ: decay of the running Fisher per task", min=0, max=1)
