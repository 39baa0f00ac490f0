"""What PNN, PackNet and CPG share: they work on the MLP only and in task-IL only, and say so in one line."""

import pytest
from torch import nn

import lifelong as ll
from lifelong.cli import main

RESOURCES = [ll.methods.PNN, ll.methods.PackNet, ll.methods.CPG]


@pytest.mark.parametrize("method", RESOURCES, ids=lambda m: m.name)
def test_other_models_are_refused_in_one_line(method):
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="task")
    model = nn.Sequential(nn.Flatten(), nn.Linear(s.input_size, s.n_classes))
    with pytest.raises(ll.LifelongError, match=f"{method.name} works on lifelong.models.MLP only"):
        ll.fit(s, model, method(), iterations=1)


@pytest.mark.parametrize("scenario", ["class", "domain"])
@pytest.mark.parametrize("method", RESOURCES, ids=lambda m: m.name)
def test_class_and_domain_il_are_refused_from_the_command_line(tmp_path, capsys, method, scenario):
    args = ["run", "--method", method.name, "--benchmark", "split-synthetic", "--scenario", scenario]
    assert main([*args, "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err
    assert f"{method.name} does not support the" in err and "only task-IL" in err and err.count("\n") == 1, err
