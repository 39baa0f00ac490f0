"""Task affinity (lifelong.studies.affinity): what learning task i first does for task j (forward gain) and
what learning j next does to i (backward loss), for every ordered pair, in T² trainings; and
`lifelong affinity` end to end."""

import dataclasses

import numpy as np
import pytest
import torch

from lifelong import LifelongError, benchmarks, config
from lifelong.cli import main
from lifelong.models import MLP
from lifelong.studies import affinity

SETTINGS = {"iterations": 40, "lr": 0.1, "batch_size": 10, "seed": 0}


def model_for(stream):
    def make():
        torch.manual_seed(0)  # every source starts from the same initialisation
        return MLP(stream.input_size, [16], stream.n_classes)

    return make


def identical_tasks(n: int):
    """One permuted-synthetic task, n times: the same training and test data under n names."""
    one = benchmarks.permuted("synthetic", n_tasks=1, seed=0)
    tasks = [dataclasses.replace(one.tasks[0], id=k, name=f"copy{k + 1}") for k in range(n)]
    return dataclasses.replace(one, tasks=tasks)


def test_identical_tasks_gain_forward_and_forget_nothing():
    stream = identical_tasks(3)
    aff = affinity.measure(stream, model_for(stream), **SETTINGS)
    off = ~np.eye(3, dtype=bool)
    # the same task from the same initialisation with the same settings: the same scratch accuracy
    assert aff.scratch[0] == aff.scratch[1] == aff.scratch[2] < 0.95  # short training: room to gain
    assert (aff.gain[off] > 0.02).all()  # learning a copy first is more training on the same task
    assert (aff.forgetting[off] <= 0).all()  # fine-tuning on a copy forgets nothing of the original
    np.testing.assert_array_equal(aff.retained[off], aff.after[off])  # one test set: both scores coincide
    assert np.isnan(np.diag(aff.gain)).all() and np.isnan(np.diag(aff.forgetting)).all()


def test_permuted_tasks_forget_and_the_matrices_follow_their_definitions():
    stream = benchmarks.permuted("synthetic", n_tasks=3, seed=0)
    aff = affinity.measure(stream, model_for(stream), **SETTINGS)
    for i in range(3):
        for j in range(3):
            if i != j:
                assert aff.gain[i, j] == pytest.approx(aff.after[i, j] - aff.scratch[j])
                assert aff.forgetting[i, j] == pytest.approx(aff.scratch[i] - aff.retained[i, j])
    off = ~np.eye(3, dtype=bool)
    assert aff.forgetting[off].mean() > 0.05  # a new pixel permutation overwrites the old one in part
    ahp = aff.ahp
    np.testing.assert_allclose(np.nansum(ahp, axis=0), 1.0)  # each target's sources share 1
    assert (ahp[off] > 0).all()


def test_the_study_costs_t_squared_trainings_of_one_task(monkeypatch):
    stream = benchmarks.permuted("synthetic", n_tasks=3, seed=0)
    trained = []
    fit = affinity.fit

    def counting_fit(s, model, method, settings):
        trained.extend(stage[-1] for stage in method.stages(len(s)))
        return fit(s, model, method, settings)

    monkeypatch.setattr(affinity, "fit", counting_fit)
    aff = affinity.measure(stream, model_for(stream), **SETTINGS)
    assert len(trained) == 9 == aff.trainings  # T + T(T-1): each task once from scratch, each pair once


def test_task_il_fine_tunes_the_targets_own_head():
    stream = benchmarks.split("synthetic", n_tasks=2, scenario="task", seed=0)
    aff = affinity.measure(stream, model_for(stream), **SETTINGS)
    # task-IL: each task owns its units; after fine-tuning on j, j scores what it learned (far above the
    # 50 % of guessing between its two classes)
    assert aff.after[0, 1] > 0.7 and aff.after[1, 0] > 0.7
    with pytest.raises(LifelongError, match="at least 2 tasks"):
        affinity.measure(affinity.substream(stream, [0]), model_for(stream), **SETTINGS)


def test_study_from_a_config_refuses_other_methods():
    cfg = config.resolve(None, {"benchmark": "permuted-synthetic", "tasks": 2, "method": ["ewc"]})
    with pytest.raises(LifelongError, match="measures plain fine-tuning"):
        affinity.study(cfg, workers=1)


def test_cli_affinity_prints_the_matrices_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "aff"
    args = ["affinity", "--benchmark", "permuted-synthetic", "--tasks", "3", "--iterations", "10", "--hidden", "16"]
    code = main([*args, "--workers", "1", "--store", str(tmp_path / "r.db"), "--out", str(out)])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert "T + T(T-1) = 9 trainings" in text
    for title in ("forward gain[i,j]", "backward loss[i,j]", "AHP affinity[i,j]", "taxonomy", "proposed curriculum"):
        assert title in text
    for name in ("affinity.md", "affinity.json", "affinity-matrices.png", "affinity-dendrogram.png"):
        assert (out / name).is_file()
    code = main([*args, "--method", "ewc", "--store", str(tmp_path / "r.db")])
    err = capsys.readouterr().err
    assert code == 2 and "measures plain fine-tuning" in err and err.count("\n") == 1
