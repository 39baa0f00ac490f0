"""Tensors on disk as safetensors files with a sha256 checksum: a version's weights, a method's state.

Never pickles: ``torch.save`` / ``torch.load`` unpickle, and unpickling runs code, so a weights file
that someone could replace would be a way in. safetensors stores raw tensors and a JSON header only
(https://github.com/huggingface/safetensors), and the string metadata of its header carries the JSON
half of a method's state (method_state.py).

Writing: to a temporary name in the same folder, flushed and fsynced, renamed over the final name, and
the folder fsynced, so a crash leaves either the old file or the whole new one. The sha256 of the bytes
is recorded in the store (versions.weights_sha256); loading reads the bytes once, checks the sum before
parsing anything, and refuses a mismatch with a one-line error: a damaged or tampered file is never
served.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from lifelong.checkpoint.files import write_atomically
from lifelong.serve.errors import ServeError

FOLDER = "weights"


class ChecksumError(ServeError):
    status = 500


def save(folder: Path, name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    """Write ``tensors`` (and string ``metadata``) to ``folder/name``; returns the file's sha256 (hex)."""
    folder.mkdir(parents=True, exist_ok=True)
    # safetensors refuses tensors that share memory (views of one buffer): each gets its own copy.
    own = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = save_bytes(own, metadata=metadata)
    path = folder / name
    try:
        write_atomically(path, data)
    except OSError as e:
        raise ServeError(
            f"cannot write {path} ({e.strerror or e}); free disk space or fix the folder's permissions"
        ) from None
    return hashlib.sha256(data).hexdigest()


def load(folder: Path, name: str, sha256: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of ``folder/name``, after checking its bytes against ``sha256``."""
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ChecksumError(
            f"cannot read {path} ({e.strerror or e}); restore the file or serve another version"
        ) from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ChecksumError(
            f"{path} does not match the sha256 recorded for it (changed or damaged); "
            "restore it from a backup or serve another version"
        )
    return load_bytes(data), _metadata(data)


def _metadata(data: bytes) -> dict[str, str]:
    """The header's ``__metadata__`` (safetensors' torch loader returns only the tensors)."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]).get("__metadata__", {}) or {}
