"""A-GEM as a method: the step follows g − (⟨g, g_ref⟩/‖g_ref‖²) g_ref exactly when the current gradient
fights the memory's, and the memory is the last examples of each task (forgetting and the scenarios:
test_memory_methods.py)."""

import torch
import torch.nn.functional as F
from gradients import flat_grad, set_grad
from hooks import at_task

import lifelong as ll


def test_the_gradient_is_projected_by_hand_when_it_fights_the_memory():
    s = ll.benchmarks.split("synthetic", n_tasks=2, scenario="task")
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [8], s.n_classes)
    agem = ll.methods.AGEM(memory_size=20, reference_batch=20)
    task = at_task(agem, model, s, 1)
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
        set_grad(model, g)
        agem.after_backward(model, task)
        dot = torch.dot(g, g_ref)
        expected = g - dot / torch.dot(g_ref, g_ref) * g_ref if dot < 0 else g
        assert torch.allclose(flat_grad(model), expected, atol=1e-6)
        checked += bool(dot < 0)
    assert checked > 0 and len(agem.memory.items(task=0)["y"]) == 20
    assert torch.equal(agem.memory.items(task=0)["x"], s.tasks[0].train_x[-20:])  # the task's last examples
    assert agem.projection_rate()[1] == checked / 20
