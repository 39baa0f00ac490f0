"""The plane through three points of parameter space, and coordinates on it.

Three flat parameter vectors θ_0, θ_1, θ_2 (here: θ after task 1, θ after task 2 with fine-tuning, θ
after task 2 with a method) span an affine plane. Its origin is θ_0; its orthonormal basis (u, v) comes
from Gram–Schmidt on θ_1 − θ_0 and θ_2 − θ_0, so that distances and angles drawn on the plane are those of
parameter space. This is the plane Garipov et al. 2018 ("Loss surfaces, mode connectivity, and fast
ensembling of DNNs", arXiv 1802.10026) draw through three trained networks; Li et al. 2018 ("Visualizing
the loss landscape of neural nets", arXiv 1712.09913) draw loss contours and optimisation paths projected
on such planes. Mirzadeh et al. 2020 (arXiv 2006.06958) use these slices to show why fine-tuning forgets.

Coordinates: θ ↦ (a, b) = (⟨θ − θ_0, u⟩, ⟨θ − θ_0, v⟩), and back θ(a, b) = θ_0 + a·u + b·v. θ_0 is at
(0, 0), θ_1 at (‖θ_1 − θ_0‖, 0), θ_2 at (⟨θ_2 − θ_0, u⟩, ‖the part of θ_2 − θ_0 orthogonal to u‖). The
basis is kept in float64 so that the three anchors come back from their coordinates to within float32's
rounding. A point off the plane has a residual; ``distance`` says how far it lies from the plane.
"""

from __future__ import annotations

import dataclasses

import torch

from lifelong.errors import LifelongError

# Below this share of the larger of the two spans the third point counts as on the line through the first
# two (or the first two as one point): no plane is defined, and a basis vector would be rounding noise.
DEGENERATE = 1e-6


@dataclasses.dataclass
class Plane:
    """origin (D,) float32; basis (2, D) float64, orthonormal rows (u, v)."""

    origin: torch.Tensor
    basis: torch.Tensor

    @classmethod
    def through(cls, theta0: torch.Tensor, theta1: torch.Tensor, theta2: torch.Tensor) -> Plane:
        """The plane through three flat parameter vectors of equal length, θ_0 at its origin."""
        shapes = {tuple(t.shape) for t in (theta0, theta1, theta2)}
        if len(shapes) != 1 or len(shapes.pop()) != 1:
            raise LifelongError("a plane needs three flat parameter vectors of one length (the same model's)")
        origin = theta0.detach().float().clone()
        d1 = theta1.detach().double() - theta0.detach().double()
        d2 = theta2.detach().double() - theta0.detach().double()
        scale = max(d1.norm().item(), d2.norm().item())
        if scale == 0 or d1.norm().item() <= DEGENERATE * scale:
            raise LifelongError(
                "the first two points of the plane coincide (θ after task 2 with fine-tuning equals θ after "
                "task 1); train task 2 for longer or with a larger lr"
            )
        u = d1 / d1.norm()
        w = d2 - (d2 @ u) * u  # Gram–Schmidt: the part of d2 orthogonal to u
        if w.norm().item() <= DEGENERATE * scale:
            raise LifelongError(
                "the three points lie on one line (the method ended where fine-tuning did, or on its line), so "
                "they span no plane; choose a method that differs from fine-tuning"
            )
        return cls(origin, torch.stack([u, w / w.norm()]))

    @property
    def dim(self) -> int:
        return self.origin.numel()

    def coordinates(self, theta: torch.Tensor) -> torch.Tensor:
        """(a, b) of one θ (D,) → (2,), or of many (M, D) → (M, 2); float64."""
        return (theta.detach().double() - self.origin.double()) @ self.basis.T

    def point(self, coords) -> torch.Tensor:
        """θ at coordinates (2,) → (D,), or at (P, 2) → (P, D); float32."""
        c = torch.as_tensor(coords, dtype=torch.float64)
        return (self.origin.double() + c @ self.basis).float()

    def distance(self, theta: torch.Tensor) -> torch.Tensor:
        """How far each θ lies from the plane (the norm of the residual of its projection); float64."""
        delta = theta.detach().double() - self.origin.double()
        return (delta - (delta @ self.basis.T) @ self.basis).norm(dim=-1)
