"""Hyper-parameter sweeps score on a validation split of the training data, never on the test set."""

import pytest
import torch

from lifelong import benchmarks, tune
from lifelong.cli import main
from lifelong.config import resolve
from lifelong.data.validation import holdout
from lifelong.errors import LifelongError
from lifelong.results import Store


def test_holdout_splits_training_data_and_leaves_the_test_set_out():
    s = benchmarks.permuted("synthetic", n_tasks=2, seed=0)
    v = holdout(s, 0.25, seed=0)
    for orig, task in zip(s, v, strict=True):
        n = len(orig.train_y)
        assert len(task.test_y) == round(n * 0.25) and len(task.train_y) == n - round(n * 0.25)
        train_rows = {tuple(r) for r in orig.train_x.flatten(1).tolist()}
        assert all(tuple(r) in train_rows for r in task.test_x.flatten(1).tolist())  # from training data
        held, kept = task.test_x.flatten(1), task.train_x.flatten(1)
        assert not (torch.cdist(held, kept) == 0).any()  # validation and training are disjoint
    with pytest.raises(LifelongError, match="between 0 and 1"):
        holdout(s, 1.5)


def test_sweep_returns_one_point_per_value_and_best_takes_the_highest_validation_acc():
    cfg = resolve(
        None, {"benchmark": "permuted-synthetic", "tasks": 2, "iterations": 10, "seeds": [0, 1], "method": "finetune"}
    )
    points = tune.sweep(cfg, "lr", ["0.001", "0.1"], fraction=0.2)
    assert [p["value"] for p in points] == [0.001, 0.1]
    assert all(p["acc_sd"] >= 0 for p in points)
    assert tune.best(points) is max(points, key=lambda p: p["acc"])
    assert tune.best([{"acc": 0.5}, {"acc": 0.5}]) == {"acc": 0.5}


def test_sweep_checks_the_parameter():
    cfg = resolve(None, {"benchmark": "permuted-synthetic", "tasks": 2, "method": "finetune"})
    with pytest.raises(LifelongError, match="not a training setting"):
        tune.sweep(cfg, "benchmark", ["split-digits"])
    with pytest.raises(LifelongError, match="lr got 'abc'"):
        tune.sweep(cfg, "lr", ["abc"])


def test_tune_cli_records_validation_runs_and_a_final_test_run(tmp_path, capsys):
    db = tmp_path / "r.db"
    args = [
        "tune",
        "--param",
        "lr",
        "--values",
        "0.01,0.2",
        "--benchmark",
        "permuted-synthetic",
        "--tasks",
        "2",
        "--method",
        "finetune",
    ]
    code = main([*args, "--iterations", "10", "--store", str(db), "--report", "no"])
    out = capsys.readouterr().out
    assert code == 0 and "<- best" in out and "on the test sets" in out
    runs = Store(db).runs()
    assert [r["config"]["validation_fraction"] for r in runs] == [0.1, 0.1, None]
