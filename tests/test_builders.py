"""Stream builders: permutations, rotations, splits, padding, sub-sampling and task order."""

import pytest
import torch

from lifelong import benchmarks
from lifelong.data import builders
from lifelong.data.datasets import Dataset, load
from lifelong.errors import LifelongError
from lifelong.experiment import build_stream


@pytest.fixture(scope="module")
def data():
    return load("synthetic")


def test_permuted_keeps_task_one_and_permutes_the_rest_with_a_fixed_permutation(data):
    tasks = builders.permuted(data, 3, seed=0)
    assert torch.equal(tasks[0].train_x, data.train_x)
    flat, flat2 = data.train_x.flatten(1), tasks[1].train_x.flatten(1)
    assert torch.equal(flat.sort(1).values, flat2.sort(1).values)  # the same pixels, rearranged
    assert not torch.equal(flat, flat2)
    # An image whose pixel k holds k reveals the permutation; train and test must share it.
    index_image = torch.arange(64, dtype=torch.float32).reshape(1, 8, 8)
    ix = type(data)("ix", index_image, torch.tensor([0]), index_image.clone(), torch.tensor([0]), ["0"])
    t2, t3 = builders.permuted(ix, 3, seed=5)[1:]
    assert torch.equal(t2.train_x, t2.test_x)
    assert sorted(t2.train_x.flatten().tolist()) == list(range(64))
    assert not torch.equal(t2.train_x, t3.train_x)  # each task its own permutation
    assert builders.permuted(data, 2, seed=0)[1].train_x.equal(tasks[1].train_x)  # seeded
    assert not builders.permuted(data, 2, seed=1)[1].train_x.equal(tasks[1].train_x)


def test_permute_first_and_padding(data):
    t = builders.permuted(data, 1, seed=0, permute_first=True, pad_to=12)[0]
    assert t.train_x.shape[1:] == (12, 12)
    assert not torch.equal(t.train_x, builders.pad(data.train_x, 12))
    padded = builders.pad(data.train_x, 12)
    assert torch.equal(padded[:, 2:10, 2:10], data.train_x) and padded[:, 0].abs().sum() == 0


def test_rotation_by_ninety_degrees_matches_rot90():
    img = torch.zeros(1, 8, 8)
    img[0, 1, 5] = 1.0
    turned = builders.rotate(img, 90.0)
    assert torch.allclose(turned, torch.rot90(img, k=1, dims=(1, 2)), atol=1e-5) or torch.allclose(
        turned, torch.rot90(img, k=-1, dims=(1, 2)), atol=1e-5
    )
    assert torch.allclose(builders.rotate(img, 0.0), img, atol=1e-6)


def test_rotated_needs_one_angle_per_task(data):
    assert [t.name for t in builders.rotated(data, 3, angles=[0, 45, 90])] == ["rot0", "rot45", "rot90"]
    with pytest.raises(LifelongError, match="one per task"):
        builders.rotated(data, 3, angles=[0, 45])


def test_split_deals_classes_in_order(data):
    tasks = builders.split(data, 3, classes_per_task=2, class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert [t.labels for t in tasks] == [(9, 8), (7, 6), (5, 4)]
    assert set(tasks[1].train_y.tolist()) == {7, 6} and set(tasks[1].test_y.tolist()) == {7, 6}


def test_split_rejects_more_tasks_than_classes(data):
    with pytest.raises(LifelongError, match="cannot make 11 tasks from 10 classes"):
        builders.split(data, 11)
    with pytest.raises(LifelongError, match="cannot make 3 tasks of 4 classes"):
        builders.split(data, 3, classes_per_task=4)
    with pytest.raises(LifelongError, match="every class of 0..9 exactly once"):
        builders.split(data, 2, class_order=[0, 0, 1])


def test_samples_per_task_and_task_order(data):
    tasks = builders.permuted(data, 3, seed=0, samples_per_task=50)
    assert all(len(t.train_y) == 50 for t in tasks) and len(tasks[0].test_y) == len(data.test_y)
    s = benchmarks.permuted("synthetic", n_tasks=3, task_order=[2, 0, 1])
    assert [t.name for t in s] == ["perm3", "perm1", "perm2"] and [t.id for t in s] == [0, 1, 2]
    with pytest.raises(LifelongError, match=r"task_order must list each of 0..2 once"):
        benchmarks.permuted("synthetic", n_tasks=3, task_order=[0, 0, 1])


def test_zero_tasks_and_unknown_names_are_errors():
    with pytest.raises(LifelongError, match="at least 1"):
        benchmarks.permuted("synthetic", n_tasks=0)
    with pytest.raises(LifelongError, match="unknown benchmark"):
        benchmarks.build("shuffled-digits")
    with pytest.raises(LifelongError, match="unknown dataset"):
        load("cifar")


def test_digits_is_offline_and_stratified():
    d = load("digits")
    assert d.train_x.shape[1:] == (8, 8) and 0 <= d.train_x.min() and d.train_x.max() <= 1
    assert len(d.train_y) + len(d.test_y) == 1797
    counts = torch.bincount(d.test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def _grey(n: int = 300, side: int = 8, value: float = 0.5):
    """Images of one grey level, far from 0 and 1: small noise on them is never clipped."""
    x = torch.full((n, side, side), value)
    y = torch.arange(n) % 10
    return Dataset("grey", x, y, x.clone(), y.clone(), [str(c) for c in range(10)])


def test_noisy_tasks_are_the_whole_dataset_with_their_own_noise_level(data):
    tasks = builders.noisy(data, 3, noise=[0.6, 0.3, 0.0], seed=0)
    assert [t.name for t in tasks] == ["noise0.6", "noise0.3", "noise0"]
    for t in tasks:
        assert t.train_x.shape == data.train_x.shape and t.test_x.shape == data.test_x.shape
        assert torch.equal(t.train_y, data.train_y) and torch.equal(t.test_y, data.test_y)
        assert t.labels == tuple(range(10))
        assert 0 <= t.train_x.min() and t.train_x.max() <= 1 and 0 <= t.test_x.min() and t.test_x.max() <= 1
    assert torch.equal(tasks[2].train_x, data.train_x) and torch.equal(tasks[2].test_x, data.test_x)
    s = benchmarks.build("noisy-synthetic", n_tasks=2, noise=[0.5, 0.0])
    assert s.scenario == "domain" and [t.name for t in s] == ["noise0.5", "noise0"]


def test_noise_sd_of_each_task_matches_its_level():
    grey = _grey()
    levels = [0.1, 0.05, 0.0]
    for t, sd in zip(builders.noisy(grey, 3, noise=levels, seed=3), levels, strict=True):
        for x in (t.train_x, t.test_x):
            d = (x - 0.5).flatten()  # 19 200 draws; at sd <= 0.1 the clip at 0.5 away is >= 5 sd off
            assert abs(d.mean().item()) < 0.005
            assert d.std().item() == pytest.approx(sd, rel=0.03, abs=1e-7)
    # Strong noise is clipped to [0, 1]: pixels pile up at both ends, in equal shares around mid-grey.
    x = builders.noisy(grey, 1, noise=[2.0], seed=0)[0].train_x
    assert x.min() == 0 and x.max() == 1
    low, high = (x == 0).float().mean().item(), (x == 1).float().mean().item()
    assert low == pytest.approx(0.4013, abs=0.01) and high == pytest.approx(0.4013, abs=0.01)  # P(z > 0.25)


def test_noise_is_fixed_by_the_seed_and_drawn_separately_for_train_and_test():
    grey = _grey()
    a, b = builders.noisy(grey, 2, noise=[0.1, 0.1], seed=0), builders.noisy(grey, 2, noise=[0.1, 0.1], seed=0)
    assert all(torch.equal(s.train_x, t.train_x) and torch.equal(s.test_x, t.test_x) for s, t in zip(a, b, strict=True))
    assert not torch.equal(a[0].train_x, a[0].test_x)  # same images, own noise draws
    assert not torch.equal(a[0].train_x, a[1].train_x)  # each task its own draws
    assert not torch.equal(builders.noisy(grey, 2, noise=[0.1, 0.1], seed=1)[0].train_x, a[0].train_x)


def test_default_noise_goes_evenly_down_to_clean():
    assert builders.noise_levels(4) == pytest.approx([0.6, 0.4, 0.2, 0.0])
    assert builders.noise_levels(1) == [0.0]
    assert [t.name for t in benchmarks.noisy("synthetic", n_tasks=3)] == ["noise0.6", "noise0.3", "noise0"]


@pytest.mark.parametrize(
    "noise, message",
    [([0.5], "gives 1 noise levels for 2 tasks"), ([0.5, -0.1], "at least 0"), ([0.5, float("nan")], "finite")],
)
def test_bad_noise_levels_are_one_line_errors(data, noise, message):
    with pytest.raises(LifelongError, match=message) as e:
        builders.noisy(data, 2, noise=noise)
    assert "noise" in str(e.value) and "\n" not in str(e.value)


def test_noise_applies_to_noisy_benchmarks_only():
    options = {"tasks": 2, "scenario": None, "data_dir": None, "samples_per_task": None, "task_order": None}
    with pytest.raises(LifelongError, match="applies to noisy benchmarks"):
        build_stream("permuted-synthetic", {**options, "noise": [0.5, 0.0]}, seed=0)
    assert [t.name for t in build_stream("noisy-synthetic", {**options, "noise": [0.5, 0.0]}, seed=0)] == [
        "noise0.5",
        "noise0",
    ]
