"""FearNet's medial prefrontal cortex (mPFC): a dual-purpose autoencoder that is at once the long-term
classifier and the generator of pseudo-examples (Kemker & Kanan 2018, arXiv 1711.10563, Section 4).

The encoder maps an input through the hidden layers h_1..h_M to a latent code z, a softmax layer on z
classifies, and a mirrored decoder reconstructs every encoder layer from z: g_M, ..., g_1 and x̂ = g_0.
The loss is the paper's Eq. 2, classification plus a layer-wise reconstruction,

    L = CE(head(z), y) + Σ_{j=0}^{M} λ_j ‖h_j − g_j‖²,   h_0 = x,

here with each squared error averaged over its layer's units (so that one weight suits layers of any
width) and two weights: λ_0 (``reconstruction``) on the input and one λ (``hidden_reconstruction``) shared
by the hidden layers; the paper gives each layer its own λ_j. The hidden layers use ELUs, as the paper's.

Long-term memory of a class is its latent statistics: the mean μ_c and covariance Σ_c of the codes of
its training examples, taken when the class is consolidated. Pseudo-examples of class c are decoded
from z ~ N(μ_c, Σ_c).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DualAutoencoder(nn.Module):
    """Encoder input → hidden → latent, a classifier on the latent, and a decoder latent → hidden → input."""

    def __init__(self, input_size: int, hidden: tuple[int, ...], latent: int, n_classes: int):
        super().__init__()
        sizes = [input_size, *hidden]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.to_latent = nn.Linear(sizes[-1], latent)
        self.head = nn.Linear(latent, n_classes)
        self.from_latent = nn.Linear(latent, sizes[-1])
        # decoder[i] maps layer M - i to layer M - i - 1 (the last one gives the input back).
        self.decoder = nn.ModuleList(nn.Linear(sizes[j + 1], sizes[j]) for j in reversed(range(len(hidden))))
        self.latent = latent

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The latent code (N, latent) and the encoder's layers [h_0 = x flat, h_1, ..., h_M]."""
        h = [x.reshape(len(x), -1)]
        for layer in self.encoder:
            h.append(F.elu(layer(h[-1])))
        return self.to_latent(h[-1]), h

    def decode_layers(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The decoder's layers [g_0 = x̂, g_1, ..., g_M], index j mirroring the encoder's h_j."""
        g = [F.elu(self.from_latent(z))]
        for i, layer in enumerate(self.decoder):
            out = layer(g[-1])
            g.append(out if i == len(self.decoder) - 1 else F.elu(out))
        return g[::-1]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Inputs (flat) decoded from latent codes: the pseudo-examples."""
        return self.decode_layers(z)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x)[0])

    def loss(self, x, y, mask, weights: tuple[float, float]) -> torch.Tensor:
        """Eq. 2: CE on the allowed units (additive ``mask``) + λ_0 · MSE(x, x̂) + λ · Σ_{j≥1} MSE(h_j, g_j)."""
        z, h = self.encode(x)
        g = self.decode_layers(z)
        logits = self.head(z)
        loss = F.cross_entropy(logits if mask is None else logits + mask, y)
        first, hidden = weights
        loss = loss + first * F.mse_loss(g[0], h[0])
        if hidden:
            loss = loss + hidden * sum(F.mse_loss(gj, hj) for gj, hj in zip(g[1:], h[1:], strict=True))
        return loss


def statistics(codes: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class of ``classes``, the mean (K, d) and covariance (K, d, d) of its codes; the covariance is the
    unbiased one (divided by n − 1; by 1 for a single code, which gives 0)."""
    means, covs = [], []
    for c in classes:
        z = codes[labels == c].double()
        mu = z.mean(0)
        centred = z - mu
        covs.append((centred.T @ centred / max(len(z) - 1, 1)).to(codes.dtype))
        means.append(mu.to(codes.dtype))
    return torch.stack(means), torch.stack(covs)


def factors(covs: torch.Tensor) -> torch.Tensor:
    """A square root L of each covariance, Σ = L Lᵀ (from the eigendecomposition, so that a singular Σ, from
    fewer codes than latent units, still has one)."""
    values, vectors = torch.linalg.eigh(covs.double())
    return (vectors * values.clamp_min(0).sqrt().unsqueeze(-2)).to(covs.dtype)


def sample_codes(means, roots, which: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = μ_c + L_c ε, ε ~ N(0, I), for the class index ``which[i]`` of each row (indices into ``means``).
    ε is drawn on the CPU from ``generator`` so that a seed gives the same codes on every device."""
    eps = torch.randn(len(which), means.shape[1], generator=generator, dtype=means.dtype).to(means.device)
    return means[which] + torch.einsum("nij,nj->ni", roots[which], eps)
