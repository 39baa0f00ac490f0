"""Capacity accounting (issue 8, item 4): the parameters of the network and the bytes each method keeps besides
it, computed by hand; fit() records them per task; `lifelong show` and the report print them; old runs load."""

import dataclasses
import json
import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

import lifelong as ll
from lifelong import Result
from lifelong.cli import main
from lifelong.methods import Method, capacity
from lifelong.results import Store, write_report

FLOAT = 4  # bytes of a float32
ITEM_EXTRA = 8 + 8  # an episodic memory's int64 label and task id per item


def stream(scenario: str = "task", n_tasks: int = 3):
    return ll.benchmarks.split("synthetic", n_tasks=n_tasks, scenario=scenario)


def mlp(s, hidden=(16,)):
    torch.manual_seed(0)
    return ll.models.MLP(s.input_size, list(hidden), s.n_classes)


def fit(s, model, method):
    return ll.fit(s, model, method, iterations=5, lr=0.1, batch_size=10, seed=0)


def n_params(s, hidden=(16,)) -> int:
    """An MLP's parameters by formula: weights and biases of each layer."""
    sizes = [s.input_size, *hidden, s.n_classes]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


@pytest.mark.parametrize("hidden", [(16,), (7, 5)])
def test_parameters_of_an_mlp_match_the_formula(hidden):
    s = stream()
    model = mlp(s, hidden)
    want = n_params(s, hidden)  # e.g. 64·16 + 16 + 16·9 + 9 = 1193
    assert ll.methods.Finetune().capacity(model) == {"parameters": want, "free_fraction": None, "stored_bytes": 0}


def test_finetune_stores_nothing():
    s = stream()
    model, method = mlp(s), ll.methods.Finetune()
    fit(s, model, method)
    assert method.capacity(model)["stored_bytes"] == 0


@pytest.mark.parametrize("name", ["ewc", "online-ewc", "si", "mas", "l2"])
@pytest.mark.parametrize("step", ["proximal", "explicit"])
def test_a_regulariser_stores_its_importance_anchor_and_constant(name, step):
    """Ω and θ* (one float per parameter each) and the scalar c of the per-task closed form; not the lr vector
    or the proximal step's pull, nor SI's path integral (rebuilt each task)."""
    s = stream()
    model, method = mlp(s), ll.methods.create(name, step=step)
    fit(s, model, method)
    assert method.capacity(model)["stored_bytes"] == (2 * n_params(s) + 1) * FLOAT


def test_rwalk_also_stores_its_running_fisher_and_score():
    s = stream()
    model, method = mlp(s), ll.methods.RWalk()
    fit(s, model, method)
    assert method.capacity(model)["stored_bytes"] == (4 * n_params(s) + 1) * FLOAT


@pytest.mark.parametrize("policy", ["reservoir", "class-balanced"])
def test_replay_stores_its_memory(policy):
    s = stream()
    model, method = mlp(s), ll.methods.Replay(memory_size=20, memory_policy=policy)
    fit(s, model, method)
    want = 20 * (s.input_size * FLOAT + ITEM_EXTRA)
    assert method.memory.nbytes == want
    assert method.capacity(model)["stored_bytes"] == want


def test_lwf_stores_one_model_copy():
    s = stream()
    model, method = mlp(s), ll.methods.LwF()
    fit(s, model, method)
    assert method.capacity(model)["stored_bytes"] == n_params(s) * FLOAT  # the MLP has no buffers


@pytest.mark.parametrize("name", ["gem", "agem"])
def test_gem_stores_its_memory_and_not_the_views_of_the_model(name):
    s = stream()
    model, method = mlp(s), ll.methods.create(name, memory_size=10)
    fit(s, model, method)
    # ParamLayout holds the model's own parameters: they are the model, not GEM's state.
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert {p.untyped_storage().data_ptr() for p in method.layout.params} == params
    assert method.capacity(model)["stored_bytes"] == 3 * 10 * (s.input_size * FLOAT + ITEM_EXTRA)


def test_independent_stores_every_task_model_and_the_initial_one():
    s = stream(scenario="task", n_tasks=3)
    model, method = mlp(s), ll.methods.Independent()
    fit(s, model, method)
    assert method.capacity(model)["stored_bytes"] == (3 + 1) * n_params(s) * FLOAT


@dataclasses.dataclass
class Hoarder(Method):
    """Holds the model's parameters, their gradients and views of them (none of it its own), one copy of the
    parameters under three names and a view, the stream, and a per-step buffer it names as scratch."""

    name = "hoarder"
    scratch = ("_buffer",)

    def prepare(self, model, stream):
        self.stream = stream
        self.views = [p.view(-1)[:3] for p in model.parameters()]
        self.module = model
        self.copy = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.again = (self.copy, [self.copy["head.bias"][:2]])
        self._buffer = torch.zeros(1000)
        return model

    def after_task(self, task, model):
        self.grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert self.grads  # the last step's gradients are still there


def test_the_walk_counts_each_storage_once_and_nothing_of_the_model():
    s = stream()
    model, method = mlp(s), Hoarder()
    fit(s, model, method)
    assert method.capacity(model)["stored_bytes"] == n_params(s) * FLOAT


@dataclasses.dataclass
class Grower(Method):
    """Adds 10 · (t + 1) unused parameters to the model before task t: growth fit() must see."""

    name = "grower"

    def before_task(self, task, model):
        model.register_parameter(f"extra{task.id}", nn.Parameter(torch.zeros(10 * (task.id + 1))))


def test_fit_records_one_capacity_per_task_with_what_each_task_added():
    s = stream()
    P = n_params(s)
    result = fit(s, mlp(s), Grower())
    assert result.capacity == [
        {"tasks": 1, "parameters": P + 10, "added": 10, "free_fraction": None, "stored_bytes": 0},
        {"tasks": 2, "parameters": P + 30, "added": 20, "free_fraction": None, "stored_bytes": 0},
        {"tasks": 3, "parameters": P + 60, "added": 30, "free_fraction": None, "stored_bytes": 0},
    ]
    ewc = fit(s, mlp(s), ll.methods.EWC())
    assert [r["stored_bytes"] for r in ewc.capacity] == [(2 * P + 1) * FLOAT] * 3
    assert [r["added"] for r in ewc.capacity] == [0, 0, 0]
    back = Result.from_dict(json.loads(json.dumps(ewc.to_dict())))
    assert back.capacity == ewc.capacity


def test_joint_training_has_one_record_for_all_tasks():
    s = stream()
    result = fit(s, mlp(s), ll.methods.Joint())
    assert [(r["tasks"], r["added"]) for r in result.capacity] == [(3, 0)]


def stored_result(tmp_path, result: Result, drop_capacity: bool = False):
    """A store holding ``result``; with ``drop_capacity`` its stored JSON is a file from before the field."""
    db = tmp_path / "r.db"
    store = Store(db)
    run_id = store.start({}, seed=0)
    store.finish(run_id, result)
    if drop_capacity:
        con = sqlite3.connect(db)
        (text,) = con.execute("SELECT result FROM runs WHERE id = ?", (run_id,)).fetchone()
        old = json.loads(text)
        del old["capacity"]
        con.execute("UPDATE runs SET result = ? WHERE id = ?", (json.dumps(old), run_id))
        con.commit()
        con.close()
    return db


def hand_made(capacity=None) -> Result:
    R = np.array([[0.1, 0.1], [0.9, 0.1], [0.8, 0.9]])
    return Result("packnet", "split-synthetic", "task", ["a", "b"], R, {"task": R}, capacity=capacity or [])


RECORDS = [
    {"tasks": 1, "parameters": 1500, "added": 300, "free_fraction": 0.5, "stored_bytes": 2048},
    {"tasks": 2, "parameters": 1500, "added": 0, "free_fraction": 0.25, "stored_bytes": 3 * 2**20},
]


def test_show_prints_the_capacity_block(tmp_path, capsys):
    db = stored_result(tmp_path, hand_made(RECORDS))
    assert main(["show", "1", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "\ncapacity: 1,500 parameters after the last task; added in each task: +300, +0\n" in out
    assert "\nfree weights after each task: 50.0%, 25.0%\n" in out
    assert "\nstored state besides the model after each task: 2.0 KB, 3.0 MB\n" in out


def test_show_leaves_out_the_free_share_when_no_method_owns_weights(tmp_path, capsys):
    records = [dict(r, free_fraction=None) for r in RECORDS]
    db = stored_result(tmp_path, hand_made(records))
    assert main(["show", "1", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "capacity: 1,500 parameters" in out and "free weights" not in out


def test_an_old_result_without_capacity_loads_shows_and_reports(tmp_path, capsys):
    old = hand_made(RECORDS).to_dict()
    del old["capacity"]
    assert Result.from_dict(old).capacity == []
    db = stored_result(tmp_path, hand_made(RECORDS), drop_capacity=True)
    assert Store(db).result(1).capacity == []
    assert main(["show", "1", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "run 1: finished" in out and "acc" in out and "capacity" not in out
    report = write_report([Store(db).result(1)], tmp_path / "rep").read_text()
    assert "Capacity" not in report and not list((tmp_path / "rep").glob("*capacity*"))


def test_the_report_plots_and_tabulates_capacity(tmp_path):
    s = stream()
    grown = fit(s, mlp(s), Grower())
    ewc = fit(s, mlp(s), ll.methods.EWC())
    report = write_report([grown, ewc], tmp_path).read_text()
    figure = tmp_path / "split-synthetic-task-3tasks-capacity.png"
    assert f"![capacity: parameters against tasks]({figure.name})" in report
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    P = n_params(s)
    assert f"| grower | {P + 60:,} | +10, +20, +30 | – | 0 B |" in report
    assert f"| ewc | {P:,} | +0, +0, +0 | – | {(2 * P + 1) * FLOAT / 1024:.1f} KB |" in report


def test_record_takes_growth_from_the_count_before():
    s = stream()
    model = mlp(s)
    rec = capacity.record(ll.methods.Finetune(), model, tasks=2, before=n_params(s) - 7)
    assert rec == {"tasks": 2, "parameters": n_params(s), "added": 7, "free_fraction": None, "stored_bytes": 0}


def test_icarl_stores_its_exemplars_the_old_model_and_the_class_means():
    s = stream(scenario="class")
    model, method = mlp(s), ll.methods.ICaRL(memory_size=18)
    fit(s, model, method)
    exemplars = 18 * (s.input_size * FLOAT + ITEM_EXTRA)
    means = s.n_classes * 16 * FLOAT + s.n_classes  # (C, D) float32 and the (C,) bool of classes with exemplars
    assert method.capacity(model)["stored_bytes"] == exemplars + n_params(s) * FLOAT + means


def test_dgr_stores_its_generator_and_frozen_copies_of_both_networks():
    s = stream(scenario="class")
    model, method = mlp(s), ll.methods.DGR(generator_units=8, latent=2)
    fit(s, model, method)
    h, z, d = 8, 2, s.input_size  # the VAE: d → h → h → (μ, log σ²) of z; z → h → h → d
    vae = (d * h + h) + (h * h + h) + 2 * (h * z + z) + (z * h + h) + (h * h + h) + (h * d + d)
    assert sum(p.numel() for p in method.generator.parameters()) == vae
    assert method.capacity(model)["stored_bytes"] == (2 * vae + n_params(s)) * FLOAT
