"""FearNet's hippocampal complex (HC): the recent examples themselves, and the paper's probabilistic
nearest-neighbour rule (Kemker & Kanan 2018, arXiv 1711.10563, Section 4, Eq. 1):

    P_HC(C = k | x) = β_k / Σ_k' β_k',   β_k = 1 / (min_j ‖x − u_{k,j}‖₂ + ε)  if the HC holds class k, else 0,

with u_{k,j} the j-th stored example of class k and ε > 0 a small constant that keeps β finite when x is
a stored example. The HC learns instantly (storing is learning) and forgets everything at sleep.
"""

from __future__ import annotations

import torch

CHUNK = 4096  # stored rows per distance block: a (batch, CHUNK) matrix at a time


@torch.no_grad()
def nearest_distances(x: torch.Tensor, stored: list[torch.Tensor], labels: list[torch.Tensor], n_classes: int):
    """(N, n_classes): the Euclidean distance from each row of ``x`` to its nearest stored example of each
    class, +inf for a class with none stored. ``stored``/``labels``: blocks of examples (any shape past the
    first dimension, flattened) and their classes, e.g. one block per task kept."""
    flat = x.reshape(len(x), -1)
    out = torch.full((len(x), n_classes), float("inf"), dtype=flat.dtype, device=flat.device)
    for block, y in zip(stored, labels, strict=True):
        rows = block.reshape(len(block), -1)
        for start in range(0, len(rows), CHUNK):
            u, c = rows[start : start + CHUNK].to(flat.dtype), y[start : start + CHUNK]
            d = torch.cdist(flat, u)  # (N, chunk)
            out.scatter_reduce_(1, c.expand(len(flat), -1), d, reduce="amin")
    return out


def probabilities(distances: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Eq. 1 from the nearest distances (N, C): β_k = 1 / (d_k + ε), 0 where d_k is +inf, normalised over k."""
    beta = 1.0 / (distances + epsilon)  # 1 / inf = 0: classes the HC does not hold
    return beta / beta.sum(1, keepdim=True).clamp_min(torch.finfo(beta.dtype).tiny)
