"""The reference points on the permuted offline digits: finetune forgets, joint does not."""

import numpy as np
import pytest
import torch

import lifelong as ll


@pytest.fixture(scope="module")
def digits():
    return ll.benchmarks.permuted("digits", n_tasks=3, seed=0)


def run(stream, name, **opts):
    torch.manual_seed(0)
    model = ll.models.MLP(stream.input_size, [50, 50, 50], stream.n_classes)
    return ll.fit(stream, model, ll.methods.create(name), epochs=opts.pop("epochs", 8), lr=0.1, **opts)


def test_finetune_forgets_on_permuted_digits(digits):
    r = run(digits, "finetune")
    assert r.R[1, 0] > 0.75  # it learned task 1 ...
    assert r.bwt < -0.25  # ... and lost much of it learning tasks 2 and 3


def test_joint_is_the_upper_bound_and_does_not_forget(digits):
    joint, finetune = run(digits, "joint"), run(digits, "finetune")
    assert joint.bwt == 0 and np.array_equal(joint.R[1], joint.R[-1])  # one stage, repeated rows
    assert joint.acc > finetune.acc + 0.2


def test_cumulative_keeps_old_tasks(digits):
    r = run(digits, "cumulative")
    assert r.bwt > -0.05 and r.acc > 0.8


def test_independent_uses_one_fresh_model_per_task(digits):
    r = run(digits, "independent")
    assert r.bwt == 0  # nothing is overwritten
    assert np.array_equal(r.R[1, 1:], r.R[0, 1:])  # untrained tasks are tested with the initial model
    # each model equals a fresh model trained on its task alone: the first one is finetune's first one
    assert r.R[1, 0] == run(digits, "finetune").R[1, 0]


def test_independent_does_not_support_class_incremental():
    s = ll.benchmarks.split("synthetic", n_tasks=2, scenario="class")
    with pytest.raises(ll.LifelongError, match="does not support the class-incremental"):
        run(s, "independent")
