"""The statistics of `lifelong compare`: a sample's mean, sd and t confidence interval, two t-tests and
Holm's correction for testing several pairs at once.

Why these. A method's score over a handful of seeds (3 to 10) is a small sample from an unknown spread,
so its interval uses Student's t with n − 1 degrees of freedom (Student 1908), not the normal's 1.96,
which would be too narrow by half at n = 3. Two methods run on the same seeds share each seed's data
order and initialisation, so the paired t-test on the seed-by-seed differences removes that shared
part of the variance (the within-seed comparison of Dietterich 1998 and Demšar 2006). Where the seeds
differ, Welch's t-test (Welch 1947) compares the two means without assuming equal variances (a method
that forgets can vary ten times more than one that does not). Comparing k methods pairwise makes
k(k − 1)/2 tests; Holm's step-down correction (Holm 1979) keeps the chance of any false "significant"
below α with no assumption about how the tests depend on each other, and rejects at least as much as
Bonferroni's.

The t statistics and degrees of freedom are written out here (so that each reads like its textbook
formula); scipy supplies only the t distribution.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
# A spread below this is floating-point rounding, not variation (accuracies are counts over at most a few
# million test samples, so real differences are > 1e-7): 0.8 − 0.7 and 0.9 − 0.8 differ by 1e-17, and a t
# of 1e15 from that would be a false "certain".
ROUNDING = 1e-9


@dataclasses.dataclass(frozen=True)
class Summary:
    """A sample described: n, mean, sample sd (ddof = 1) and the two-sided t interval of the mean.
    sd and the interval are nan for n < 2 (one value has no spread); everything is nan for n = 0."""

    n: int
    mean: float
    sd: float
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class TTest:
    """A two-sided t-test: ``kind`` 'paired' or 'welch', the difference of means (first − second),
    t, its degrees of freedom and the p-value. ``why`` says why there is no test (then t, df, p are nan)."""

    kind: str
    diff: float
    t: float
    df: float
    p: float
    why: str = ""


def describe(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """mean ± t_{(1+c)/2, n−1} · sd / √n: the Student t interval of the mean (nan values are left out)."""
    from scipy import stats

    x = _finite(values)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half)


def welch(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Welch's t-test: t = (ā − b̄) / √(s_a²/n_a + s_b²/n_b), with the Welch–Satterthwaite degrees of
    freedom df = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1))."""
    a, b = _finite(a), _finite(b)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return _none("welch", diff, "needs 2 or more seeds in each group")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if math.sqrt(va + vb) < ROUNDING:
        return _none("welch", diff, "no spread in either group (every seed scored the same)")
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return TTest("welch", diff, float(t), float(df), _two_sided(t, df))


def paired(a: Sequence[float], b: Sequence[float]) -> TTest:
    """The paired t-test on d_i = a_i − b_i (the same seed in both): t = d̄ / (s_d / √n), df = n − 1."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    diff = float(d.mean()) if len(d) else math.nan
    if len(d) < 2:
        return _none("paired", diff, "needs 2 or more seeds scored in both groups")
    sd = d.std(ddof=1)
    if sd < ROUNDING:
        return _none("paired", diff, "every seed differs by the same amount, so the differences have no spread")
    t = diff / (sd / math.sqrt(len(d)))
    return TTest("paired", diff, float(t), float(len(d) - 1), _two_sided(t, len(d) - 1))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values (Holm 1979): sort the m p-values, p_(1) ≤ … ≤ p_(m); the i-th is
    max_{j ≤ i} min(1, (m − j + 1) · p_(j)). Rejecting where the adjusted p < α is Holm's step-down test.
    nan entries (no test) stay nan and do not count in m."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    running = 0.0
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def _two_sided(t: float, df: float) -> float:
    from scipy import stats

    return float(2 * stats.t.sf(abs(t), df))


def _none(kind: str, diff: float, why: str) -> TTest:
    return TTest(kind, diff, math.nan, math.nan, math.nan, why)


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]
