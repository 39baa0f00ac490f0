"""GEM as a method: every earlier task's memory gradient equals a separate computation per task on its own
stored examples (all of them, or the random subset of ``memory_batch``), in every scenario; the step is
projected so that no memory loss rises (forgetting and the scenarios: test_memory_methods.py)."""

import pytest
import torch
import torch.nn.functional as F
from gradients import flat_grad, set_grad
from hooks import at_task

import lifelong as ll
from lifelong.cli import main
from lifelong.methods.memory.projection import gem_project


def test_the_step_is_gems_projection_of_per_task_memory_gradients_computed_separately():
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="task")
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [8], s.n_classes)
    gem = ll.methods.GEM(memory_size=15, margin=0.5)
    task = at_task(gem, model, s, 2)
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


def by_hand_memory_gradients(model, s, rows_of_task, current):
    """One backward pass per earlier task k on the rows ``rows_of_task[k]`` of its stored examples, scored
    on task k's own units while task ``current`` is learned (every unit seen so far in class-IL)."""
    out = []
    masks = s.train_masks([current])
    for k, rows in enumerate(rows_of_task):
        model.zero_grad()
        logits = model(rows[0])
        F.cross_entropy(logits if masks is None else logits + masks[k], rows[1]).backward()
        out.append(flat_grad(model).clone())
    return torch.stack(out)


@pytest.mark.parametrize("scenario", ["class", "domain"])
@pytest.mark.parametrize("memory_batch", [None, 7])
def test_memory_gradients_are_per_task_gradients_in_every_scenario(scenario, memory_batch):
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario=scenario)
    torch.manual_seed(1)
    model = ll.models.MLP(s.input_size, [8], s.n_classes)
    gem = ll.methods.GEM(memory_size=200, margin=0.0, memory_batch=memory_batch)  # 200 > a task: all of it
    task = at_task(gem, model, s, 2)
    stored = [(s.tasks[k].train_x, s.tasks[k].train_y) for k in (0, 1)]
    for start in range(0, 60, 10):
        model.zero_grad()
        masks = s.train_masks([2])
        logits = model(task.train_x[start : start + 10])
        F.cross_entropy(logits if masks is None else logits + masks[2], task.train_y[start : start + 10]).backward()
        g = flat_grad(model).clone()
        rows = stored
        if memory_batch is not None:  # the same random subsets of each task's memory, drawn by hand
            state = gem._generator.get_state()
            picks = [torch.randperm(len(y), generator=gem._generator)[:memory_batch] for _, y in stored]
            gem._generator.set_state(state)
            rows = [(x[p], y[p]) for (x, y), p in zip(stored, picks, strict=True)]
        G = by_hand_memory_gradients(model, s, rows, current=2)
        set_grad(model, g)
        gem.after_backward(model, task)
        assert torch.allclose(gem._grads, G, atol=1e-6)
        assert torch.allclose(flat_grad(model), gem_project(g, G).grad, atol=1e-5)


def test_a_memory_batch_as_large_as_the_memory_is_the_paper_s_gem():
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="class")
    weights = []
    for memory_batch in (None, 50, 49):
        torch.manual_seed(0)
        model = ll.models.MLP(s.input_size, [16], s.n_classes)
        gem = ll.methods.GEM(memory_size=50, memory_batch=memory_batch)
        ll.fit(s, model, gem, iterations=10, lr=0.1, batch_size=10, seed=0)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])  # all 50: the same steps, bit for bit
    assert not torch.allclose(weights[0], weights[2])  # 49 of 50: another (random) algorithm


def test_a_bad_memory_batch_is_refused(tmp_path, capsys):
    assert main(["run", "--method", "gem", "--memory-batch", "0", "--store", str(tmp_path / "r.db")]) == 2
    assert "gem: --memory-batch must be a whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("scenario", ["task", "class", "domain"])
def test_hsu_s_rehearsal_is_half_the_batch_loss_and_half_the_stored_examples_loss(scenario):
    s = ll.benchmarks.split("synthetic", n_tasks=2, scenario=scenario)
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [8], s.n_classes)
    gem = ll.methods.GEM(memory_size=1, memory_policy="task-balanced", replay=True)  # one stored example
    task = at_task(gem, model, s, 1)
    (stored_x,), (stored_y,) = gem.memory.items()["x"], gem.memory.items()["y"]
    assert any(torch.equal(stored_x, row) for row in s.tasks[0].train_x)  # an example of task 0
    masks = s.train_masks([1])
    x, y = task.train_x[:10], task.train_y[:10]
    got = gem.loss(model, x, y, None if masks is None else masks[1])
    new, old = model(x), model(stored_x[None])
    if masks is not None:  # the batch on the current task's units, the stored example on task 0's
        new, old = new + masks[1], old + masks[0]
    want = 0.5 * F.cross_entropy(new, y) + 0.5 * F.cross_entropy(old, stored_y[None])
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    plain = ll.methods.GEM(memory_size=1, memory_policy="task-balanced")  # replay off: the batch alone
    at_task(plain, model, s, 1)
    assert plain.loss(model, x, y, None if masks is None else masks[1]).item() == pytest.approx(
        F.cross_entropy(new, y).item(), rel=1e-6
    )


def test_a_task_balanced_memory_gives_one_constraint_per_task_on_its_share():
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="class")
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [8], s.n_classes)
    gem = ll.methods.GEM(memory_size=40, memory_policy="task-balanced", margin=0.0)
    task = at_task(gem, model, s, 2)
    assert gem.memory.summary()["per_task"] == {0: 20, 1: 20}  # 40 in all, split over the two tasks seen
    stored = [(gem.memory.items(task=k)["x"], gem.memory.items(task=k)["y"]) for k in (0, 1)]
    model.zero_grad()
    F.cross_entropy(model(task.train_x[:10]) + s.train_masks([2])[2], task.train_y[:10]).backward()
    g = flat_grad(model).clone()
    G = by_hand_memory_gradients(model, s, stored, current=2)
    set_grad(model, g)
    gem.after_backward(model, task)
    assert torch.allclose(gem._grads, G, atol=1e-6)
    assert torch.allclose(flat_grad(model), gem_project(g, G).grad, atol=1e-5)


def test_a_task_balanced_memory_smaller_than_the_tasks_is_refused_before_training(tmp_path, capsys):
    args = ["run", "--method", "gem", "--memory-policy", "task-balanced", "--memory-size", "3"]
    assert main([*args, "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err
    assert "gem: a task-balanced memory of 3 examples cannot keep one of each of the stream's 5 tasks" in err
    assert "--memory-size 5" in err and err.count("\n") == 1
