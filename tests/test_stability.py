"""The regularisers' step: the proximal step is the exact minimiser of each step's problem, stable for
any λ; the explicit step is the papers'; defaults train; the warning for an unstable explicit step."""

import dataclasses
import math
import warnings
from typing import ClassVar

import pytest
import torch
from torch import nn

import lifelong as ll
from lifelong.errors import DivergedError, LifelongWarning
from lifelong.methods.regularization import REGULARIZERS, SI, Regularizer, RWalk

NAMES = [cls.name for cls in REGULARIZERS]


@dataclasses.dataclass
class Given(Regularizer):
    """λ Σ b (θ − θ*)² with a given importance b (a test double: no estimation)."""

    name: ClassVar[str] = "given"
    b: torch.Tensor | None = None

    def task_importance(self, task, model):
        return self.b


def anchored(lam, b, step="auto", seed=0):
    """A small MLP, a Given regulariser anchored at its initial parameters, and then moved off them."""
    s = ll.benchmarks.permuted("synthetic", n_tasks=2)
    torch.manual_seed(seed)
    model = ll.models.MLP(s.input_size, [5], s.n_classes).double()
    method = Given(lam=lam, step=step)
    method.prepare(model, s)
    method.b = b(method.layout.size).double()
    method.before_task(s.tasks[0], model)
    method.after_task(s.tasks[0], model)  # Ω = b, θ* = the initial parameters
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, y = s.tasks[1].train_x[:16].double(), s.tasks[1].train_y[:16]
    return method, model, x, y, s.tasks[1]


def one_step(method, model, x, y, task, lr, weight_decay=0.0):
    """One training step as fit() takes it; returns θ before, the task gradient g, and θ after."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    method.on_optimizer(opt)
    before = method.layout.flat()
    task_loss = ll.methods.base.cross_entropy(model(x), y, None)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(task_loss, list(model.parameters()))])
    opt.zero_grad()
    method.loss(model, x, y, None).backward()
    method.after_backward(model, task)
    opt.step()
    method.after_step(model, task)
    return before, g, method.layout.flat()


def test_proximal_step_by_hand_on_one_parameter():
    # θ = 2, θ* = 0, Ω = 3, λ = 0.5, lr = 0.1, task loss ½ (θ − 1)² so g = 1:
    # θ' = 2 − 0.1 = 1.9; a = 2 · 0.1 · 0.5 · 3 = 0.3; θ ← (1.9 + 0.3 · 0) / 1.3
    s = ll.benchmarks.permuted("synthetic", n_tasks=2)
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    method = Given(lam=0.5, b=torch.tensor([3.0]))
    method.prepare(model, s)
    method.before_task(s.tasks[0], model)
    method.after_task(s.tasks[0], model)
    with torch.no_grad():
        model.weight.fill_(2.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    method.on_optimizer(opt)
    assert not method.in_loss  # the penalty is not in the loss ...
    (0.5 * (model.weight - 1.0) ** 2).sum().backward()
    opt.step()
    method.after_step(model, s.tasks[1])  # ... but applied after the step
    assert model.weight.item() == pytest.approx(1.9 / 1.3, rel=1e-6)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_proximal_step_is_the_exact_minimiser_of_the_steps_problem(weight_decay):
    lam, lr = 2.0, 0.3
    method, model, x, y, task = anchored(lam, lambda n: torch.rand(n, generator=torch.Generator().manual_seed(1)) * 5)
    before, g, after = one_step(method, model, x, y, task, lr, weight_decay)
    omega, anchor = method._omega, method._anchor
    moved = before - lr * (g + weight_decay * before)  # θ': SGD on the task loss (weight decay in g)
    # u minimises ‖u − θ'‖²/(2 lr) + λ Σ Ω (u − θ*)², a strictly convex quadratic: its gradient is 0 at u
    stationarity = (after - moved) / lr + 2 * lam * omega * (after - anchor)
    assert stationarity.abs().max().item() < 1e-10
    assert (after - moved).abs().max().item() > 1e-3  # and the pull did move the parameters


def test_proximal_step_agrees_with_the_explicit_step_to_first_order():
    gaps = []
    for lr in (1e-3, 1e-4):
        before, _, explicit = one_step(*anchored(1.0, lambda n: torch.linspace(0, 4, n), "explicit"), lr)
        _, _, proximal = one_step(*anchored(1.0, lambda n: torch.linspace(0, 4, n), "proximal"), lr)
        gap = (proximal - explicit).abs().max().item()
        assert (explicit - before).abs().max().item() > 10 * gap  # the step itself is O(lr)
        gaps.append(gap)
    # the two steps differ by O(lr²): ten times smaller a step, a hundred times smaller gap
    assert 0 < gaps[1] and gaps[1] / gaps[0] == pytest.approx(0.01, rel=0.02)


def test_enormous_lam_diverges_with_the_explicit_step_and_pins_the_parameters_with_the_proximal():
    s = ll.benchmarks.permuted("synthetic", n_tasks=2)
    results = {}
    for step in ("explicit", "proximal"):
        torch.manual_seed(0)
        model = ll.models.mlp_for(s, hidden=(16,))
        method = ll.methods.create("l2", lam=1e6, step=step)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                results[step] = ll.fit(s, model, method, epochs=2)
            except DivergedError:
                results[step] = None
        assert any(issubclass(w.category, LifelongWarning) for w in caught) == (step == "explicit")
    assert results["explicit"] is None
    proximal = results["proximal"]
    assert all(math.isfinite(v) for losses in proximal.losses for v in losses)
    # Ω = 1 everywhere and λ = 1e6: the second task cannot move the parameters, so task 1 keeps its accuracy
    assert proximal.R[2][0] == proximal.R[1][0]


def test_mas_at_the_papers_lam_diverges_with_the_explicit_step_on_the_main_job_and_trains_with_the_default():
    # The main job's settings on two tasks: MAS's importances reach ≈ 50 after task 1, so at the paper's
    # λ = 1 (the default before the proximal step) and lr 0.1 the papers' step is far past its stable
    # range, as its warning says.
    s = ll.benchmarks.permuted("digits", n_tasks=2, seed=0)
    for step in ("explicit", "auto"):
        torch.manual_seed(0)
        model = ll.models.MLP(s.input_size, [50, 50, 50], s.n_classes)
        method = ll.methods.create("mas", lam=1.0, step=step)
        if step == "explicit":
            with pytest.warns(LifelongWarning, match=r"mas: lr · 2 · lam · max Ω = [0-9.]+ after task 1"):
                with pytest.raises(DivergedError):
                    ll.fit(s, model, method, epochs=10)
        else:
            result = ll.fit(s, model, method, epochs=10)
            assert all(math.isfinite(v) for losses in result.losses for v in losses)
            assert 2 * 0.1 * method.lam * method._omega.max().item() > 2  # the explicit step's regime
            assert result.R[2][1] > 0.5 and result.R[2][0] > 0.5


@pytest.mark.parametrize("name", NAMES)
def test_every_methods_defaults_train_without_diverging(name):
    # The main job's stream and settings (permuted minimnist, 3 × 50 MLP, SGD lr 0.1, batch 32, 5 epochs), smaller.
    s = ll.benchmarks.permuted("minimnist", n_tasks=3, seed=0, samples_per_task=500)
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [50, 50, 50], s.n_classes)
    result = ll.fit(s, model, ll.methods.create(name), epochs=5, lr=0.1, batch_size=32)
    for losses in result.losses:
        assert all(math.isfinite(v) for v in losses)
        assert losses[-1] < losses[0]  # each task's loss went down, not up
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_auto_is_proximal_with_plain_sgd_and_explicit_with_momentum_or_adam():
    s = ll.benchmarks.permuted("synthetic", n_tasks=2)
    for opts, in_loss in (
        ({}, False),
        ({"weight_decay": 1e-3}, False),
        ({"momentum": 0.9}, True),
        ({"optimizer": "adam", "lr": 1e-3}, True),
    ):
        method = ll.methods.create("ewc")
        ll.fit(s, ll.models.mlp_for(s, hidden=(8,)), method, iterations=3, **opts)
        assert method.in_loss == in_loss, opts
    with pytest.raises(ll.LifelongError, match="step proximal needs plain SGD"):
        ll.fit(s, ll.models.mlp_for(s, hidden=(8,)), ll.methods.create("ewc", step="proximal"), momentum=0.9)


@pytest.mark.parametrize(
    "lam, opts, warned",
    [
        (15.0, {}, True),  # lr · 2 · lam · 1 = 3 >= 2
        (9.0, {}, False),  # 1.8 < 2
        (15.0, {"momentum": 0.9}, False),  # 3 < 2 (1 + 0.9) = 3.8
        (25.0, {"momentum": 0.9}, True),  # 5 >= 3.8
    ],
)
def test_the_explicit_step_warns_once_past_its_stable_range(lam, opts, warned):
    s = ll.benchmarks.permuted("synthetic", n_tasks=4)
    method = ll.methods.create("l2", lam=lam, step="explicit")  # Ω = 1: the value is lr · 2 · lam
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ll.fit(s, ll.models.mlp_for(s, hidden=(8,)), method, iterations=3, lr=0.1, **opts)
    messages = [str(w.message) for w in caught if issubclass(w.category, LifelongWarning)]
    assert len(messages) == int(warned)  # once per run, not once per task
    if warned:
        value = 0.1 * 2 * lam
        assert messages[0].startswith(f"l2: lr · 2 · lam · max Ω = {value:.3g} after task 1")
        assert ("step to proximal" in messages[0]) == (not opts)  # plain SGD can switch to the proximal step
    # the default step never warns: it is stable for any λ
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ll.fit(s, ll.models.mlp_for(s, hidden=(8,)), ll.methods.create("l2", lam=lam), iterations=3, lr=0.1)
    assert not [w for w in caught if issubclass(w.category, LifelongWarning)]


# SI under the proximal step, by hand: the task gradient is read before the step, Δθ after the pull.
H = [1.0, 0.5, 2.0, 0.25]  # curvatures of L_t(θ) = ½ Σ h_i (θ_i − c_ti)²
CENTRES = [[1.0, -2.0, 0.5, 3.0], [-1.0, 1.0, 2.0, -0.5]]
THETA0 = [0.2, 0.1, -0.3, 0.4]
LR, STEPS, C, XI = 0.3, 6, 5.0, 0.1


def hand_si_proximal():
    theta, omega, anchor, out = list(THETA0), [0.0] * 4, None, []
    for centre in CENTRES:
        start, w = list(theta), [0.0] * 4
        for _ in range(STEPS):
            g = [h * (t - c) for h, t, c in zip(H, theta, centre, strict=True)]
            new = [t - LR * gi for t, gi in zip(theta, g, strict=True)]
            if anchor is not None:
                a = [2 * LR * C * o for o in omega]
                new = [(n + ai * s) / (1 + ai) for n, ai, s in zip(new, a, anchor, strict=True)]
            w = [wi - gi * (n - t) for wi, gi, n, t in zip(w, g, new, theta, strict=True)]
            theta = new
        omega = [max(0.0, o + wi / ((t - s) ** 2 + XI)) for o, wi, t, s in zip(omega, w, theta, start, strict=True)]
        anchor = list(theta)
        out.append(list(omega))
    return out


def test_si_path_integral_with_the_proximal_step_matches_the_hand_computation():
    stream = ll.benchmarks.permuted("synthetic", n_tasks=2)
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([THETA0]))
    method = SI(lam=C, xi=XI)
    model = method.prepare(model, stream)
    h, got = torch.tensor(H), []
    for task, centre in zip(stream.tasks, CENTRES, strict=True):
        method.before_task(task, model)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        method.on_optimizer(opt)
        for _ in range(STEPS):
            opt.zero_grad(set_to_none=True)
            (0.5 * (h * (model.weight[0] - torch.tensor(centre)) ** 2).sum()).backward()
            method.after_backward(model, task)
            opt.step()
            method.after_step(model, task)
        method.after_task(task, model)
        got.append(method.importance()["weight"][0].tolist())
    want = hand_si_proximal()
    assert 2 * LR * C * max(want[0]) > 2  # the explicit step would diverge here
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=1e-5, abs=1e-6)


def test_rwalk_fisher_is_the_mean_over_the_intervals_batches():
    s = ll.benchmarks.permuted("synthetic", n_tasks=1)
    task = s.tasks[0]
    torch.manual_seed(0)
    model = ll.models.MLP(s.input_size, [6], s.n_classes)
    method = RWalk(alpha=1.0, update_every=3, fisher="empirical")  # α = 1: F is the latest interval's
    method.prepare(model, s)
    method.before_task(task, model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    method.on_optimizer(opt)
    batches = [(task.train_x[i : i + 8], task.train_y[i : i + 8]) for i in (0, 8, 16)]
    for x, y in batches:
        opt.zero_grad()
        method.loss(model, x, y, None).backward()
        method.after_backward(model, task)
        opt.step()
        method.after_step(model, task)
    # by hand: the mean over the 24 samples of the interval of each one's squared loss gradient
    want = torch.zeros(method.layout.size)
    for x, y in batches:
        for xi, yi in zip(x, y, strict=True):
            loss = nn.functional.cross_entropy(model(xi[None]), yi[None])
            want += torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))]) ** 2
    assert torch.allclose(method._fisher, want / 24, rtol=1e-4, atol=1e-9)
