"""The generator of deep generative replay: a fully connected variational autoencoder.

Deep generative replay (DGR; Shin et al. 2017, "Continual Learning with Deep Generative Replay",
arXiv 1705.08690) keeps a generator of past inputs and, while a new task is learned, mixes its samples
into the batches so that old tasks are rehearsed without storing data. Following van de Ven & Tolias
("Three scenarios for continual learning", arXiv 1904.07734; "Generative replay with feedback
connections", arXiv 1809.10635) the generator is a VAE (Kingma & Welling 2014, arXiv 1312.6114) with
fully connected layers; their split-MNIST setting is the default here: 2 hidden layers of 400 ReLU units
in the encoder, the same mirrored in the decoder, and a 100-dimensional latent with a standard normal
prior.

The loss is weighted as in their code (GMvandeVen/continual-learning, ``models/vae.py``,
``VAE.loss_function``): the Bernoulli reconstruction loss (binary cross-entropy) is averaged over the
input's pixels, the KL divergence to N(0, I) is summed over latent units and then divided by the number of
pixels, and both are averaged over the batch. The total is therefore the negative ELBO per pixel,
(sum-BCE + KL) / pixels, which keeps its size independent of the image size, so the same learning rate
suits 8x8 and 28x28 inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from lifelong.errors import LifelongError, option
from lifelong.models.sizes import hidden_sizes, whole


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latent units (Kingma & Welling, appendix B)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


class VAE(nn.Module):
    def __init__(self, input_shape: int | Sequence[int], hidden: Sequence[int] = (400, 400), latent: int = 100):
        super().__init__()
        self.input_shape, hidden = _check(input_shape, hidden, latent)
        self.n_pixels, self.latent, self.hidden = math.prod(self.input_shape), latent, tuple(hidden)

        def stack(sizes: list[int]) -> nn.Sequential:
            pairs = zip(sizes[:-1], sizes[1:], strict=True)
            return nn.Sequential(*[m for a, b in pairs for m in (nn.Linear(a, b), nn.ReLU())])

        self.encoder = stack([self.n_pixels, *hidden])
        self.to_mu, self.to_logvar = nn.Linear(hidden[-1], latent), nn.Linear(hidden[-1], latent)
        # The decoder mirrors the encoder: latent -> hidden[-1] -> ... -> hidden[0] -> pixels.
        self.decoder = stack([latent, *reversed(hidden)])
        self.to_pixels = nn.Linear(hidden[0], self.n_pixels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), each (N, latent)."""
        h = self.encoder(self._flat(x))
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x | z), shaped (N, *input_shape)."""
        return self.to_pixels(self.decoder(z)).view(len(z), *self.input_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli means of p(x | z): images in [0, 1] shaped (N, *input_shape)."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstruction of x through one sample z ~ q(z | x); same shape as x."""
        mu, logvar = self.encode(x)
        return self.decode(self._reparameterize(mu, logvar, generator))

    def loss_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """(reconstruction, KL), each per pixel and averaged over the batch, as van de Ven & Tolias weight them."""
        flat = self._flat(x)
        if flat.min() < 0 or flat.max() > 1:
            raise LifelongError(
                f"VAE: inputs must lie in [0, 1] for the Bernoulli reconstruction loss "
                f"(got values from {flat.min().item():.3g} to {flat.max().item():.3g}); rescale the images"
            )
        mu, logvar = self.encode(x)
        logits = self.decode_logits(self._reparameterize(mu, logvar, generator)).flatten(1)
        # BCE on logits equals BCE on sigmoid outputs, without log(0) when a pixel saturates.
        recon = F.binary_cross_entropy_with_logits(logits, flat, reduction="none").mean(dim=1).mean()
        kl = kl_to_standard_normal(mu, logvar).mean() / self.n_pixels
        return recon, kl

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative ELBO per pixel, averaged over the batch: reconstruction + KL (both weighted 1, as theirs)."""
        recon, kl = self.loss_terms(x, generator)
        return recon + kl

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from z ~ N(0, I); a seeded CPU generator makes the replayed inputs reproducible."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise LifelongError(f"VAE: the number of samples must be a whole number >= 0 (got {n!r})")
        device = self.to_pixels.weight.device
        # Drawn on the CPU so that one seeded generator gives the same z on every device.
        z = torch.randn(n, self.latent, generator=generator).to(device)
        return self.decode(z)

    def _reparameterize(self, mu, logvar, generator) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I), so gradients reach mu and logvar (the reparameterisation trick)."""
        # Without a generator, draw on mu's device; with one, on the CPU (as in sample) for reproducibility.
        eps = torch.randn_like(mu) if generator is None else torch.randn(mu.shape, generator=generator).to(mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise LifelongError(
                f"VAE: expected inputs shaped (N, {', '.join(map(str, self.input_shape))}) "
                f"(got {tuple(x.shape)}); build the VAE with input_shape = the stream's input shape"
            )
        return x.flatten(1)


def _check(input_shape, hidden, latent) -> tuple[tuple[int, ...], list[int]]:
    """Whole positive sizes, or one line that says which one is wrong."""
    shape = (input_shape,) if whole(input_shape) else input_shape
    if not isinstance(shape, Sequence) or isinstance(shape, str) or not shape or not all(whole(s) for s in shape):
        raise LifelongError(f"VAE: input_shape must be whole sizes >= 1 such as (28, 28) (got {input_shape!r})")
    hidden = hidden_sizes("VAE", hidden, "[400, 400]")
    if not whole(latent):
        raise LifelongError(f"VAE: {option('latent')} must be a whole number >= 1, such as 100 (got {latent!r})")
    return tuple(shape), hidden
