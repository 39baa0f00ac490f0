"""A tiny synthetic image dataset for tests: 10 classes of 8x8 images, each a noisy class template.

Learnable in a few iterations, different enough under permutation to show forgetting, and made from a
seed in milliseconds, so tests never need files.
"""

from __future__ import annotations

import torch

from lifelong.data.datasets import Dataset

N_CLASSES, SIDE, TRAIN_PER_CLASS, TEST_PER_CLASS, NOISE = 10, 8, 40, 20, 0.35


def load(data_dir: str | None = None, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(10_000 + seed)
    templates = (torch.rand(N_CLASSES, SIDE, SIDE, generator=g) > 0.5).float()

    def sample(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(N_CLASSES).repeat_interleave(per_class)
        x = templates[y] + NOISE * torch.randn(len(y), SIDE, SIDE, generator=g)
        order = torch.randperm(len(y), generator=g)
        return x.clamp(0, 1)[order], y[order]

    train_x, train_y = sample(TRAIN_PER_CLASS)
    test_x, test_y = sample(TEST_PER_CLASS)
    return Dataset("synthetic", train_x, train_y, test_x, test_y, [str(c) for c in range(N_CLASSES)])
