"""fit(): the loop's schedule, hooks, evaluation rows, determinism and divergence."""

import dataclasses

import numpy as np
import pytest
import torch

import lifelong as ll
from lifelong.methods.base import Method


def stream(n_tasks=2, scenario=None):
    return ll.benchmarks.permuted("synthetic", n_tasks=n_tasks, scenario=scenario, seed=0)


def model_for(s, seed=0):
    torch.manual_seed(seed)
    return ll.models.MLP(s.input_size, [16], s.n_classes)


@dataclasses.dataclass
class Counting(Method):
    """Counts the hook calls fit() makes."""

    def __post_init__(self):
        self.calls = {"before_task": 0, "after_backward": 0, "after_step": 0, "after_task": 0}

    def before_task(self, task, model):
        self.calls["before_task"] += 1

    def after_backward(self, model, task):
        assert all(p.grad is not None for p in model.parameters())  # called between backward and step
        self.calls["after_backward"] += 1

    def after_step(self, model, task):
        self.calls["after_step"] += 1

    def after_task(self, task, model):
        self.calls["after_task"] += 1


def test_iterations_fix_the_number_of_steps_per_task():
    s = stream(3)
    m = Counting()
    ll.fit(s, model_for(s), m, iterations=7, batch_size=16)
    assert m.calls == {"before_task": 3, "after_backward": 21, "after_step": 21, "after_task": 3}


def test_epochs_pass_over_each_task():
    s = stream(2)
    m = Counting()
    n = len(s[0].train_y)
    ll.fit(s, model_for(s), m, epochs=2, batch_size=32)
    assert m.calls["after_step"] == 2 * 2 * -(-n // 32)


def test_r_has_an_init_row_and_one_row_per_task_and_row0_is_untrained_accuracy():
    s = stream(3)
    model = model_for(s)
    before = ll.evaluate(Method(), model, s, after=-1)["domain"]
    r = ll.fit(s, model, iterations=30)
    assert r.R.shape == (4, 3)
    assert np.allclose(r.R[0], before)
    assert r.R[1, 0] > r.R[0, 0] + 0.3  # learning task 1 helps task 1


def test_same_seed_gives_the_same_r_bit_for_bit_and_other_seeds_differ():
    s = stream(2)
    a = ll.fit(s, model_for(s), iterations=40, seed=3).R
    b = ll.fit(s, model_for(s), iterations=40, seed=3).R
    c = ll.fit(s, model_for(s), iterations=40, seed=4).R
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_hooks_a_method_does_not_override_are_not_called(monkeypatch):
    calls = []
    monkeypatch.setattr(Method, "after_step", lambda self, model, task: calls.append(1))
    s = stream(1)
    ll.fit(s, model_for(s), ll.methods.Finetune(), iterations=5)
    assert calls == []  # Finetune inherits after_step from Method: fit() skips it


@dataclasses.dataclass
class ExplodesOnTask2(Method):
    def before_task(self, task, model):
        self.task = task.id

    def loss(self, model, x, y, mask):
        loss = super().loss(model, x, y, mask)
        return loss * float("nan") if self.task == 1 else loss


def test_a_diverging_run_stops_and_says_where():
    s = stream(2)
    with pytest.raises(ll.DivergedError, match="task 2, epoch 1") as e:
        ll.fit(s, model_for(s), ExplodesOnTask2(), epochs=2)
    assert (e.value.task, e.value.epoch) == (1, 0)


def test_per_epoch_curves_and_losses():
    s = stream(2)
    r = ll.fit(s, model_for(s), epochs=3, eval_every_epoch=True)
    assert [(c["stage"], c["epoch"]) for c in r.curves] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert np.allclose(r.curves[-1]["accuracy"], r.R[-1])
    assert len(r.losses) == 2 and len(r.losses[0]) == 3 and r.losses[0][-1] < r.losses[0][0]


def test_optimizers_and_settings_are_checked():
    s = stream(1)
    for opts in ({"optimizer": "adam", "lr": 1e-3}, {"momentum": 0.9, "weight_decay": 1e-4}):
        assert ll.fit(s, model_for(s), iterations=5, **opts).R.shape == (2, 1)
    bad_settings = (
        ({"lr": -1}, "^lr must"),  # from Python a message names the keyword, not the CLI flag
        ({"epochs": 0}, "^epochs must"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"momentum": float("nan")}, "^momentum must be a finite number"),
        ({"weight_decay": float("inf")}, "^weight_decay must be a finite number"),
        ({"batch_size": True}, "^batch_size must be a whole number"),
        ({"lr_decay_every": 0}, "^lr_decay_every must be a whole number"),
        ({"lr_decay": 1.5}, r"^lr_decay must be a number in \(0, 1\]"),
        ({"lr_decay_start": -1}, "^lr_decay_start must be a whole number >= 0"),
        ({"clip_grad_norm": 0}, "^clip_grad_norm must be a finite number > 0"),
    )
    for bad, match in bad_settings:
        with pytest.raises(ll.LifelongError, match=match):
            ll.Settings(**bad)


@dataclasses.dataclass
class LrLog(Method):
    """Records the learning rate each step of each task sees."""

    def __post_init__(self):
        self.lrs = []

    def on_optimizer(self, optimizer):
        self.optimizer = optimizer

    def before_task(self, task, model):
        self.lrs.append([])

    def after_step(self, model, task):
        self.lrs[-1].append(self.optimizer.param_groups[0]["lr"])


def test_the_learning_rate_schedule_counts_each_tasks_epochs():
    s = stream(2)
    per_epoch = -(-len(s[0].train_y) // 64)
    m = LrLog()
    ll.fit(s, model_for(s), m, epochs=5, batch_size=64, lr=0.2, lr_decay_every=2, lr_decay=0.5)
    expected = [0.2] * 2 * per_epoch + [0.1] * 2 * per_epoch + [0.05] * per_epoch
    assert m.lrs == [expected, expected]  # the second task starts from lr again
    m = LrLog()
    ll.fit(s, model_for(s), m, epochs=5, batch_size=64, lr=0.2, lr_decay_every=2, lr_decay_start=1)
    assert m.lrs[0] == [0.2] * 3 * per_epoch + [0.1] * 2 * per_epoch  # epochs 1-2 count as the first two


def test_clipping_bounds_the_step_to_the_norm():
    s = stream(1)
    n = len(s[0].train_y)
    model = model_for(s)
    before = [p.detach().clone() for p in model.parameters()]
    # The full batch's gradient, computed independently: larger than the clip.
    loss = torch.nn.functional.cross_entropy(model(s[0].train_x), s[0].train_y)
    norm = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))]).norm().item()
    assert norm > 0.01
    ll.fit(s, model, iterations=1, batch_size=n, lr=1.0, clip_grad_norm=0.01)
    moved = [(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)]
    step = torch.cat(moved).norm().item()
    assert step == pytest.approx(0.01, rel=1e-4)  # SGD at lr 1 moves by the clipped gradient


class Scheduled(torch.nn.Module):
    """A model with a schedule of its own: fit() tells it each epoch of each task."""

    def __init__(self, s):
        super().__init__()
        self.net, self.epochs = model_for(s), []

    def start_epoch(self, epoch):
        self.epochs.append(epoch)

    def forward(self, x):
        return self.net(x)


def test_a_model_with_a_schedule_hears_each_epoch():
    s = stream(2)
    model = Scheduled(s)
    ll.fit(s, model, epochs=3, batch_size=64)
    assert model.epochs == [0, 1, 2, 0, 1, 2]


def test_task_and_class_views_come_from_one_run():
    s = stream(2, scenario="task")
    r = ll.fit(s, model_for(s), iterations=30)
    assert set(r.views) == {"task", "class"} and np.array_equal(r.R, r.views["task"])
    # class-IL chooses among more units, so it can never beat task-IL on the same predictions
    assert (r.views["class"] <= r.views["task"] + 1e-9).all()


def test_result_round_trips_through_json():
    s = stream(2)
    r = ll.fit(s, model_for(s), iterations=5)
    back = ll.Result.from_dict(r.to_dict())
    assert np.array_equal(back.R, r.R) and back.metrics() == r.metrics()
