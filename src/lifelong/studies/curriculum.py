"""A curriculum from the affinity matrices: the order of the tasks that the pairwise measurements
predict to be best.

The objective. An order π = (π_1, ..., π_T) is a path through the tasks; each step from task i to the
next task j earns what the affinity study measured for that pair:

    J(π) = Σ_{k=1}^{T-1} ( gain[π_k, π_{k+1}] - forgetting[π_k, π_{k+1}] ),

the summed forward gain of each task from its predecessor minus the summed forgetting of each task by
its successor (both in accuracy points, so they trade one to one). The curriculum maximises J. It is a
model of a sequence built from pairs only: a task is also affected by tasks further away (learning the
third task forgets the first too), which no pairwise matrix measures; the order study checks whether
the proposed order actually ranks well.

The search. Maximising J is a longest Hamiltonian path on a complete directed graph (NP-hard in
general). For T <= EXACT_UP_TO every permutation is scored (8! = 40 320 orders, vectorised); beyond, a
heuristic: the greedy path from every start task (always step to the best unvisited successor), then
local search by moving one task to another position and by reversing a segment (2-opt), until no move
improves J. It returns a local optimum, with no guarantee of the global one.
"""

from __future__ import annotations

import itertools

import numpy as np

EXACT_UP_TO = 8


def edge_weights(gain, forgetting) -> np.ndarray:
    """w[i, j] = gain[i, j] - forgetting[i, j]: what stepping from task i to task j earns."""
    w = np.asarray(gain, dtype=float) - np.asarray(forgetting, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"the affinity matrices must be square (got shape {w.shape})")
    off = ~np.eye(len(w), dtype=bool)
    if not np.all(np.isfinite(w[off])):
        raise ValueError("the affinity matrices need a finite value for every pair of distinct tasks")
    return w


def objective(order, gain, forgetting) -> float:
    """J(order) above."""
    w = edge_weights(gain, forgetting)
    order = list(order)
    return float(sum(w[a, b] for a, b in itertools.pairwise(order)))


def exact(w: np.ndarray) -> tuple[int, ...]:
    """The order with the highest J among all permutations (the first in lexicographic order of equals)."""
    perms = np.array(list(itertools.permutations(range(len(w)))), dtype=np.int64)
    if len(w) < 2:
        return tuple(int(t) for t in perms[0])
    scores = w[perms[:, :-1], perms[:, 1:]].sum(axis=1)
    return tuple(int(t) for t in perms[int(np.argmax(scores))])


def _score(order: list[int], w: np.ndarray) -> float:
    return float(w[order[:-1], order[1:]].sum())


def heuristic(w: np.ndarray) -> tuple[int, ...]:
    """Greedy from every start, then moves (relocate one task; reverse a segment) until none improves J."""
    T = len(w)
    best: list[int] = []
    for start in range(T):
        path = [start]
        while len(path) < T:
            rest = [t for t in range(T) if t not in path]
            path.append(max(rest, key=lambda t: w[path[-1], t]))
        if not best or _score(path, w) > _score(best, w):
            best = path
    improved = True
    while improved:
        improved = False
        current = _score(best, w)
        for a, b in itertools.permutations(range(T), 2):
            moved = best[:a] + best[a + 1 :]
            moved.insert(b, best[a])
            reversed_ = best[:a] + best[a : b + 1][::-1] + best[b + 1 :] if a < b else best
            for candidate in (moved, reversed_):
                if _score(candidate, w) > current + 1e-12:
                    best, current, improved = candidate, _score(candidate, w), True
    return tuple(best)


def propose(gain, forgetting) -> tuple[tuple[int, ...], str]:
    """The curriculum for these matrices, and how it was found ("exact" or "heuristic")."""
    w = edge_weights(gain, forgetting)
    if len(w) <= EXACT_UP_TO:
        return exact(w), "exact"
    return heuristic(w), "heuristic"


def plan(gain, forgetting) -> dict:
    """The proposed order with its objective J and how it was found: {"order", "objective", "search"}."""
    order, search = propose(gain, forgetting)
    return {"order": list(order), "objective": objective(order, gain, forgetting), "search": search}


def check(cfg: dict, orders=None, workers: int | None = None, done=None):
    """Propose a curriculum and check it: an affinity study of ``cfg``'s stream (plain fine-tuning, first
    seed), the order maximising J, then an order study of ``cfg``'s methods on that order and on the
    comparison orders (orders.comparison_orders: by default DEFAULT_RANDOM random others). Returns
    (affinity, proposal, order study); ``study.rank(method, study.curriculum)`` is its rank."""
    from lifelong import config
    from lifelong.studies import affinity
    from lifelong.studies import orders as order_studies

    plain = {o.name: None for o in config.options() if o.group == "method"}
    aff = affinity.study({**cfg, **plain, "method": ["finetune"]}, workers, done)
    proposal = plan(aff.gain, aff.forgetting)
    study = order_studies.study(cfg, orders, workers, curriculum=tuple(proposal["order"]), done=done)
    return aff, proposal, study
