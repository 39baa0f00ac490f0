"""GEM's and A-GEM's gradient projections, on flat gradient vectors.

GEM: Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for continual learning", NeurIPS,
arXiv 1706.08840, eq. 10–13. With g (p,) the current gradient and G (t, p) the gradients of the
memories of the t earlier tasks (row k = g_k): if ⟨g, g_k⟩ ≥ 0 for every k, g is kept. Otherwise g
is replaced by the closest vector that does not increase any memory loss,

    primal   min_z ½‖z − g‖²                   s.t.  G z ≥ 0
    dual     min_v ½ vᵀ G Gᵀ v + gᵀ Gᵀ v        s.t.  v ≥ 0,        g̃ = Gᵀ v + g.

The authors' code (github.com/facebookresearch/GradientEpisodicMemory, model/gem.py,
``project2cone2``) solves the dual with quadprog, P = G Gᵀ, q = −G g (quadprog minimises
½vᵀPv − qᵀv), with the bound v ≥ γ instead of v ≥ 0, γ = ``margin`` (their ``memory_strength``,
default 0.5), then returns g̃ = Gᵀ v + g. That is what ``gem_project`` computes:

    v* = argmin_{v ≥ γ} ½ vᵀ G Gᵀ v + gᵀ Gᵀ v,      g̃ = g + Gᵀ v*.

Substituting v = γ1 + u, u ≥ 0, shows what the margin does: g̃ is the plain GEM projection of the
shifted gradient g + γ Σ_k g_k, i.e. g̃ = argmin_z ½‖z − (g + γ Σ_k g_k)‖² s.t. G z ≥ 0. It leans
the update towards the memories' gradients before projecting; it is not a constraint G z ≥ γ. As in
the authors' code, the projection (margin included) runs only when some ⟨g, g_k⟩ < 0.

The dual is a non-negative least-squares problem, ½‖Gᵀv + g‖² − ½‖g‖², so it is solved by the
exact active-set method of Lawson & Hanson (1974, "Solving least squares problems", ch. 23) in its
Gram form (Bro & de Jong 1997, "A fast non-negativity-constrained least squares algorithm",
J. Chemometrics 11), on the t × t matrix G Gᵀ and the t-vector G g only: O(t·p) to form them, O(t³)
per active-set change, in float64 on the CPU (t is the number of earlier tasks). It stops when every
⟨g̃, g_k⟩ ≥ −1e-12·max_j ‖g_j‖·‖g + γ Σ_j g_j‖ (up to rounding). Limit of the Gram form (quadprog's
too): G Gᵀ squares G's condition number, so memory gradients that differ by less than ~1e-8 relative
(√ of float64's precision) are not told apart, and the constraints then hold only to about 1e-6
relative accuracy (measured: rows equal up to 1e-9 noise).

Deviation from common practice: no ε·I is added to G Gᵀ. quadprog needs a positive-definite P, so
the authors' code (as read, commit 1919989) fails when G Gᵀ is singular (duplicate or dependent
memory gradients, t > p), and many re-implementations add 1e-3·I; but that solves a relaxed
problem, whose answer only satisfies ⟨g̃, g_k⟩ ≥ −ε v_k, so a memory loss can rise. The active-set
method never needs P to be invertible (it solves least squares on the active set, with an SVD), so
duplicate, parallel, opposite or zero memory gradients, and t > p, need no regularisation. ``eps``
adds ε·I for whoever wants to reproduce those re-implementations. When no constraint is violated,
g itself is returned (not a copy), as the authors' code leaves it untouched.

A-GEM: Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, "Efficient lifelong learning with A-GEM",
ICLR, arXiv 1812.00420, eq. 11. One constraint, with g_ref the gradient on a batch drawn from the
whole memory: if ⟨g, g_ref⟩ < 0, g̃ = g − (⟨g, g_ref⟩ / ⟨g_ref, g_ref⟩) g_ref, else g̃ = g.

Both return the flag ``active`` (whether g was changed), which the methods count per task.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Lawson–Hanson stops when no constraint is violated by more than this, relative to max ‖g_k‖·‖g'‖.
_REL_TOL = 1e-12


class Projection(NamedTuple):
    grad: torch.Tensor  # g̃, same shape, dtype and device as g (g itself when not active)
    active: bool  # whether g violated a constraint and was projected


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> Projection:
    """A-GEM's eq. 11: remove from g its component against g_ref, if ⟨g, g_ref⟩ < 0."""
    _check_vector(g, "g")
    if g_ref.shape != g.shape:
        raise ValueError(f"g_ref has shape {tuple(g_ref.shape)} but g has {tuple(g.shape)}; pass flat vectors")
    g64, r64 = g.double(), g_ref.double()
    dot = torch.dot(g64, r64).item()
    ref_sq = torch.dot(r64, r64).item()
    if not (dot < 0 and ref_sq > 0):  # a zero g_ref gives dot = 0: nothing to protect
        return Projection(g, False)
    return Projection((g64 - (dot / ref_sq) * r64).to(g.dtype), True)


def gem_project(g: torch.Tensor, memories: torch.Tensor, margin: float = 0.0, eps: float = 0.0) -> Projection:
    """GEM's projection of g (p,) onto {z : G z ≥ 0}, G = ``memories`` (t, p); see the module docstring.

    ``margin`` is the authors' memory_strength γ (the dual's bound v ≥ γ); ``eps`` adds ε·I to G Gᵀ
    as their later code does (0 here: not needed, and it relaxes the constraints).
    """
    _check_vector(g, "g")
    if memories.dim() != 2 or memories.shape[1] != g.shape[0]:
        raise ValueError(f"memories has shape {tuple(memories.shape)}; expected (tasks, {g.shape[0]})")
    if margin < 0 or eps < 0:
        raise ValueError(f"margin ({margin}) and eps ({eps}) must be >= 0")
    if memories.shape[0] == 0:
        return Projection(g, False)
    mem64, g64 = memories.double(), g.double()
    gram = (mem64 @ mem64.T).cpu()  # the t × t problem is solved on the CPU: tiny, and lstsq's SVD driver is CPU-only
    mem_g = (mem64 @ g64).cpu()
    if not bool((mem_g < 0).any()):
        return Projection(g, False)
    gram = 0.5 * (gram + gram.T) + eps * torch.eye(len(gram), dtype=torch.float64)
    # v = γ1 + u: u solves the plain dual of the shifted gradient g' = g + γ Gᵀ1, whose G g' = G g + γ P 1.
    ones = torch.ones(len(gram), dtype=torch.float64)
    shifted = mem_g + margin * (gram @ ones)
    shifted_norm_sq = float(g64 @ g64) + 2 * margin * float(mem_g.sum()) + margin**2 * float(gram.sum())
    tol = _REL_TOL * (float(gram.diagonal().max()) * max(shifted_norm_sq, 0.0)) ** 0.5
    v = _nonneg_qp(gram, shifted, tol) + margin
    return Projection((g64 + v.to(mem64.device) @ mem64).to(g.dtype), True)


def _nonneg_qp(gram: torch.Tensor, lin: torch.Tensor, tol: float) -> torch.Tensor:
    """argmin_{u ≥ 0} ½ uᵀ P u + cᵀ u (P = ``gram`` ⪰ 0, c = ``lin``): Lawson–Hanson, Gram form.

    ``w = −(P u + c)`` is −∇; with P = G Gᵀ and c = G g it is w_k = −⟨g_k, g + Gᵀu⟩, so w_k > 0 means
    constraint k is still violated. The active set S holds the u_k > 0; on S the unconstrained
    minimiser solves P_SS u_S = −c_S (least squares, so a singular P_SS is fine).
    """
    t = len(lin)
    u = torch.zeros(t, dtype=torch.float64)
    active = torch.zeros(t, dtype=torch.bool)
    skip = torch.zeros(t, dtype=torch.bool)  # added and at once dropped again: its w_k > tol was rounding
    for _ in range(10 * t + 10):  # Lawson–Hanson ends in finitely many steps; this only bounds rounding loops
        w = -(gram @ u + lin)
        w[active | skip] = float("-inf")
        k = int(w.argmax())
        if w[k] <= tol:
            break  # KKT: u ≥ 0, every violated constraint has u_k > 0 and ∇_k = 0 there
        active[k], before = True, u
        for _ in range(t):  # each pass drops one coordinate from S, so t passes suffice
            idx = active.nonzero().squeeze(1)
            trial = torch.zeros(t, dtype=torch.float64)
            sub = gram[idx][:, idx]
            trial[idx] = torch.linalg.lstsq(sub, -lin[idx].unsqueeze(1), driver="gelsd").solution.squeeze(1)
            blocking = (active & (trial <= 0)).nonzero().squeeze(1)
            if len(blocking) == 0:
                u = trial
                break
            # Step from u towards the trial point until the first coordinate of S reaches zero, and drop it
            # by hand (the step's rounding may leave it at ±1e-17). 0/0 (u_j = trial_j = 0) is a zero step.
            ratios = torch.nan_to_num(u[blocking] / (u[blocking] - trial[blocking]), nan=0.0)
            first = int(ratios.argmin())
            u = u + ratios[first] * (trial - u)
            u[blocking[first]] = 0.0
            active &= u > 0
            u[~active] = 0.0
        if active[k]:
            skip[:] = False
        elif torch.equal(u, before):
            skip[k] = True
    return u


def _check_vector(g: torch.Tensor, name: str) -> None:
    if g.dim() != 1:
        raise ValueError(f"{name} has shape {tuple(g.shape)}; pass the flat gradient vector (torch.cat of .flatten())")
