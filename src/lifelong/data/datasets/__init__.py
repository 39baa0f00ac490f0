"""Datasets as in-memory tensors: images (N, H, W) float32 in [0, 1] and labels (N,) int64."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lifelong.errors import LifelongError


@dataclass(eq=False)
class Dataset:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: list[str]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def load(name: str, data_dir: str | None = None, seed: int = 0) -> Dataset:
    """Load a dataset by name: ``minimnist`` and ``digits`` (bundled, offline), ``mnist`` (files or download),
    ``synthetic`` (generated, for tests)."""
    from lifelong.data.datasets import digits, minimnist, mnist, synthetic

    loaders = {"digits": digits.load, "minimnist": minimnist.load, "mnist": mnist.load, "synthetic": synthetic.load}
    if name not in loaders:
        raise LifelongError(f"unknown dataset {name!r}; choose one of: {', '.join(loaders)}")
    return loaders[name](data_dir=data_dir, seed=seed)


DATASETS = ("minimnist", "digits", "mnist", "synthetic")
