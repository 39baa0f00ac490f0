"""scikit-learn's bundled 8x8 handwritten digits (1797 images, UCI optdigits test set): no download.

The pixel values 0..16 are scaled to [0, 1]. scikit-learn ships no train/test split, so a fixed
stratified split (20 % test, seed independent of the run seed) is made here so that every run and
every user tests on the same images.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong.data.datasets import Dataset

TEST_FRACTION = 0.2
SPLIT_SEED = 1234


def load(data_dir: str | None = None, seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images / 16.0, dtype=torch.float32)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):  # stratified: the same fraction of each class goes to the test set
        idx = np.flatnonzero(bunch.target == c)
        test[rng.choice(idx, size=round(len(idx) * TEST_FRACTION), replace=False)] = True
    test_t = torch.from_numpy(test)
    return Dataset(
        "digits", images[~test_t], labels[~test_t], images[test_t], labels[test_t], [str(c) for c in range(10)]
    )
