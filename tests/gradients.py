"""Helpers for tests that check gradient surgery by hand (GEM, A-GEM): a model's gradient as one flat
vector, and putting a flat vector back as the model's gradient."""

import torch


def flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def set_grad(model, flat: torch.Tensor) -> None:
    sizes = [p.numel() for p in model.parameters()]
    for p, v in zip(model.parameters(), flat.split(sizes), strict=True):
        p.grad.copy_(v.view_as(p))
