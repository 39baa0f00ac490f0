"""Scenarios: label units and logit masks for training and for each evaluation view."""

import pytest
import torch

from lifelong import benchmarks
from lifelong.data.task import RawTask, make_stream
from lifelong.errors import LifelongError


def raw(name, labels, n=6):
    y = torch.tensor(labels).repeat(n // len(labels))
    x = torch.rand(len(y), 2, 2)
    return RawTask(name, x, y, x, y, tuple(labels))


def split_tasks():
    return [raw("a", [3, 7]), raw("b", [1, 5]), raw("c", [0, 2])]


def allowed(mask_row):
    return torch.nonzero(mask_row == 0).flatten().tolist()


def test_task_and_class_scenarios_give_each_task_its_own_units_in_label_order():
    s = make_stream("s", split_tasks(), "class", (2, 2))
    assert [t.classes for t in s] == [(0, 1), (2, 3), (4, 5)]
    assert s.n_classes == 6
    # dataset label 7 of task a is its second label -> unit 1; label 5 of task b -> unit 3
    assert set(s[0].train_y.tolist()) == {0, 1} and set(s[1].train_y.tolist()) == {2, 3}
    assert s.class_names[1] == "a:7"


def test_domain_scenario_shares_units_across_tasks():
    s = make_stream("s", split_tasks(), "domain", (2, 2))
    assert s.n_classes == 2 and all(t.classes == (0, 1) for t in s)
    assert s.train_masks([1]) is None and s.eval_masks(1) == {"domain": None}


def test_permuted_tasks_get_offset_units_in_task_il():
    s = benchmarks.permuted("synthetic", n_tasks=3, scenario="task")
    assert s.n_classes == 30 and s[2].classes == tuple(range(20, 30))
    assert s[2].train_y.min() >= 20


def test_task_il_training_mask_allows_only_the_task_units():
    s = make_stream("s", split_tasks(), "task", (2, 2))
    table = s.train_masks([1])
    assert allowed(table[1]) == [2, 3]
    assert allowed(table[0]) == [0, 1]  # cumulative/joint stages look each sample's own row up


def test_class_il_training_mask_allows_every_unit_seen_so_far():
    s = make_stream("s", split_tasks(), "class", (2, 2))
    table = s.train_masks([1])
    assert allowed(table[0]) == [0, 1, 2, 3] and allowed(table[1]) == [0, 1, 2, 3]


def test_eval_views_task_and_class():
    s = make_stream("s", split_tasks(), "task", (2, 2))
    views = s.eval_masks(after=1)
    assert allowed(views["task"][0]) == [0, 1]
    assert allowed(views["class"][0]) == [0, 1, 2, 3]
    # a future task is scored among the seen units plus its own, not zero by construction
    assert allowed(views["class"][2]) == [0, 1, 2, 3, 4, 5]
    # before any training: each task only competes with itself
    assert allowed(s.eval_masks(after=-1)["class"][1]) == [2, 3]


def test_masked_logits_pick_only_allowed_units():
    s = make_stream("s", split_tasks(), "task", (2, 2))
    logits = torch.tensor([[9.0, 1.0, 2.0, 3.0, 0.0, 0.0]])
    assert (logits + s.eval_masks(2)["task"][1]).argmax(1).item() == 3
    assert (logits + s.eval_masks(2)["class"][1]).argmax(1).item() == 0


def test_domain_needs_equal_class_counts_and_scenarios_are_checked():
    with pytest.raises(LifelongError, match="same number of classes"):
        make_stream("s", [raw("a", [0, 1]), raw("b", [2, 3, 4])], "domain", (2, 2))
    with pytest.raises(LifelongError, match="unknown scenario"):
        make_stream("s", split_tasks(), "multi", (2, 2))
