"""Vectorised seeds (lifelong.vectorized): S seeds trained at once give each seed's separate fit() run.

Each test trains the same seeds twice, once with fit() per seed and once with fit_seeds(), and compares
them: the R matrices exactly (every accuracy the same; the two differ only in the order the matrix
kernels add, about 1e-7, which moves no argmax on these runs), the losses, final weights and the
methods' importances and anchors within 1e-5. A check that the method did something (its weights
differ from finetune's) keeps a test from passing with the method's hooks skipped.
"""

import numpy as np
import pytest
import torch
from torch import nn

import lifelong as ll
from lifelong import results
from lifelong.cli import main
from lifelong.config import int_list
from lifelong.results import Store
from lifelong.vectorized import SUPPORTED, fit_seeds

SEEDS = [0, 1, 2]
TOL = 1e-5


def streams(builder="permuted", scenario=None, n_tasks=3):
    return [getattr(ll.benchmarks, builder)("synthetic", n_tasks=n_tasks, scenario=scenario, seed=s) for s in SEEDS]


def mlp(stream, seed, hidden=(16,)):
    torch.manual_seed(seed)
    return ll.models.MLP(stream.input_size, list(hidden), stream.n_classes)


def weights(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def both(name, streams, method_options=None, **settings):
    """(separate fit() results, their models, their methods), and the same from fit_seeds()."""
    settings = {"iterations": 20, "lr": 0.1, "batch_size": 10, **settings}
    shared = not isinstance(streams, list)
    each = [streams] * len(SEEDS) if shared else streams
    models = [mlp(st, seed) for st, seed in zip(each, SEEDS, strict=True)]
    methods = [ll.methods.create(name, **(method_options or {})) for _ in SEEDS]
    runs = zip(each, models, methods, SEEDS, strict=True)
    results = [ll.fit(st, model, method, seed=seed, **settings) for st, model, method, seed in runs]
    v_models = [mlp(st, seed) for st, seed in zip(each, SEEDS, strict=True)]
    v_methods = [ll.methods.create(name, **(method_options or {})) for _ in SEEDS]
    v_results = fit_seeds(streams, v_models, v_methods, SEEDS, **settings)
    return (results, models, methods), (v_results, v_models, v_methods)


def assert_same(separate, vectorised):
    for a, b, ma, mb in zip(separate[0], vectorised[0], separate[1], vectorised[1], strict=True):
        assert np.array_equal(a.R, b.R)
        assert all(np.array_equal(a.views[v], b.views[v]) for v in a.views)
        np.testing.assert_allclose(np.array(a.losses), np.array(b.losses), atol=TOL)
        torch.testing.assert_close(weights(ma), weights(mb), atol=TOL, rtol=0)
        assert a.capacity == b.capacity and a.config == b.config and a.n_stages == b.n_stages
        assert [c["accuracy"] for c in a.curves] == [c["accuracy"] for c in b.curves]


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"momentum": 0.9, "weight_decay": 1e-3},
        {"optimizer": "adam", "lr": 0.01, "weight_decay": 1e-3},
    ],
    ids=["sgd", "sgd-momentum-decay", "adam-decay"],
)
def test_finetune_equals_separate_runs_per_seed(settings):
    separate, vectorised = both("finetune", streams(), **settings)
    assert_same(separate, vectorised)
    assert len({tuple(r.R[-1]) for r in vectorised[0]}) == 3  # three different runs, not one copied


# lam large enough that the penalty moves the weights well past the tolerance within 20 steps.
REGULARISERS = [
    ("l2", {"lam": 1.0}, {}),  # plain SGD: the proximal step
    ("ewc", {"lam": 100.0}, {}),
    ("online-ewc", {"lam": 100.0, "gamma": 0.5}, {}),
    ("mas", {"lam": 1.0}, {}),
    ("scp", {"lam": 10.0}, {}),
    ("si", {"lam": 10.0}, {}),
    ("ewc", {"lam": 10.0}, {"momentum": 0.9}),  # momentum: the explicit step, the penalty in the loss
    ("si", {"lam": 10.0}, {"optimizer": "adam", "lr": 0.01}),  # SI subtracts the penalty's gradient
]


@pytest.mark.parametrize("name,options,settings", REGULARISERS, ids=[f"{n}-{s or 'sgd'}" for n, _, s in REGULARISERS])
def test_each_regulariser_equals_separate_runs_per_seed(name, options, settings):
    separate, vectorised = both(name, streams(), options, **settings)
    assert_same(separate, vectorised)
    for ma, mb in zip(separate[2], vectorised[2], strict=True):
        for key, value in ma.importance().items():
            torch.testing.assert_close(value, mb.importance()[key], atol=TOL, rtol=1e-4)
        for key, value in ma.anchors().items():
            torch.testing.assert_close(value, mb.anchors()[key], atol=TOL, rtol=0)
    finetuned = both("finetune", streams(), **settings)[1][1]
    moved = max((weights(a) - weights(b)).abs().max().item() for a, b in zip(finetuned, vectorised[1], strict=True))
    assert moved > 100 * TOL  # the penalty acted


def test_joint_and_cumulative_with_a_mask_per_sample_task_il():
    for name in ("joint", "cumulative"):
        assert_same(*both(name, streams("split", "task", n_tasks=2)))


def test_class_il_masks_and_every_training_setting_on_one_shared_stream():
    stream = ll.benchmarks.split("synthetic", n_tasks=2, scenario="class", seed=0)
    settings = {
        "iterations": None,
        "epochs": 2,
        "reset_optimizer": False,
        "eval_every_epoch": True,
        "lr_decay_every": 1,
        "clip_grad_norm": 0.5,
        "momentum": 0.5,
    }
    separate, vectorised = both("finetune", stream, **settings)
    assert_same(separate, vectorised)
    assert len(vectorised[0][0].curves) == 4 and vectorised[0][0].timings["vectorized_seeds"] == 3


def test_a_diverging_seed_fails_alone_and_the_others_are_unchanged():
    data = streams(n_tasks=2)
    data[1].tasks[1].train_x[:] = float("nan")  # seed 1 diverges in its second task
    settings = {"iterations": 20, "lr": 0.1, "batch_size": 10}
    results = fit_seeds(data, [mlp(st, s) for st, s in zip(data, SEEDS, strict=True)], "finetune", SEEDS, **settings)
    with pytest.raises(ll.DivergedError) as caught:
        ll.fit(data[1], mlp(data[1], 1), "finetune", seed=1, **settings)
    assert isinstance(results[1], ll.DivergedError) and str(results[1]) == str(caught.value)
    for k in (0, 2):
        alone = ll.fit(data[k], mlp(data[k], SEEDS[k]), "finetune", seed=SEEDS[k], **settings)
        assert np.array_equal(alone.R, results[k].R)


@pytest.mark.parametrize("name", ["rwalk", "independent", "replay", "lwf"])
def test_other_methods_are_refused_in_one_line_naming_what_is_supported(name):
    data = streams(n_tasks=2)
    with pytest.raises(ll.LifelongError, match=f"^{name} cannot be trained as vectorised seeds") as caught:
        fit_seeds(data, [mlp(st, s) for st, s in zip(data, SEEDS, strict=True)], name, SEEDS, iterations=2)
    assert SUPPORTED in str(caught.value) and "\n" not in str(caught.value)


def test_other_models_and_mismatched_seeds_are_refused():
    data = streams(n_tasks=2)
    other = [nn.Sequential(nn.Flatten(), nn.Linear(data[0].input_size, data[0].n_classes)) for _ in SEEDS]
    with pytest.raises(ll.LifelongError, match="train the MLP only, not Sequential"):
        fit_seeds(data, other, "finetune", SEEDS, iterations=2)
    sizes = [mlp(data[0], 0), mlp(data[1], 1, hidden=(8,)), mlp(data[2], 2)]
    with pytest.raises(ll.LifelongError, match="one architecture"):
        fit_seeds(data, sizes, "finetune", SEEDS, iterations=2)
    uneven = [ll.benchmarks.permuted("synthetic", n_tasks=2, seed=s, samples_per_task=50 + s) for s in SEEDS]
    with pytest.raises(ll.LifelongError, match="streams of one shape"):
        fit_seeds(uneven, [mlp(st, s) for st, s in zip(uneven, SEEDS, strict=True)], "finetune", SEEDS, iterations=2)


def test_seed_ranges():
    assert int_list("0..3") == [0, 1, 2, 3] and int_list("7,0..1") == [7, 0, 1] and int_list("5..5") == [5]
    with pytest.raises(ValueError):
        int_list("3..1")


QUICK = "run --benchmark permuted-synthetic --tasks 2 --iterations 10 --report no --quiet".split()


def test_cli_records_one_ordinary_run_per_seed_equal_to_separate_runs(tmp_path, capsys, monkeypatch):
    plotted = {}  # run folder -> the importances its plot shows (drawing them takes seconds: not here)
    monkeypatch.setattr(results, "plot_importance", lambda omega, path, title: plotted.update({path.parent: omega}))
    vectorised, separate = tmp_path / "v.db", tmp_path / "s.db"
    args = [*QUICK, "--method", "finetune,l2", "--seeds", "0..2"]
    assert main([*args, "--vectorize", "--store", str(vectorised)]) == 0
    assert main([*args, "--store", str(separate)]) == 0
    capsys.readouterr()
    runs = {}
    for db in (vectorised, separate):
        store = Store(db)
        runs[db] = {(r["config"]["method"], r["config"]["seed"]): (r, store) for r in store.runs()}
    assert sorted(runs[vectorised]) == sorted(runs[separate]) == [(m, s) for m in ("finetune", "l2") for s in SEEDS]
    for key, (row, store) in runs[vectorised].items():
        other_row, other_store = runs[separate][key]
        assert row["status"] == other_row["status"] == "finished" and row["config"] == other_row["config"]
        assert np.array_equal(store.result(row["id"]).R, other_store.result(other_row["id"]).R)
        if key[0] == "l2":  # the importance plot of each seed's run, as a separate run has it
            omega, other = plotted[store.folder(row["id"])], plotted[other_store.folder(other_row["id"])]
            assert omega.keys() == other.keys() and all(torch.equal(omega[k], other[k]) for k in omega)
    assert len(plotted) == 6


def test_cli_refuses_an_unsupported_method_before_recording_anything(tmp_path, capsys):
    db = tmp_path / "r.db"
    code = main([*QUICK, "--method", "finetune,rwalk", "--seeds", "0,1", "--vectorize", "--store", str(db)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "rwalk cannot be trained as vectorised seeds (--vectorize)" in err
    assert not db.exists() or Store(db).runs() == []


def test_commands_that_cannot_vectorise_refuse_the_flag(tmp_path, capsys):
    db = tmp_path / "r.db"
    args = ["tune", *QUICK[1:], "--method", "l2", "--param", "lam", "--values", "1,10", "--vectorize"]
    code = main([*args, "--store", str(db)])
    err = capsys.readouterr().err
    assert code == 2 and "--vectorize applies to `lifelong run` only" in err
    assert not db.exists() or Store(db).runs() == []
