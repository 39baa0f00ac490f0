"""minimnist: a small subset of MNIST shipped inside the package, so that the main job runs offline.

12 000 real MNIST digits (LeCun, Bottou, Bengio & Haffner 1998; the MNIST database by Yann LeCun,
Corinna Cortes and Christopher J. C. Burges), made from the four standard IDX files by ``make()``:

- 10 000 training images drawn from MNIST's training set and 2 000 test images from its test set,
  stratified (each class in its share of the whole set), without replacement, numpy seed 2024;
- each image average-pooled 2 × 2 (28 × 28 → 14 × 14) and rounded back to bytes.

Why it exists: the lecture's opening example (noisy digits, then clean ones) and a five-task stream
on which the regularisers close most of the gap between fine-tuning and joint training need more than
the 1 437 training images of scikit-learn's 8 × 8 digits, and both must run in under a minute on two
cores (benchmarks/main_job_search.py, results in benchmarks/results/main_job_search.md).

MNIST is available under the Creative Commons Attribution-Share Alike 3.0 licence; this subset is a
derived work under the same licence (see MINIMNIST-LICENSE.md beside this file), not under the code's
MIT licence. The file's sha256 is checked on every load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from lifelong.data.datasets import Dataset
from lifelong.errors import LifelongError

FILE = Path(__file__).with_name("minimnist.npz")
SHA256 = "d56f5c9437b54e4b28c706f730fdcd339fc1d2f148decf481f3b5d5f05c770f0"
N_TRAIN, N_TEST, SEED = 10_000, 2_000, 2024


def load(data_dir: str | None = None, seed: int = 0) -> Dataset:
    try:
        raw = FILE.read_bytes()
    except OSError as e:
        raise LifelongError(f"the bundled {FILE.name} cannot be read ({e}); reinstall lifelong") from None
    if hashlib.sha256(raw).hexdigest() != SHA256:
        raise LifelongError(f"the bundled {FILE} is corrupt (sha256 differs); reinstall lifelong")
    with np.load(FILE) as f:
        arrays = {k: f[k] for k in ("train_x", "train_y", "test_x", "test_y")}

    def images(a):
        return torch.from_numpy(a.astype(np.float32) / 255.0)

    def labels(a):
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(
        "minimnist",
        images(arrays["train_x"]),
        labels(arrays["train_y"]),
        images(arrays["test_x"]),
        labels(arrays["test_y"]),
        [str(c) for c in range(10)],
    )


def subset(data_dir: str, n_train: int = N_TRAIN, n_test: int = N_TEST, side: int = 14, seed: int = SEED) -> dict:
    """A stratified MNIST subset as uint8 arrays {train_x, train_y, test_x, test_y}: ``n_train`` images of
    the training set and ``n_test`` of the test set, each class in its share of the whole set, drawn
    without replacement with numpy ``seed``; average-pooled to ``side`` (28 or 14) and rounded to bytes."""
    from lifelong.data.datasets import mnist

    folder = mnist.find_files(data_dir)
    if folder is None:
        raise LifelongError(f"no MNIST IDX files in {data_dir}; give the folder that holds them")
    if side not in (14, 28):
        raise LifelongError(f"side must be 28 (the original) or 14 (2 x 2 pooled), got {side}")
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = mnist.read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", mnist.IMAGES_MAGIC)
        y = mnist.read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", mnist.LABELS_MAGIC)
        rng = np.random.default_rng(seed)
        pick = np.concatenate(  # each class in its share of the whole set (MNIST is not quite balanced)
            [rng.choice(np.flatnonzero(y == c), round(n * np.mean(y == c)), replace=False) for c in range(10)]
        )
        pick = np.sort(pick[:n])
        images = x[pick].astype(np.float32)
        if side == 14:
            images = images.reshape(len(pick), 14, 2, 14, 2).mean((2, 4))
        arrays[f"{split}_x"] = np.round(images).astype(np.uint8)
        arrays[f"{split}_y"] = y[pick].astype(np.uint8)
    return arrays


def make(data_dir: str, out: Path = FILE) -> str:
    """Rebuild the bundled file from the four MNIST IDX files in ``data_dir``; returns its sha256."""
    np.savez_compressed(out, **subset(data_dir))
    return hashlib.sha256(Path(out).read_bytes()).hexdigest()
