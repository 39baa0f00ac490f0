"""The multilayer perceptron of the lecture (3 hidden layers of 50 ReLU units by default).

One output layer for the whole stream. In task-incremental streams each task owns its own output
units and the logits are masked to them, which makes this network exactly a multi-headed one (one
head per task, shared body); in domain-incremental streams all tasks share one head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lifelong.errors import LifelongError
from lifelong.models.sizes import hidden_sizes, whole


class MLP(nn.Module):
    def __init__(self, input_size: int, hidden: Sequence[int] = (50, 50, 50), n_classes: int = 10):
        super().__init__()
        hidden = _check_sizes(input_size, hidden, n_classes)
        sizes = [input_size, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], n_classes)
        self.hidden = tuple(hidden)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _check_sizes(input_size, hidden, n_classes) -> list[int]:
    """Whole positive sizes, or one line that says which one is wrong."""
    if not whole(input_size):
        raise LifelongError(f"MLP: input_size must be a whole number >= 1 (got {input_size!r}); use stream.input_size")
    if not whole(n_classes):
        raise LifelongError(f"MLP: n_classes must be a whole number >= 1 (got {n_classes!r}); use stream.n_classes")
    return hidden_sizes("MLP", hidden, "[50, 50, 50]")


def mlp_for(stream, hidden: Sequence[int] = (50, 50, 50)) -> MLP:
    """An MLP sized for a stream's inputs and output units."""
    return MLP(math.prod(stream.input_shape), hidden, stream.n_classes)
