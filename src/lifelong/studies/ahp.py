"""Taskonomy's normalisation of transfer results: pairwise win rates → ratio matrix → principal
eigenvector (the Analytic Hierarchy Process).

Raw transfer scores of different target tasks are on different scales (a point of accuracy is not worth
the same on every task), and a score is not linear in how good a transfer is. Zamir et al. 2018
("Taskonomy: Disentangling Task Transfer Learning", CVPR, Sec. 3.3, "Step III: Ordinal Normalization
using Analytic Hierarchy Process (AHP)") therefore keep only the ordinal information, per target task t:

1. a tournament matrix W_t over the sources: w_ij is the share of t's held-out test samples on which
   source s_i transferred better than s_j (lower loss on that sample);
2. W_t clipped to [0.001, 0.999], the paper's smoothing: a source that wins on every sample would make
   a ratio infinite;
3. W'_t = W_t / W_t^T, elementwise: w'_ij = w_ij / w_ji, "how many times better" s_i is than s_j;
4. the principal eigenvector of W'_t (Saaty's AHP, Saaty 1977/1980) gives every source one affinity for
   t; stacked over targets, the affinity matrix.

The paper does not say how the eigenvector is scaled; here it sums to 1 (Saaty's priority vector), so
a column reads as each source's share. A consistent W' (w'_ij w'_jk = w'_ik for all i, j, k) is
exactly v_i / v_j for its eigenvector v with eigenvalue n; an inconsistent one (A beats B beats C beats A)
still has a unique positive principal eigenvector (Perron-Frobenius: W' is positive).

Ties: a sample on which two sources have the same loss counts half a win to each, so w_ij + w_ji = 1.
"""

from __future__ import annotations

import numpy as np

CLIP = 0.001  # taskonomy's: W is clipped to [0.001, 0.999]


def win_rate(losses_a, losses_b) -> float:
    """Share of samples where a's loss is lower than b's, a tie counting half."""
    a, b = np.asarray(losses_a, dtype=float), np.asarray(losses_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"win_rate needs two equal-length, non-empty loss vectors (got {a.shape} and {b.shape})")
    return float(np.mean(a < b) + 0.5 * np.mean(a == b))


def ratios(W) -> np.ndarray:
    """W' = clip(W) / clip(W)^T (elementwise), with ones on the diagonal (a source against itself)."""
    W = np.asarray(W, dtype=float)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"a win matrix is square (got shape {W.shape})")
    off = ~np.eye(len(W), dtype=bool)
    if not np.all(np.isfinite(W[off])) or W[off].min() < 0 or W[off].max() > 1:
        raise ValueError("win rates must be shares in [0, 1]")
    C = np.clip(W, CLIP, 1 - CLIP)
    out = C / C.T
    np.fill_diagonal(out, 1.0)
    return out


def principal(A) -> tuple[float, np.ndarray]:
    """The largest eigenvalue of a positive matrix and its eigenvector, positive and summing to 1."""
    values, vectors = np.linalg.eig(np.asarray(A, dtype=float))
    k = int(np.argmax(values.real))
    v = np.abs(vectors[:, k].real)  # Perron-Frobenius: one sign throughout
    return float(values[k].real), v / v.sum()


def priorities(W) -> np.ndarray:
    """Taskonomy's normalised affinities of the sources of one target: the principal eigenvector of
    W' = W / W^T (summing to 1). A single source gets 1."""
    W = np.asarray(W, dtype=float)
    if W.shape == (1, 1):
        return np.ones(1)
    return principal(ratios(W))[1]


def consistency_index(W) -> float:
    """Saaty's CI = (λ_max - n) / (n - 1) of W': 0 when the pairwise ratios agree with one ranking,
    larger when they contradict each other (A beats B beats C beats A)."""
    A = ratios(W)
    n = len(A)
    return 0.0 if n < 2 else (principal(A)[0] - n) / (n - 1)
