"""A-GEM as a method: the step follows g − (⟨g, g_ref⟩/‖g_ref‖²) g_ref exactly when the current gradient
fights the memory's, the memory is the last examples of each task, it forgets less than fine-tuning,
and it runs in every scenario from the command line."""

import pytest
import torch
import torch.nn.functional as F

import lifelong as ll
from lifelong.cli import main
from lifelong.results import Store


def flat_grad(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def test_the_gradient_is_projected_by_hand_when_it_fights_the_memory():
    s = ll.benchmarks.split("synthetic", n_tasks=2, scenario="task")
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [8], s.n_classes)
    agem = ll.methods.AGEM(memory_size=20, reference_batch=20)
    agem.prepare(model, s)
    agem.before_task(s.tasks[0], model)
    agem.after_task(s.tasks[0], model)
    task = s.tasks[1]
    agem.before_task(task, model)
    mask = s.train_masks([1])[1]
    checked = 0
    for start in range(0, 200, 10):  # batches until some are projected
        x, y = task.train_x[start : start + 10], task.train_y[start : start + 10]
        model.zero_grad()
        F.cross_entropy(model(x) + mask, y).backward()
        g = flat_grad(model).clone()
        model.zero_grad()
        state = agem._generator.get_state()  # by hand: the same reference batch, on task 0's units
        memory = agem.memory.sample(20, agem._generator)
        agem._generator.set_state(state)
        F.cross_entropy(model(memory["x"]) + s.train_masks([0])[0], memory["y"]).backward()
        g_ref = flat_grad(model).clone()
        for p, v in zip(model.parameters(), g.split([p.numel() for p in model.parameters()]), strict=True):
            p.grad.copy_(v.view_as(p))
        agem.after_backward(model, task)
        dot = torch.dot(g, g_ref)
        expected = g - dot / torch.dot(g_ref, g_ref) * g_ref if dot < 0 else g
        assert torch.allclose(flat_grad(model), expected, atol=1e-6)
        checked += bool(dot < 0)
    assert checked > 0 and len(agem.memory.items(task=0)["y"]) == 20
    assert torch.equal(agem.memory.items(task=0)["x"], s.tasks[0].train_x[-20:])  # the task's last examples
    assert agem.projection_rate()[1] == checked / 20


def test_agem_forgets_less_than_finetuning():
    s = ll.benchmarks.permuted("digits", n_tasks=3, samples_per_task=300)
    bwt = {}
    for name in ("finetune", "agem"):
        torch.manual_seed(0)
        model = ll.models.MLP(s.input_size, [50], s.n_classes)
        bwt[name] = ll.fit(s, model, name, epochs=10, lr=0.1, batch_size=16).bwt
    assert bwt["finetune"] < -0.2 and bwt["agem"] > bwt["finetune"] + 0.1, bwt


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_agem_runs_in_every_scenario_from_the_command_line(tmp_path, capsys, scenario):
    args = ["run", "--benchmark", "split-synthetic", "--tasks", "2", "--iterations", "5", "--report", "no"]
    args += ["--scenario", scenario, "--method", "agem", "--reference-batch", "32"]
    assert main([*args, "--store", str(tmp_path / "r.db")]) == 0, capsys.readouterr().err
    (row,) = Store(tmp_path / "r.db").runs()
    assert row["status"] == "finished" and row["config"]["reference_batch"] == 32
