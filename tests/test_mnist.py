"""The MNIST loader on small IDX files made here: parsing, checksums, download path, clear errors."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from lifelong.data.datasets import mnist
from lifelong.errors import LifelongError


def idx_images(n, rows=28, cols=28, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
    return struct.pack(">iiii", 2051, n, rows, cols) + pixels.tobytes(), pixels


def idx_labels(n, seed=0):
    labels = np.random.default_rng(seed).integers(0, 10, size=n, dtype=np.uint8)
    return struct.pack(">ii", 2049, n) + labels.tobytes(), labels


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Four small MNIST-format files in tmp/src, with the loader's checksums pointed at them."""
    src = tmp_path / "src"
    src.mkdir()
    train_img, train_px = idx_images(12, seed=1)
    train_lab, train_y = idx_labels(12, seed=2)
    test_img, _ = idx_images(5, seed=3)
    test_lab, _ = idx_labels(5, seed=4)
    contents = {
        "train-images-idx3-ubyte.gz": train_img,
        "train-labels-idx1-ubyte.gz": train_lab,
        "t10k-images-idx3-ubyte.gz": test_img,
        "t10k-labels-idx1-ubyte.gz": test_lab,
    }
    sums = {}
    for name, raw in contents.items():
        packed = gzip.compress(raw)
        (src / name).write_bytes(packed)
        sums[name] = hashlib.sha256(packed).hexdigest()
    monkeypatch.setattr(mnist, "FILES", sums)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LIFELONG_DATA", raising=False)
    return src, train_px, train_y


def test_reads_idx_files_from_data_dir(files):
    src, train_px, train_y = files
    d = mnist.load(data_dir=str(src))
    assert d.train_x.shape == (12, 28, 28) and d.test_x.shape == (5, 28, 28)
    assert np.allclose(d.train_x.numpy(), train_px / 255.0)
    assert d.train_y.tolist() == train_y.tolist()


def test_environment_variable_is_a_data_dir(files, monkeypatch):
    src, _, _ = files
    monkeypatch.setenv("LIFELONG_DATA", str(src))
    assert len(mnist.load().train_y) == 12


def test_corrupt_file_is_refused_and_left_alone(files):
    src, _, _ = files
    path = src / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    before = path.read_bytes()
    with pytest.raises(LifelongError, match="corrupt"):
        mnist.load(data_dir=str(src))
    assert path.read_bytes() == before


def test_missing_files_in_data_dir_say_which(files, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LifelongError, match="lacks the MNIST files .*train-images"):
        mnist.load(data_dir=str(empty))


def test_download_verifies_and_caches(files):
    src, _, _ = files
    mnist.download(mnist.cache_dir(), mirrors=(src.as_uri() + "/",))
    assert len(mnist.load().train_y) == 12  # found in the cache, no data dir needed
    assert not list(mnist.cache_dir().glob("*.part"))


def test_offline_download_fails_clearly_and_leaves_nothing(files):
    with pytest.raises(LifelongError, match="could not be downloaded.*give it as data_dir"):
        mnist.download(mnist.cache_dir(), mirrors=("http://127.0.0.1:9/",), timeout=2)
    assert not list(mnist.cache_dir().glob("*"))


def test_a_download_with_the_wrong_checksum_is_not_kept(files, monkeypatch):
    src, _, _ = files
    monkeypatch.setitem(mnist.FILES, "t10k-labels-idx1-ubyte.gz", "0" * 64)
    with pytest.raises(LifelongError, match="checksum mismatch"):
        mnist.download(mnist.cache_dir(), mirrors=(src.as_uri() + "/",))
    assert not (mnist.cache_dir() / "t10k-labels-idx1-ubyte.gz").exists()


def test_truncated_idx_is_an_error(tmp_path):
    raw, _ = idx_images(3)
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(LifelongError, match="truncated"):
        mnist.read_idx(path, 2051)
    path.write_bytes(b"not gzip")
    with pytest.raises(LifelongError, match="gzip"):
        mnist.read_idx(path, 2051)
