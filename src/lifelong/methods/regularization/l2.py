"""L2: every parameter equally important, b_i = 1.

    L'(θ) = L(θ) + λ Σ_i (θ_i − θ*_i)²,    θ* = the parameters after the previous task.

The "L2" baseline of Kirkpatrick et al. 2017 (PNAS 114(13), arXiv 1612.00796, Fig. 2): a plain
distance to the previous solution that protects no parameter more than another, so it trades
forgetting for a loss of plasticity everywhere. The paper gives no value for its strength; the
default 0.01 is the 10^k with the best ACC on permuted digits (3 tasks, the default 3 × 50 MLP, 5 epochs of the
default SGD at lr 0.1).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from lifelong.methods.base import param
from lifelong.methods.regularization.base import Regularizer


@dataclasses.dataclass
class L2(Regularizer):
    """λ Σ (θ − θ*)² around the parameters after the previous task (b_i = 1)."""

    name: ClassVar[str] = "l2"
    accumulate: ClassVar[str] = "latest"

    lam: float = param(0.01, "λ: strength of the pull towards the previous task's parameters", min=0)

    def task_importance(self, task, model) -> torch.Tensor:
        return torch.ones(self.layout.size, device=self.layout.params[0].device)
