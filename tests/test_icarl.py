"""iCaRL (Rebuffi et al. 2017): nearest-mean-of-exemplars classification, the BCE loss with distillation
targets, herding exemplars m = K // classes seen, class-IL learning where fine-tuning fails, and a memory
too small for the classes refused in one line (every scenario end to end: test_memory_methods.py)."""

import copy
import re

import pytest
import torch
import torch.nn.functional as F

import lifelong as ll
from lifelong.cli import main
from lifelong.errors import LifelongError
from lifelong.methods.memory.buffer import herding_order
from lifelong.results import Store


def normalised_features(model, x):
    with torch.no_grad():
        return F.normalize(model.features(x), dim=1)


def test_predict_is_the_nearest_mean_of_exemplars():
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="class")
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [16], s.n_classes)
    icarl = ll.methods.ICaRL(memory_size=30)
    icarl.prepare(model, s)
    x = torch.cat([t.test_x for t in s.tasks])
    assert torch.equal(icarl.predict(model, x, s.tasks[0]), model(x))  # no exemplars yet: the network's logits

    ll.fit(s, model, icarl, iterations=5, seed=0)
    stored = icarl.memory.items()
    f = normalised_features(model, stored["x"])
    classes = sorted(set(stored["y"].tolist()))
    means = torch.stack([F.normalize(f[stored["y"] == c].mean(0), dim=0) for c in classes])
    dist = torch.cdist(normalised_features(model, x), means) ** 2  # (N, classes) by hand

    logits = icarl.predict(model, x, s.tasks[2])
    assert classes == list(range(9))
    assert torch.allclose(logits, -dist, atol=1e-5)
    assert torch.equal(logits.argmax(1), dist.argmin(1))


def test_predict_never_picks_a_class_without_exemplars_and_gives_no_nan():
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="task")
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [16], s.n_classes)
    icarl = ll.methods.ICaRL(memory_size=30)
    icarl.prepare(model, s)
    icarl.before_task(s.tasks[0], model)
    icarl.after_task(s.tasks[0], model)  # exemplars of classes 0-2 only
    logits = icarl.predict(model, s.tasks[1].test_x, s.tasks[1])
    assert logits[:, :3].isfinite().all() and (logits[:, :3] > logits[:, 3:].max()).all()
    masked = logits + s.eval_masks(0)["task"][1]  # task 1's own units: none has exemplars yet
    assert not masked.isnan().any() and set(masked.argmax(1).tolist()) <= {3, 4, 5}


@pytest.mark.parametrize("scenario, temperature", [("class", 2.0), ("task", 2.0), ("class", 1.0)])
def test_loss_is_bce_with_one_hot_new_units_and_the_old_models_sigmoids_on_old_units(scenario, temperature):
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario=scenario)
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [16], s.n_classes)
    icarl = ll.methods.ICaRL(memory_size=30, temperature=temperature)
    icarl.prepare(model, s)
    for task in s.tasks[:2]:
        icarl.before_task(task, model)
        icarl.after_task(task, model)
    old = copy.deepcopy(model)  # the network at the end of task 1
    with torch.no_grad():  # the network has moved on since: its outputs differ from the old ones
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    task = s.tasks[2]
    icarl.before_task(task, model)
    x, y, mask = task.train_x[:8], task.train_y[:8], s.train_masks([2])[2]
    state = icarl._generator.get_state()
    got = icarl.loss(model, x, y, mask)

    icarl._generator.set_state(state)
    ex = icarl.memory.sample(2, icarl._generator)  # 8 · 30 exemplars / 120 task examples = 2
    assert set(ex["task"].tolist()) <= {0, 1}
    xs, ys = torch.cat([x, ex["x"]]), torch.cat([y, ex["y"]])
    allowed = torch.cat([mask.expand(8, -1), s.train_masks([2])[ex["task"]]]) == 0
    with torch.no_grad():
        q = torch.sigmoid(old(xs) / temperature)
    target = torch.zeros(10, 9)
    target[:, :6] = q[:, :6]  # units of tasks 0 and 1: the old network's outputs
    target[range(10), ys] = torch.where(ys >= 6, 1.0, target[range(10), ys])  # task 2's units: one-hot
    p = torch.sigmoid(model(xs))
    bce = -(target * p.log() + (1 - target) * (1 - p).log())
    want = (bce * allowed).sum(1).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_memory_keeps_k_over_classes_seen_herding_exemplars_per_class():
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="class")
    seen = []

    class Watched(ll.methods.ICaRL):
        def after_task(self, task, model):
            super().after_task(task, model)
            seen.append((copy.deepcopy(model), self.memory.items()))

    torch.manual_seed(0)
    ll.fit(s, ll.models.MLP(s.input_size, [16], s.n_classes), Watched(memory_size=20), iterations=5, seed=0)
    for t, (_, stored) in enumerate(seen):
        m = 20 // (3 * (t + 1))  # 6, then 3, then 2 per class
        assert {c: int((stored["y"] == c).sum()) for c in range(3 * (t + 1))} == dict.fromkeys(range(3 * (t + 1)), m)
        for c in range(3 * (t + 1)):  # each class: the first m of its herding order, with its task's network
            k = c // 3
            rows = s.tasks[k].train_x[s.tasks[k].train_y == c]
            order = herding_order(normalised_features(seen[k][0], rows))
            assert torch.equal(stored["x"][stored["y"] == c], rows[order[:m]]), (t, c)


def test_icarl_keeps_old_classes_where_finetuning_forgets_them():
    s = ll.benchmarks.split("digits", scenario="class")
    acc = {}
    for name, method in (("finetune", ll.methods.Finetune()), ("icarl", ll.methods.ICaRL(memory_size=200))):
        torch.manual_seed(0)
        model = ll.models.MLP(s.input_size, [50], s.n_classes)
        acc[name] = ll.fit(s, model, method, epochs=2, lr=0.1, batch_size=32, seed=0).acc
    assert acc["finetune"] < 0.3 and acc["icarl"] > acc["finetune"] + 0.4, acc


@pytest.mark.parametrize("scenario, sets", [("class", "9 classes"), ("domain", "9 (task, class) pairs")])
def test_a_memory_smaller_than_the_classes_is_one_line(tmp_path, capsys, scenario, sets):
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario=scenario)
    with pytest.raises(LifelongError, match=re.escape(f"memory_size 8 is smaller than the {sets}")):
        ll.fit(s, ll.models.MLP(s.input_size, [16], s.n_classes), ll.methods.ICaRL(memory_size=8))
    args = ["run", "--benchmark", "split-synthetic", "--tasks", "3", "--scenario", scenario, "--method", "icarl"]
    code = main([*args, "--memory-size", "8", "--store", str(tmp_path / "r.db")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"--memory-size 8 is smaller than the {sets}" in err, err
    assert not (tmp_path / "r.db").exists() or Store(tmp_path / "r.db").runs() == []


def test_a_model_without_features_is_one_line():
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="class")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(s.input_size, s.n_classes))
    with pytest.raises(LifelongError, match=r"icarl needs a model with a features\(x\) method"):
        ll.fit(s, model, ll.methods.ICaRL(memory_size=30), iterations=1)


@pytest.mark.parametrize("bad", ["0", "-1", "nan"])
def test_a_temperature_that_is_not_positive_is_one_line(tmp_path, capsys, bad):
    args = ["run", "--benchmark", "split-synthetic", "--tasks", "3", "--method", "icarl", f"--temperature={bad}"]
    code = main([*args, "--store", str(tmp_path / "r.db")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--temperature" in err, err
    with pytest.raises(LifelongError, match="temperature must be a finite number > 0"):
        ll.methods.ICaRL(temperature=float(bad))
