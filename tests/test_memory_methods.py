"""What every memory method must do: forget less than fine-tuning, and run in every scenario from the
command line with its settings recorded."""

import pytest
import torch

import lifelong as ll
from lifelong.cli import main
from lifelong.results import Store


@pytest.mark.parametrize("name", ["gem", "agem", "replay"])
def test_forgets_less_than_finetuning(name):
    s = ll.benchmarks.permuted("digits", n_tasks=3, samples_per_task=300)
    bwt = {}
    for method in ("finetune", name):
        torch.manual_seed(0)
        model = ll.models.MLP(s.input_size, [50], s.n_classes)
        bwt[method] = ll.fit(s, model, method, epochs=10, lr=0.1, batch_size=16).bwt
    assert bwt["finetune"] < -0.2 and bwt[name] > bwt["finetune"] + 0.1, bwt


SETTINGS = [
    ("replay", "--memory-size=50"),
    ("gem", "--margin=0"),
    ("agem", "--reference-batch=32"),
    ("lwf", "--temperature=2"),
    ("icarl", "--memory-size=60"),
    ("dgr", "--distill=1"),  # DGR+distill; recorded as True, which equals 1.0
]


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
@pytest.mark.parametrize("name, setting", SETTINGS)
def test_runs_in_every_scenario_from_the_command_line(tmp_path, capsys, name, setting, scenario):
    args = ["run", "--benchmark", "split-synthetic", "--tasks", "3", "--iterations", "5", "--report", "no"]
    code = main([*args, "--scenario", scenario, "--method", name, setting, "--store", str(tmp_path / "r.db")])
    out, err = capsys.readouterr()
    assert code == 0 and ("expected to fail" in err) == bool(ll.methods.get(name).caveat(scenario)), err
    (row,) = Store(tmp_path / "r.db").runs()
    key, value = setting.removeprefix("--").split("=")
    assert row["status"] == "finished" and row["config"][key.replace("-", "_")] == float(value)
