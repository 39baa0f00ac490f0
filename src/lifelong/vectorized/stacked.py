"""S MLPs of one architecture as one model whose every parameter has a leading seed dimension.

Each linear layer of seed s computes x_s W_sᵀ + b_s; stacked, the layer is one batched matrix product
over the seeds, ``baddbmm(b, x, Wᵀ)`` on (S, batch, in) inputs, and the backward pass is two more
(dx = g W, dW = gᵀ x) and a sum (db). The seeds share no arithmetic: each output element is the same
dot product a separate seed's ``nn.Linear`` computes, so S stacked seeds equal S separate ones up to the
order in which the matrix kernels add (about 1e-7 relative; tests/test_vectorized.py).

Why batched products and not ``torch.func`` (``stack_module_state`` + ``functional_call`` + ``vmap``):
they are faster here. CPU ms of one SGD step of 10 seeds, 784 inputs, one thread, on the 2-core
machine (``python benchmarks/vectorized_seeds.py --steps``): 3 x 50 at batch 32, 1.92 batched against
3.04 with vmap; at batch 128, 6.25 against 7.89; 2 x 100 at batch 32, 3.30 against 5.68; at 128, 9.03
against 11.49. vmap's batching layer adds its own work to each of a step's many small operations. The
layer's backward is written out (``_Linear``) so that dW comes out in the parameter's own (S, out, in)
layout: left to autograd, the gradient of ``Wᵀ`` is transposed and copied into that layout on every
step (27 % of a step, profiled).

The per-seed models stay: each seed's ``MLP`` gets its parameters rebound to views of the stacked
tensors, so the hooks a method runs once per task (importance estimates, anchors) read that seed's
current weights through its own model, and the models end trained, as fit() leaves its model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lifelong.models.mlp import MLP


class _Linear(torch.autograd.Function):
    """x Wᵀ + b for every seed at once: x (S, B, in), W (S, out, in), b (S, out)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        dx = torch.bmm(g, weight) if ctx.needs_input_grad[0] else None
        return dx, torch.bmm(g.transpose(1, 2), x), g.sum(1)


class StackedMLP:
    """The parameters of S MLPs stacked along a new first dimension, and their batched forward pass."""

    def __init__(self, models: Sequence[MLP]):
        first = models[0]
        names = [name for name, _ in first.named_parameters()]
        self.size = len(models)
        # Leaves the optimizer steps: one (S, *shape) tensor per parameter of the MLP, in its order.
        self.params = [torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n in names]
        for p in self.params:
            p.requires_grad_(True)
        self.weights, self.biases = self.params[0::2], self.params[1::2]
        for s, model in enumerate(models):
            owners = [model.get_submodule(n.rpartition(".")[0]) for n in names]
            for owner, name, p in zip(owners, names, self.params, strict=True):
                owner._parameters[name.rpartition(".")[2]] = nn.Parameter(p.detach()[s])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (S, B, C) of each seed's own inputs x (S, B, *input_shape)."""
        h = x.reshape(x.shape[0], x.shape[1], -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = _Linear.apply(h, w, b)
            if i < last:
                h = torch.relu(h)
        return h

    @torch.no_grad()
    def shared(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (S, B, C) of every seed on the same inputs x (B, *input_shape): the first layer of all
        seeds is one matrix product (B, in) @ (in, S·out) instead of S small ones."""
        S, w, b = self.size, self.weights[0], self.biases[0]
        h = torch.addmm(b.reshape(-1), x.reshape(len(x), -1), w.reshape(-1, w.shape[2]).t())
        h = h.view(len(x), S, -1).transpose(0, 1)
        for w, b in zip(self.weights[1:], self.biases[1:], strict=True):
            h = torch.baddbmm(b.unsqueeze(1), torch.relu(h), w.transpose(1, 2))
        return h
