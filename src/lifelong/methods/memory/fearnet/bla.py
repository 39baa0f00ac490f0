"""FearNet's basolateral amygdala (BLA): a small network that says, per input, whether its class is a
recent one (held by the HC) or a consolidated one (held by the mPFC), and the paper's recall rule that
weighs that answer against the two memories' confidences (Kemker & Kanan 2018, arXiv 1711.10563,
Section 4):

    ψ = max_k P_HC(C = k | x) · A(x)  /  (max_k P_mPFC(C = k | x) · (1 − A(x))),

with A(x) ∈ [0, 1] the BLA's probability that x belongs to the HC; the HC answers when ψ > 1, the mPFC
otherwise. A confident memory can thus overrule an unsure BLA.

It is trained with the HC's examples as positives and pseudo-examples of the consolidated classes as
negatives (balanced binary cross-entropy), after each study session, so that it knows the HC's latest
classes. Its input is a setting: ``latent`` (default) feeds it the mPFC's latent code of the input and
samples of the class statistics as negatives, so that the negatives are distributed as the real codes
of old classes are; ``input`` feeds it the input itself and decoded pseudo-examples as negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Amygdala(nn.Module):
    """in → units → units → 1 logit (ELU), A(x) = sigmoid(logit)."""

    def __init__(self, in_features: int, units: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, units), nn.ELU(), nn.Linear(units, units), nn.ELU(), nn.Linear(units, 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(1)

    def loss(self, recent: torch.Tensor, consolidated: torch.Tensor) -> torch.Tensor:
        """Balanced BCE: the mean over recent inputs (target 1) and the mean over consolidated ones (target 0),
        averaged."""
        pos, neg = self(recent), self(consolidated)
        return 0.5 * (
            F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
            + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
        )


def use_hc(p_hc: torch.Tensor, p_mpfc: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """ψ > 1, per row: max P_HC · A > max P_mPFC · (1 − A), written without the division (no 0/0)."""
    return p_hc.max(1).values * a > p_mpfc.max(1).values * (1 - a)
