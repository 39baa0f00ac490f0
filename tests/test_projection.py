"""GEM's projection against scipy's SLSQP on the primal QP; A-GEM's eq. 11 against hand-computed vectors."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from lifelong.methods.memory.projection import agem_project, gem_project


def slsqp_primal(g, mem, margin=0.0):
    """Independent GEM answer: argmin_z ½‖z − g'‖² s.t. G z ≥ 0, g' = g + γ Σ_k g_k (the margin's primal)."""
    g, mem = np.asarray(g, float), np.asarray(mem, float)
    target = g + margin * mem.sum(axis=0)
    # SLSQP's tolerances are absolute: solve the same problem scaled to unit size (same feasible cone)
    scale = max(np.linalg.norm(target), 1e-300)
    unit, rows = target / scale, mem / np.maximum(np.linalg.norm(mem, axis=1, keepdims=True), 1e-300)
    res = minimize(
        lambda z: 0.5 * np.sum((z - unit) ** 2),
        unit,
        jac=lambda z: z - unit,
        constraints=[{"type": "ineq", "fun": lambda z: rows @ z, "jac": lambda z: rows}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert res.success, res.message
    return res.x * scale


def slsqp_dual(g, mem, margin):
    """The authors' formulation as stated: v = argmin_{v ≥ γ} ½vᵀGGᵀv + gᵀGᵀv, g̃ = g + Gᵀv."""
    g, mem = np.asarray(g, float), np.asarray(mem, float)
    gram, lin = mem @ mem.T, mem @ g
    res = minimize(
        lambda v: 0.5 * v @ gram @ v + lin @ v,
        np.full(len(mem), margin + 1.0),
        jac=lambda v: gram @ v + lin,
        bounds=[(margin, None)] * len(mem),
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert res.success, res.message
    return g + mem.T @ res.x


def check_gem(g, mem, margin=0.0, atol=1e-6):
    """Constraints hold to 1e-6 and g̃ matches the independent solution; returns the active flag."""
    g, mem = torch.as_tensor(g, dtype=torch.float64), torch.as_tensor(mem, dtype=torch.float64)
    out, active = gem_project(g, mem, margin=margin)
    assert active == bool((mem @ g < 0).any())
    assert (mem @ out >= -1e-6).all()
    if active:
        expected = torch.from_numpy(slsqp_primal(g, mem, margin))
        torch.testing.assert_close(out, expected, rtol=0, atol=atol)
        # and at least as close to the (shifted) gradient as scipy's answer: the minimiser, not just near it
        target = g + margin * mem.sum(0)
        assert (out - target).norm() <= (expected - target).norm() + 1e-9
    return out, active


def random_problem(gen, t, p, scale=1.0):
    mem = torch.randn(t, p, generator=gen, dtype=torch.float64) * scale
    # push g against the memories so that most problems violate some constraints
    pull = torch.rand(t, generator=gen, dtype=torch.float64) @ mem
    g = torch.randn(p, generator=gen, dtype=torch.float64) * scale - 0.5 * pull
    return g, mem


def test_gem_matches_independent_qp_on_random_problems():
    gen = torch.Generator().manual_seed(0)
    n_active = 0
    for i in range(50):
        t, p = 1 + i % 6, int(torch.randint(3, 41, (1,), generator=gen))
        g, mem = random_problem(gen, t, p, scale=10.0 ** float(torch.randint(-2, 3, (1,), generator=gen)))
        n_active += check_gem(g, mem, atol=1e-6 * (1 + float(g.norm())))[1]
    assert n_active >= 35  # the test exercised the solver, not only the "keep g" branch


def test_gem_rank_deficient_more_tasks_than_parameters():
    gen = torch.Generator().manual_seed(1)
    for t, p in [(5, 2), (6, 3), (4, 3)]:
        g, mem = random_problem(gen, t, p)
        mem = torch.cat([mem, mem[:2], 2 * mem[:1]])  # duplicates and parallel rows too
        check_gem(g, mem)


def test_gem_degenerate_cases_by_hand():
    a = [1.0, 2.0, -2.0]
    # one memory, g opposite to it: the closest vector with ⟨z, a⟩ ≥ 0 is 0
    out, active = check_gem([-2.0, -4.0, 4.0], [a])
    assert active and torch.allclose(out, torch.zeros(3, dtype=torch.float64), atol=1e-12)
    # opposite memories a and −a: g̃ is g with its a-component removed
    out, _ = check_gem([3.0, 2.0, 1.0], [[1.0, 0, 0], [-1.0, 0, 0]])
    torch.testing.assert_close(out, torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64))
    # the same memory three times and a zero memory: A-GEM's formula with a
    g = torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64)
    out, _ = check_gem(g, [a, a, [0.0, 0, 0], a])
    torch.testing.assert_close(out, torch.tensor([8 / 3, 1 / 3, 5 / 3], dtype=torch.float64))
    # two orthogonal memories, both violated: both components go
    out, _ = check_gem([-1.0, -2.0, 3.0], [[1.0, 0, 0], [0, 1.0, 0]])
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64))
    # the most violated memory (3, 3) enters the active set first and must leave it again: the answer
    # is the projection on (3, 2) alone, g − (−11/13)(−3, −2), which then satisfies the other two
    out, _ = check_gem([3.0, 1.0], [[2.0, -2.0], [-3.0, -2.0], [-3.0, -3.0]])
    torch.testing.assert_close(out, torch.tensor([6 / 13, -9 / 13], dtype=torch.float64))
    # the same with a duplicated memory: the answer is the projection on (1, −1), g − (−3/2)(1, −1)
    out, _ = check_gem([-1.0, 2.0], [[3.0, -1.0], [3.0, -1.0], [1.0, -1.0]])
    torch.testing.assert_close(out, torch.tensor([0.5, 0.5], dtype=torch.float64))
    # only zero memories, or a zero gradient: nothing to project
    for g, mem in [([1.0, -1.0, 0.5], [[0.0, 0, 0]] * 2), ([0.0, 0, 0], [a])]:
        g = torch.tensor(g, dtype=torch.float64)
        out, active = gem_project(g, torch.tensor(mem, dtype=torch.float64))
        assert not active and out is g


def test_gem_margin_is_the_authors_dual_with_v_at_least_margin():
    # by hand: G = [e1], g = (−1, 2), γ = 2: min_{v ≥ 2} ½v² − v gives v = 2, g̃ = g + 2 e1 = (1, 2)
    out, active = gem_project(torch.tensor([-1.0, 2.0]), torch.tensor([[1.0, 0.0]]), margin=2.0)
    assert active
    torch.testing.assert_close(out, torch.tensor([1.0, 2.0]))
    gen = torch.Generator().manual_seed(2)
    for i in range(20):
        g, mem = random_problem(gen, 1 + i % 5, 4 + i)
        out, active = check_gem(g, mem, margin=0.5)
        if active:
            torch.testing.assert_close(out, torch.from_numpy(slsqp_dual(g, mem, 0.5)), rtol=0, atol=1e-6)


def test_gem_keeps_g_exactly_when_no_constraint_is_violated():
    gen = torch.Generator().manual_seed(3)
    for i in range(20):
        g, mem = random_problem(gen, 1 + i % 6, 10)
        mem = mem * torch.sign(mem @ g).unsqueeze(1)  # flip each memory onto g's side
        out, active = gem_project(g, mem, margin=0.5)
        assert not active and torch.equal(out, g)
    g = torch.tensor([1.0, 0.0, 0.0])  # ⟨g, g_k⟩ = 0 is allowed
    out, active = gem_project(g, torch.tensor([[0.0, 1.0, 0.0], [1.0, -3.0, 0.0]]))
    assert not active and torch.equal(out, g)


def test_gem_float32_in_float32_out():
    gen = torch.Generator().manual_seed(4)
    g, mem = random_problem(gen, 4, 30)
    out, active = gem_project(g.float(), mem.float())
    assert active and out.dtype == torch.float32
    assert (mem.float() @ out >= -1e-5).all()


@pytest.mark.parametrize(
    ("g", "g_ref", "expected", "active"),
    [
        ([1.0, -1.0], [0.0, 1.0], [1.0, 0.0], True),  # g − (−1/1)(0, 1)
        ([1.0, 1.0], [0.0, 1.0], [1.0, 1.0], False),  # ⟨g, g_ref⟩ = 1 ≥ 0
        ([3.0, 0.0], [0.0, 2.0], [3.0, 0.0], False),  # orthogonal: ⟨g, g_ref⟩ = 0 is allowed
        ([2.0, -1.0, 3.0], [1.0, 2.0, -2.0], [8 / 3, 1 / 3, 5 / 3], True),  # g + (6/9)(1, 2, −2)
        ([-1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 2.0, 0.5], False),  # a zero g_ref leaves g alone
        ([-2.0, -4.0], [1.0, 2.0], [0.0, 0.0], True),  # g = −2 g_ref: nothing is left
    ],
)
def test_agem_on_hand_made_vectors(g, g_ref, expected, active):
    g_t = torch.tensor(g)
    out, was_active = agem_project(g_t, torch.tensor(g_ref))
    assert was_active == active
    torch.testing.assert_close(out, torch.tensor(expected))
    assert out.dtype == torch.float32
    if not active:
        assert out is g_t


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="flat gradient"):
        gem_project(torch.zeros(2, 3), torch.zeros(1, 6))
    with pytest.raises(ValueError, match="expected"):
        gem_project(torch.zeros(3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="g_ref"):
        agem_project(torch.zeros(3), torch.zeros(4))
