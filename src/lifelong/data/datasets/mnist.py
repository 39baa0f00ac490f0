"""MNIST (LeCun et al. 1998): the four standard IDX gz files, verified against their published sha256.

Where the files are looked for, in order: ``data_dir`` (``--data-dir``), ``$LIFELONG_DATA``, then the
cache ``~/.cache/lifelong/mnist`` (``$XDG_CACHE_HOME`` respected). If none holds them, they are
downloaded once into the cache, verified, and only then moved into place, so a failed or corrupt
download never leaves a file that looks good.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from lifelong.data.datasets import Dataset
from lifelong.errors import LifelongError, option

FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "lifelong" / "mnist"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_files(data_dir: str | None) -> Path | None:
    """The first candidate folder that holds all four files (directly or in a ``mnist`` subfolder)."""
    candidates = [data_dir, os.environ.get("LIFELONG_DATA"), str(cache_dir())]
    for base in filter(None, candidates):
        for folder in (Path(base), Path(base) / "mnist"):
            if all((folder / name).is_file() for name in FILES):
                return folder
    return None


def download(target: Path, mirrors=MIRRORS, timeout: float = 30.0) -> None:
    """Fetch the missing files into ``target``; each is verified before it is moved into place."""
    target.mkdir(parents=True, exist_ok=True)
    for name, expected in FILES.items():
        if (target / name).is_file():
            continue
        errors = []
        for mirror in mirrors:
            fd, tmp = tempfile.mkstemp(dir=target, suffix=".part")
            os.close(fd)
            try:
                with urllib.request.urlopen(mirror + name, timeout=timeout) as r, open(tmp, "wb") as f:
                    f.write(r.read())
                if sha256(Path(tmp)) != expected:
                    raise OSError("checksum mismatch")
                os.replace(tmp, target / name)
                break
            except OSError as e:
                errors.append(f"{mirror}: {getattr(e, 'reason', e)}")
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        else:
            raise LifelongError(
                f"MNIST file {name} is not on this machine and could not be downloaded "
                f"({'; '.join(errors)}); put the four MNIST .gz files in a folder and give it as "
                f"{option('data_dir')} (or set LIFELONG_DATA), or copy them to {target}"
            )


def read_idx(path: Path, magic: int) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as e:
        raise LifelongError(f"{path} is not a readable gzip file ({e}); replace it with the original") from e
    header = np.frombuffer(raw[:4], dtype=">i4")[0] if len(raw) >= 4 else -1
    if header != magic:
        raise LifelongError(f"{path} is not an IDX file of the expected kind; replace it with the original")
    dims = magic % 256
    shape = tuple(int(d) for d in np.frombuffer(raw[4 : 4 + 4 * dims], dtype=">i4"))
    body = np.frombuffer(raw[4 + 4 * dims :], dtype=np.uint8)
    if body.size != int(np.prod(shape)):
        raise LifelongError(f"{path} is truncated; replace it with the original")
    return body.reshape(shape)


def load(data_dir: str | None = None, seed: int = 0) -> Dataset:
    folder = find_files(data_dir)
    if folder is None:
        if data_dir:
            missing = [n for n in FILES if not (Path(data_dir) / n).is_file()]
            raise LifelongError(
                f"{option('data_dir')} {data_dir} lacks the MNIST files {', '.join(missing)}; "
                "put the four .gz files there (names as on the MNIST site)"
            )
        folder = cache_dir()
        download(folder)
    for name, expected in FILES.items():
        if sha256(folder / name) != expected:
            raise LifelongError(
                f"{folder / name} is corrupt (sha256 differs from the published one); "
                "delete it and put the original file there"
            )

    def images(name):
        return torch.from_numpy(read_idx(folder / name, IMAGES_MAGIC).astype(np.float32) / 255.0)

    def labels(name):
        return torch.from_numpy(read_idx(folder / name, LABELS_MAGIC).astype(np.int64))

    return Dataset(
        "mnist",
        images("train-images-idx3-ubyte.gz"),
        labels("train-labels-idx1-ubyte.gz"),
        images("t10k-images-idx3-ubyte.gz"),
        labels("t10k-labels-idx1-ubyte.gz"),
        [str(c) for c in range(10)],
    )
