"""Metrics as pure functions of the accuracy matrix R.

R has T+1 rows and T columns: R[0, j] is the accuracy on task j at random initialisation and R[i, j]
(i = 1..T) the accuracy on task j after learning tasks 1..i. In the formulas tasks are numbered
1..T as in the lecture and the GEM paper (Lopez-Paz & Ranzato 2017); the code's column j-1 is task j.
"""

from __future__ import annotations

import numpy as np

# What every report prints beside a number, so that no figure is read under the wrong definition.
DEFINITIONS = {
    "acc": "ACC = mean_j R[T,j] (final average accuracy)",
    "bwt": "BWT = mean_{j<T} (R[T,j] - R[j,j]) (GEM paper; negative = forgetting)",
    "fwt": "FWT = mean_{j>=2} (R[j-1,j] - R[0,j]) (GEM paper; vs random init)",
    "bwt_gem_code": "BWT_T = sum_{j<T} (R[T,j] - R[j,j]) / T (GEM code: divides by T)",
    "fwt_gem_code": "FWT_T = sum_{j>=2} (R[j-1,j] - R[0,j]) / T (GEM code: divides by T)",
    "forgetting": "F = mean_{j<T} max_{j<=l<T} R[l,j] - R[T,j] (Chaudhry et al. 2018)",
    "avg_inc_acc": "AIA = mean_i mean_{j<=i} R[i,j] (Rebuffi et al. 2017)",
    "intransigence": "I = mean_j (A*_j - R[j,j]), A* = reference accuracies (Chaudhry et al. 2018)",
}


def _check(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] + 1 or R.shape[1] < 1:
        raise ValueError(f"R must be (T+1) x T with T >= 1, got shape {R.shape}")
    return R


def acc(R) -> float:
    """ACC = (1/T) sum_{j=1..T} R[T, j]."""
    R = _check(R)
    return float(R[-1].mean())


def bwt(R) -> float:
    """BWT = 1/(T-1) sum_{j=1..T-1} (R[T, j] - R[j, j]); 0 for a single task."""
    R = _check(R)
    T = R.shape[1]
    if T < 2:
        return 0.0
    return float(np.mean([R[T, j - 1] - R[j, j - 1] for j in range(1, T)]))


def bwt_gem_code(R) -> float:
    """The GEM code's BWT: the same sum as bwt() divided by T instead of T-1."""
    R = _check(R)
    T = R.shape[1]
    return float(sum(R[T, j - 1] - R[j, j - 1] for j in range(1, T)) / T)


def fwt(R) -> float:
    """FWT = 1/(T-1) sum_{j=2..T} (R[j-1, j] - R[0, j]); 0 for a single task."""
    R = _check(R)
    T = R.shape[1]
    if T < 2:
        return 0.0
    return float(np.mean([R[j - 1, j - 1] - R[0, j - 1] for j in range(2, T + 1)]))


def fwt_gem_code(R) -> float:
    """The GEM code's FWT: the same sum as fwt() divided by T instead of T-1."""
    R = _check(R)
    T = R.shape[1]
    return float(sum(R[j - 1, j - 1] - R[0, j - 1] for j in range(2, T + 1)) / T)


def forgetting(R) -> float:
    """F = 1/(T-1) sum_{j=1..T-1} (max_{l=j..T-1} R[l, j] - R[T, j]) (Chaudhry et al. 2018, RWalk)."""
    R = _check(R)
    T = R.shape[1]
    if T < 2:
        return 0.0
    return float(np.mean([R[j:T, j - 1].max() - R[T, j - 1] for j in range(1, T)]))


def avg_incremental_accuracy(R) -> float:
    """AIA = (1/T) sum_{i=1..T} (1/i) sum_{j=1..i} R[i, j] (iCaRL's average incremental accuracy)."""
    R = _check(R)
    T = R.shape[1]
    return float(np.mean([R[i, :i].mean() for i in range(1, T + 1)]))


def intransigence(R, reference) -> float:
    """I = (1/T) sum_j (A*_j - R[j, j]), A*_j: accuracy on task j of a reference model trained on all
    data (joint or cumulative training). Positive = the method learns new tasks less well."""
    R = _check(R)
    ref = np.asarray(reference, dtype=float)
    T = R.shape[1]
    if ref.shape != (T,):
        raise ValueError(f"reference must hold one accuracy per task ({T}), got shape {ref.shape}")
    return float(np.mean([ref[j - 1] - R[j, j - 1] for j in range(1, T + 1)]))


def summary(R, reference=None) -> dict[str, float]:
    """Every metric above (intransigence only with a reference)."""
    out = {
        "acc": acc(R),
        "bwt": bwt(R),
        "fwt": fwt(R),
        "bwt_gem_code": bwt_gem_code(R),
        "fwt_gem_code": fwt_gem_code(R),
        "forgetting": forgetting(R),
        "avg_inc_acc": avg_incremental_accuracy(R),
    }
    if reference is not None:
        out["intransigence"] = intransigence(R, reference)
    return out
