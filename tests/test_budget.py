"""The memory a stream needs is known before it is built, and a stream that cannot fit is refused."""

import pytest

from lifelong import LifelongError, benchmarks
from lifelong.data import budget


def test_stream_bytes_counts_every_copy_and_the_r_matrices():
    # permuted: 3 tasks x (100 train + 20 test) samples x (8x8 float32 + one int64 label), plus 2 views of 4x3 R
    assert budget.stream_bytes("permuted", 100, 20, (8, 8), 3) == 3 * 120 * (4 * 64 + 8) + 2 * 8 * 4 * 3
    # samples_per_task caps the training copies only; split deals the dataset out once, whatever the tasks
    assert budget.stream_bytes("noisy", 100, 20, (8, 8), 3, samples_per_task=10) == 3 * 30 * 264 + 2 * 8 * 12
    assert budget.stream_bytes("split", 100, 20, (8, 8), 5) == 120 * 264 + 2 * 8 * 6 * 5


def test_a_stream_larger_than_free_memory_is_refused_with_the_estimate():
    with pytest.raises(LifelongError, match=r"needs? about 1\.0 GB of memory, but 512\.0 MB is free; use fewer tasks"):
        budget.check_fits(2**30, "permuted-mnist with 5 tasks", free=2**29)
    budget.check_fits(2**20, "small", free=2**29)  # fits: no error


def test_the_check_runs_before_anything_is_built(monkeypatch):
    monkeypatch.setattr(budget, "free_bytes", lambda: 10**6)  # pretend 1 MB is free
    with pytest.raises(LifelongError, match="permuted-synthetic with 50 tasks would need about"):
        benchmarks.permuted("synthetic", n_tasks=50)
