"""GEM as a method: every earlier task's memory gradient comes from one batched backward pass and equals
a separate computation per task; the step is projected so that no memory loss rises (forgetting and
the scenarios: test_memory_methods.py)."""

import torch
import torch.nn.functional as F
from gradients import flat_grad, set_grad

import lifelong as ll
from lifelong.cli import main
from lifelong.methods.memory.projection import gem_project


def test_the_step_is_gems_projection_of_per_task_memory_gradients_computed_separately():
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="task")
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [8], s.n_classes)
    gem = ll.methods.GEM(memory_size=15, margin=0.5)
    gem.prepare(model, s)
    for task in s.tasks[:2]:
        gem.before_task(task, model)
        gem.after_task(task, model)
    task = s.tasks[2]
    gem.before_task(task, model)
    projected = 0
    for start in range(0, 200, 10):
        x, y = task.train_x[start : start + 10], task.train_y[start : start + 10]
        model.zero_grad()
        F.cross_entropy(model(x) + s.train_masks([2])[2], y).backward()
        g = flat_grad(model).clone()
        rows = []
        for k in (0, 1):  # by hand: one backward pass per earlier task, on its last 15 examples and its units
            model.zero_grad()
            old = s.tasks[k]
            F.cross_entropy(model(old.train_x[-15:]) + s.train_masks([k])[k], old.train_y[-15:]).backward()
            rows.append(flat_grad(model).clone())
        G = torch.stack(rows)
        set_grad(model, g)
        gem.after_backward(model, task)
        expected = gem_project(g, G, margin=0.5)
        assert torch.allclose(flat_grad(model), expected.grad, atol=1e-5)
        if expected.active:
            projected += 1
            assert (G @ flat_grad(model) >= -1e-5).all()  # no memory loss rises to first order
    assert projected > 0 and gem.projection_rate()[2] == projected / 20


def test_a_negative_margin_is_refused(tmp_path, capsys):
    assert main(["run", "--method", "gem", "--margin", "-1", "--store", str(tmp_path / "r.db")]) == 2
    assert "gem: --margin must be >= 0" in capsys.readouterr().err
