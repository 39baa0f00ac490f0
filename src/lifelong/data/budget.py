"""How much memory a stream will take, known before it is built, so that an impossible request
(``--tasks 100000``) is refused with the estimate instead of swapping the machine to a halt.

Every task of a permuted, rotated or noisy stream is a full copy of the dataset (float32 inputs, int64
labels); a split stream deals the dataset out once. The R matrices add (T+1) x T floats per view.
"""

from __future__ import annotations

import math
import os

from lifelong.errors import LifelongError, option

# Builders whose every task holds a transformed copy of the whole dataset (or of samples_per_task of it).
COPYING_BUILDERS = ("permuted", "rotated", "noisy")
# A stream may use at most this share of the memory that is free now: training needs room too.
SHARE_OF_FREE = 0.7
# Streams larger than this get a progress line while they are built.
LARGE = 256 * 2**20


def stream_bytes(
    kind: str,
    n_train: int,
    n_test: int,
    sample_shape: tuple[int, ...],
    n_tasks: int,
    samples_per_task: int | None = None,
) -> int:
    """Bytes of a stream's tensors (inputs float32, labels int64) plus its R matrices (two views)."""
    per_sample = 4 * math.prod(sample_shape) + 8
    if kind in COPYING_BUILDERS:
        train = min(n_train, samples_per_task) if samples_per_task else n_train
        data = n_tasks * (train + n_test) * per_sample
    else:  # split: each class once
        data = (n_train + n_test) * per_sample
    results = 2 * 8 * (n_tasks + 1) * n_tasks
    return data + results


def free_bytes() -> int | None:
    """Memory available now (Linux: MemAvailable), or None when it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_fits(need: int, what: str, free: int | None = None) -> None:
    """Refuse, with the estimate, a stream that cannot fit in the memory free now."""
    free = free_bytes() if free is None else free
    if free is not None and need > SHARE_OF_FREE * free:
        raise LifelongError(
            f"{what} would need about {human(need)} of memory, but {human(free)} is free; "
            f"use fewer tasks ({option('tasks')}) or fewer samples per task ({option('samples_per_task')})"
        )
