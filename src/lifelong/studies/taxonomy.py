"""Our taxonomy: tasks grouped by how much they help each other, as an agglomerative clustering.

Taskonomy (Zamir et al. 2018) turns its affinities into a transfer graph; the issue asks for a simpler
picture that reads at a glance: a dendrogram. The pairwise affinity of tasks i and j is the symmetric
mean of what each does for the other, gain minus forgetting in both directions,

    a(i, j) = (gain[i,j] - forgetting[i,j] + gain[j,i] - forgetting[j,i]) / 2,

and the distance is d(i, j) = max over pairs of a - a(i, j) (>= 0; 0 for the pair that helps each other
most). Tasks are merged by average linkage (UPGMA: the distance between two clusters is the mean of the
distances between their members; Sokal & Michener 1958), with scipy's implementation.
"""

from __future__ import annotations

import numpy as np


def mutual_affinity(gain, forgetting) -> np.ndarray:
    """a(i, j) above: symmetric, nan on the diagonal."""
    net = np.asarray(gain, dtype=float) - np.asarray(forgetting, dtype=float)
    return (net + net.T) / 2


def distances(gain, forgetting) -> np.ndarray:
    """d(i, j) = max a - a(i, j), zero on the diagonal."""
    a = mutual_affinity(gain, forgetting)
    off = ~np.eye(len(a), dtype=bool)
    d = np.where(off, np.nanmax(a[off]) - a, 0.0)
    return d


def cluster(gain, forgetting) -> np.ndarray:
    """The average-linkage merge tree in scipy's linkage format ((T-1) x 4: the two clusters merged,
    their distance, the size of the new cluster)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    d = distances(gain, forgetting)
    if len(d) < 2:
        raise ValueError("a taxonomy needs at least 2 tasks")
    return linkage(squareform(d, checks=False), method="average")


def merges(tree, names: list[str]) -> list[str]:
    """The merges in order, one line each: ``{perm1, perm2} at distance 3.1``."""
    groups = {k: [n] for k, n in enumerate(names)}
    lines = []
    for k, (a, b, dist, _) in enumerate(np.asarray(tree)):
        groups[len(names) + k] = groups[int(a)] + groups[int(b)]
        lines.append(f"{{{', '.join(groups[int(a)])}}} + {{{', '.join(groups[int(b)])}}} at distance {dist:.3g}")
    return lines
