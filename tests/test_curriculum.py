"""The curriculum (lifelong.studies.curriculum): the order maximising J = Σ (gain - forgetting) over
consecutive pairs, checked against brute force written here."""

import itertools

import numpy as np
import pytest

from lifelong.studies import curriculum


def brute_force(gain, forgetting):
    """The best J over all orders, by plain loops."""
    T = len(gain)
    best = -np.inf
    for order in itertools.permutations(range(T)):
        J = sum(gain[a][b] - forgetting[a][b] for a, b in zip(order, order[1:], strict=False))
        best = max(best, J)
    return best


def test_hand_made_matrix_gives_the_chain_it_was_built_from():
    # 2 helps 0 a lot, 0 helps 3, 3 helps 1; every other step gains nothing. Forgetting is small except
    # that learning 1 right after 2 would make 2 forgotten badly.
    gain = np.zeros((4, 4))
    gain[2, 0], gain[0, 3], gain[3, 1] = 0.30, 0.20, 0.10
    forgetting = np.full((4, 4), 0.01)
    forgetting[2, 1] = 0.50
    np.fill_diagonal(gain, np.nan)
    np.fill_diagonal(forgetting, np.nan)
    order, search = curriculum.propose(gain, forgetting)
    assert order == (2, 0, 3, 1) and search == "exact"
    assert curriculum.objective(order, gain, forgetting) == pytest.approx(0.30 + 0.20 + 0.10 - 0.03)
    assert curriculum.objective(order, gain, forgetting) == pytest.approx(brute_force(gain, forgetting))


def test_forgetting_can_outweigh_gain():
    gain = np.array([[np.nan, 0.2], [0.1, np.nan]])  # 0 → 1 gains more ...
    forgetting = np.array([[np.nan, 0.3], [0.0, np.nan]])  # ... but learning 1 after 0 forgets 0
    assert curriculum.propose(gain, forgetting)[0] == (1, 0)


@pytest.mark.parametrize("T,seed", [(3, 0), (5, 1), (6, 2), (7, 3)])
def test_exact_search_reaches_the_brute_force_optimum(T, seed):
    rng = np.random.default_rng(seed)
    gain, forgetting = rng.normal(size=(T, T)), rng.uniform(size=(T, T))
    order, _ = curriculum.propose(gain, forgetting)
    assert sorted(order) == list(range(T))
    assert curriculum.objective(order, gain, forgetting) == pytest.approx(brute_force(gain, forgetting))


def test_heuristic_beyond_eight_tasks_finds_a_planted_path_and_a_local_optimum():
    T = 10
    rng = np.random.default_rng(0)
    planted = [int(t) for t in rng.permutation(T)]
    gain = rng.uniform(0, 0.05, size=(T, T))
    for a, b in itertools.pairwise(planted):
        gain[a, b] = 1.0
    forgetting = np.zeros((T, T))
    order, search = curriculum.propose(gain, forgetting)
    assert search == "heuristic" and list(order) == planted
    # on noise alone: no single move (relocate one task, reverse a segment) improves what it returns
    gain = rng.normal(size=(T, T))
    order = list(curriculum.propose(gain, forgetting)[0])
    J = curriculum.objective(order, gain, forgetting)
    for a, b in itertools.permutations(range(T), 2):
        moved = order[:a] + order[a + 1 :]
        moved.insert(b, order[a])
        assert curriculum.objective(moved, gain, forgetting) <= J + 1e-9
        if a < b:
            rev = order[:a] + order[a : b + 1][::-1] + order[b + 1 :]
            assert curriculum.objective(rev, gain, forgetting) <= J + 1e-9
