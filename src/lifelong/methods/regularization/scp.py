"""Sliced Cramér preservation (SCP): importance = sensitivity of random 1-D slices of the mean output.

Kolouri, Ketz, Soltoggio & Pilly 2020, "Sliced Cramér synaptic consolidation for preserving deeply
learned representations", ICLR (openreview.net/forum?id=BJge3TNKwH). Preserving the distribution of
the network's output φ(x; θ) under the sliced Cramér distance leads, to second order, to

    φ̄(θ) = 1/N Σ_n φ(x_n; θ)                                the mean output over the task's data
    Γ_i = 1/L Σ_l ( ∂ (ξ_lᵀ φ̄(θ)) / ∂θ_i )²                 ξ_l ~ uniform on the unit sphere
    L'(θ) = L(θ) + λ Σ_i Ω_i (θ_i − θ*_i)²

Each slice ξ_l is differentiated and squared separately, then averaged (not the square of an average
over slices). φ is the output on the task's own units (logits; its head in task-IL), in eval mode.
The gradients of all slices come from the Jacobian of φ̄: min(L, U) backward directions over the data
(U = allowed units), then one (L × U) matrix product.

Accumulation over tasks, as in the first author's public reference implementation (class SCP, whose
defaults are alpha=.5 and n_slices=50): a moving average Ω_t = α Ω_{t−1} + (1 − α) Γ_t with
α = ``alpha`` = 0.5, and L = ``slices`` = 50. No 1/2 in front of the penalty, as in that code.

Deviation from the authors' code: it takes the mean output over each mini-batch, with fresh slices per
batch, and divides the summed squares by the dataset size; here φ̄ is the mean over all the task's
samples (``samples`` = None) with one set of L slices, the quantity of the paper's derivation.

The paper reports no λ for a comparable setting; the default 1 is the 10^k with the best ACC on
permuted digits (3 tasks, the default 3 × 50 MLP, 5 epochs of the default SGD at lr 0.1). Scale against
the authors' code: it divides the summed squares by the dataset size N, so with the whole task as one
batch (the full mean φ̄, as here) it would give Γ / N. Γ here is N times that (N = the task's training
samples), so a λ taken from that code is lam = λ_code / N here.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from lifelong.methods.base import param
from lifelong.methods.fisher import restrict, subsample, units_of
from lifelong.methods.regularization.base import Regularizer


@dataclasses.dataclass
class SCP(Regularizer):
    """λ Σ Ω (θ − θ*)² with Γ = mean over L random slices of (∂ ξᵀ φ̄/∂θ)², Ω a moving average."""

    name: ClassVar[str] = "scp"
    accumulate: ClassVar[str] = "online"

    lam: float = param(1.0, "λ: penalty strength", min=0)
    slices: int = param(50, "L: random slices of the mean output", min=1)
    alpha: float = param(0.5, "α: Ω ← α Ω + (1 − α) Γ after each task", min=0, max=1)
    samples: int | None = param(None, "training inputs the mean output is taken over (0 or unset: all)")

    def decay(self) -> float:
        return self.alpha

    def task_importance(self, task, model) -> torch.Tensor:
        x = task.train_x
        g = self.generator(task, x.device)
        keep = subsample(len(x), self.as_count(self.samples), g, x.device)
        if keep is not None:
            x = x[keep]
        gamma = sliced_importance(model, x, units_of(self.task_mask(task)), self.slices, g)
        return (1.0 - self.alpha) * self.layout.flatten(gamma)


def sliced_importance(
    model: torch.nn.Module,
    x: torch.Tensor,
    units: torch.Tensor | None,
    slices: int,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Γ_i = 1/L Σ_l (∂ ξ_lᵀ φ̄ / ∂θ_i)², φ̄ the mean output over x, ξ_l uniform on the sphere."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            n_units = restrict(model(x[:1]), units).shape[-1]
        xi = torch.randn(slices, n_units, generator=generator, device=generator.device).to(x.device)
        xi = xi / xi.norm(dim=1, keepdim=True)
        # Directions to differentiate φ̄ along: the slices themselves, or the unit basis when cheaper.
        basis = slices > n_units
        directions = torch.eye(n_units, device=x.device) if basis else xi
        jac = {n: torch.zeros(len(directions), *p.shape, device=p.device) for n, p in params.items()}
        chunk = max(64, (1 << 16) // len(directions))
        with torch.enable_grad():
            for xc in x.split(chunk):
                mean_part = restrict(model(xc), units).sum(0) / len(x)  # this chunk's share of φ̄
                grads = torch.autograd.grad(
                    mean_part, list(params.values()), grad_outputs=directions, is_grads_batched=True, allow_unused=True
                )
                for name, gr in zip(params, grads, strict=True):
                    if gr is not None:
                        jac[name] += gr
    finally:
        model.train(was_training)
    out = {}
    for name, j in jac.items():
        per_slice = torch.tensordot(xi, j, dims=1) if basis else j  # (L, *shape): ∂ ξ_lᵀ φ̄ / ∂θ
        out[name] = per_slice.square().mean(0)
    return out
