"""Experience replay: the loss weights the current and the replayed batch as van de Ven & Tolias do, each
replayed example is scored on its own task's units, it keeps old classes where fine-tuning fails
(class-IL), and every selection policy works (the scenarios: test_memory_methods.py)."""

import pytest
import torch
import torch.nn.functional as F
from hooks import at_task

import lifelong as ll
from lifelong.cli import main


def test_loss_is_one_over_t_current_plus_the_rest_replayed_on_each_examples_own_units():
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="task")
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [16], s.n_classes)
    replay = ll.methods.Replay(memory_size=30)
    task = at_task(replay, model, s, 2)  # two tasks learned (no steps), their data in the memory: t = 3
    x, y = task.train_x[:8], task.train_y[:8]
    mask = s.train_masks([2])[2]
    state = replay._generator.get_state()
    got = replay.loss(model, x, y, mask)

    replay._generator.set_state(state)  # the same replayed batch, scored by hand
    old = replay.memory.sample(8, replay._generator)
    own_units = torch.stack([s.train_masks([0])[int(k)] for k in old["task"]])  # each example's own task
    assert set(old["task"].tolist()) <= {0, 1}
    current = F.cross_entropy(model(x) + mask, y)
    replayed = F.cross_entropy(model(old["x"]) + own_units, old["y"])
    assert got.item() == pytest.approx((current / 3 + replayed * 2 / 3).item(), rel=1e-6)


def test_replay_keeps_old_classes_where_finetuning_forgets_them():
    s = ll.benchmarks.split("synthetic", n_tasks=5, scenario="class")
    results = {}
    for name, method in (("finetune", ll.methods.Finetune()), ("replay", ll.methods.Replay(memory_size=200))):
        torch.manual_seed(0)
        model = ll.models.MLP(s.input_size, [50, 50], s.n_classes)
        results[name] = ll.fit(s, model, method, epochs=10, lr=0.1, batch_size=16, seed=0)
    assert results["finetune"].acc < 0.3  # class-IL fine-tuning keeps only the last task
    assert results["replay"].acc > results["finetune"].acc + 0.3
    assert results["replay"].bwt > results["finetune"].bwt + 0.3


def test_bad_memory_settings_are_one_line_errors(tmp_path, capsys):
    cases = ((["--memory-size", "-5"], "--memory-size must be >= 1"), (["--memory-policy", "lru"], "invalid choice"))
    for bad, message in cases:
        code = main(["run", "--method", "replay", *bad, "--store", str(tmp_path / "r.db")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("policy", ["reservoir", "ring", "class-balanced", "herding"])
def test_every_selection_policy_keeps_examples_of_every_task(policy):
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario="class")
    torch.manual_seed(0)
    replay = ll.methods.Replay(memory_size=30, memory_policy=policy)
    ll.fit(s, ll.models.MLP(s.input_size, [16], s.n_classes), replay, iterations=3)
    stored = replay.memory.items()
    full = 30 if policy != "herding" else 30 // 9 * 9  # iCaRL keeps m = capacity // classes seen per class
    assert len(replay.memory) == full and set(stored["task"].tolist()) == {0, 1, 2}
    for k in range(3):  # every stored example is one of its task's training examples, with its label
        x, y = stored["x"][stored["task"] == k], stored["y"][stored["task"] == k]
        same = (x[:, None] == s.tasks[k].train_x[None]).flatten(2).all(2)
        assert same.any(1).all() and (y[:, None] == s.tasks[k].train_y[None])[same].all()


@pytest.mark.parametrize("scenario", ["task", "domain"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_one_forward_over_both_batches_gives_the_two_forward_gradient(batch_norm, scenario):
    s = ll.benchmarks.split("synthetic", n_tasks=3, scenario=scenario)
    torch.manual_seed(0)
    layers = [torch.nn.Flatten(), torch.nn.Linear(s.input_size, 16), torch.nn.ReLU(), torch.nn.Linear(16, s.n_classes)]
    if batch_norm:  # normalises with its batch's statistics: one pass over both batches would change them
        layers.insert(2, torch.nn.BatchNorm1d(16))
    model = torch.nn.Sequential(*layers)
    replay = ll.methods.Replay(memory_size=30)
    task = at_task(replay, model, s, 2)
    x, y, masks = task.train_x[:8], task.train_y[:8], s.train_masks([2])
    state = replay._generator.get_state()
    loss = replay.loss(model, x, y, None if masks is None else masks[2])
    got = torch.autograd.grad(loss, list(model.parameters()))

    replay._generator.set_state(state)  # by hand: the same replayed batch, each batch through the model alone
    old = replay.memory.sample(8, replay._generator)
    new_logits, old_logits = model(x), model(old["x"])
    if masks is not None:  # task-IL: each example on its own task's head
        new_logits, old_logits = new_logits + masks[2], old_logits + masks[old["task"]]
    by_hand = F.cross_entropy(new_logits, y) / 3 + F.cross_entropy(old_logits, old["y"]) * 2 / 3
    expected = torch.autograd.grad(by_hand, list(model.parameters()))
    assert replay._one_forward is not batch_norm
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
