"""The bundled MNIST subset: what it holds, and a damaged file is refused rather than read."""

import shutil

import pytest
import torch

from lifelong import LifelongError
from lifelong.data.datasets import minimnist


def test_it_holds_10000_plus_2000_14x14_digits_in_every_class():
    data = minimnist.load()
    assert data.train_x.shape == (10_000, 14, 14) and data.test_x.shape == (2_000, 14, 14)
    assert 0.0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1.0
    counts = torch.bincount(data.train_y, minlength=10)
    assert counts.min() > 800 and counts.sum() == 10_000  # stratified: about MNIST's shares (9.0-11.2 %)


def test_a_damaged_file_is_refused_with_what_to_do(tmp_path, monkeypatch):
    damaged = tmp_path / "minimnist.npz"
    shutil.copy(minimnist.FILE, damaged)
    with open(damaged, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    monkeypatch.setattr(minimnist, "FILE", damaged)
    with pytest.raises(LifelongError, match="is corrupt .*reinstall lifelong"):
        minimnist.load()
