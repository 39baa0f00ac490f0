"""Stream builders: permutations, rotations, splits, padding, sub-sampling and task order."""

import pytest
import torch

from lifelong import benchmarks
from lifelong.data import builders
from lifelong.data.datasets import load
from lifelong.errors import LifelongError


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
