"""Knowledge distillation: the loss that makes a network's outputs match an earlier network's.

Hinton, Vinyals & Dean 2015 ("Distilling the knowledge in a neural network", arXiv 1503.02531): both
sets of logits are softened by a temperature T, the old ones become target probabilities, and the loss
is their cross-entropy with the new ones, multiplied by T² so that its gradients keep the size of a
hard-label loss whatever T is. LwF (Li & Hoiem 2016) uses it on the new task's inputs, DGR+distill
(van de Ven & Tolias 2019) on generated ones; both with T = 2, the value van de Ven & Tolias use.

Only the units a mask allows take part (an additive 0 / −inf logit mask, as the scenarios give): in
task-IL an old task's head, in class-IL the classes the old network knew.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation(
    logits: torch.Tensor, target_logits: torch.Tensor, temperature: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """T² · mean over the batch of −Σ_c softmax(target/T)_c · log softmax(logits/T)_c over the allowed units."""
    if mask is not None:
        logits, target_logits = logits + mask, target_logits + mask
    log_p = F.log_softmax(logits / temperature, dim=1)
    q = F.softmax(target_logits.detach() / temperature, dim=1)
    if mask is not None:  # a masked unit has q = 0 and log p = −inf: its term is 0, not NaN
        log_p = log_p.masked_fill(torch.isinf(mask.expand_as(log_p)), 0.0)
    return -(q * log_p).sum(1).mean() * temperature**2
