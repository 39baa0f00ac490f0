"""A checkpoint on disk: two files in one folder, replaced atomically as a pair.

    checkpoint/
        state.json                   everything but tensors (JSON), and which tensors file goes with it:
                                     its name, size and sha256
        tensors-0003.safetensors     the tensors' storages, as raw bytes (safetensors: no pickles)

A new checkpoint first writes its tensors file under a new name (``tensors-<stages done>``), then
state.json; each file is written to a temporary name, fsynced, and renamed over the old one, and the
folder is fsynced so that the rename itself survives a power cut. state.json names its tensors file, so
a process killed at any moment leaves the previous pair valid: before state.json is renamed, it still
names the previous tensors file, which is deleted only afterwards. Reading checks the tensors file's
size and sha256 against state.json before using a byte of it.

``LIFELONG_TEST_KILL`` (for tests only) makes the process kill itself with SIGKILL at one point of the
checkpoint written after a given number of stages, e.g. ``tensors:2`` half-way through writing the
tensors of the checkpoint after stage 2; the points are ``tensors``, ``between`` (tensors renamed, state
not yet), ``state`` (half of state.json written) and ``after`` (the checkpoint complete).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
from pathlib import Path

import safetensors.torch
import torch

from lifelong.checkpoint.graph import CheckpointError

STATE = "state.json"
TEST_KILL = "LIFELONG_TEST_KILL"


def write(folder: Path, document: dict, tensors: dict[str, torch.Tensor], stages_done: int) -> None:
    """Replace the checkpoint in ``folder`` by ``document`` (JSON-able) and ``tensors``, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    data = safetensors.torch.save(tensors, metadata={"format": "lifelong checkpoint"})
    name = f"tensors-{stages_done:04d}.safetensors"
    write_atomically(folder / name, data, ("tensors", stages_done))
    _test_kill("between", stages_done)
    document = {**document, "tensors": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        text = json.dumps(document)
    except (TypeError, ValueError) as e:  # a value fit() or a method keeps that JSON cannot hold
        raise CheckpointError(f"cannot write the checkpoint's state as JSON ({e})") from None
    write_atomically(folder / STATE, text.encode(), ("state", stages_done))
    for old in folder.iterdir():  # the previous tensors file, and temporary files of a killed write
        if old.name != name and (old.name.startswith("tensors-") or old.name.endswith(".tmp")):
            with contextlib.suppress(OSError):
                old.unlink()
    _test_kill("after", stages_done)


def read(folder: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(document, tensors) of the checkpoint in ``folder``, or None when it holds none; a damaged one is a
    one-line CheckpointError."""
    path = folder / STATE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read the checkpoint {path} ({e}); check the file") from None
    try:
        document = json.loads(text)
        name, size, digest = document["tensors"], document["bytes"], document["sha256"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"the checkpoint {path} is damaged (not the JSON it should be)") from None
    tensors_path = folder / Path(name).name
    try:
        data = tensors_path.read_bytes()
    except OSError as e:
        raise CheckpointError(
            f"the checkpoint's tensors file {tensors_path} cannot be read ({e.strerror or e})"
        ) from None
    if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(
            f"the checkpoint's tensors file {tensors_path} does not match its checksum in {path} "
            f"({len(data)} bytes, {size} expected): it was damaged; the run cannot resume from it"
        )
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # safetensors' own error types
        raise CheckpointError(f"the checkpoint's tensors file {tensors_path} is not valid safetensors ({e})") from None
    return document, tensors


def write_atomically(path: Path, data: bytes, point: tuple[str, int] | None = None) -> None:
    """Readers see the old file or the whole new one, never a part, even if the process is killed (also the
    service's weight files). ``point``: where the test hook may kill the process half-way (see above)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            if point and os.environ.get(TEST_KILL):
                f.flush()
                _test_kill(*point)
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _test_kill(point: str, stages_done: int) -> None:
    if os.environ.get(TEST_KILL) == f"{point}:{stages_done}":
        os.kill(os.getpid(), signal.SIGKILL)
