"""The regularisation family: penalty, anchors, accumulation over tasks, masks, lam = 0, forgetting."""

import copy

import numpy as np
import pytest
import torch

import lifelong as ll
from lifelong.methods import EWC, METHODS, OnlineEWC, fisher
from lifelong.methods.regularization import REGULARIZERS
from lifelong.methods.regularization.scp import sliced_importance

NAMES = [cls.name for cls in REGULARIZERS]


def stream(n_tasks=2, scenario=None):
    return ll.benchmarks.permuted("synthetic", n_tasks=n_tasks, scenario=scenario)


def fit(s, method, epochs=2, **opts):
    torch.manual_seed(0)
    model = ll.models.mlp_for(s, hidden=(16, 16))
    result = ll.fit(s, model, method, epochs=epochs, **opts)
    return result, model


def explicit_penalty(method, model, anchors_and_importances):
    """λ Σ_t Σ_i b_t,i (θ_i − θ*_t,i)², parameter by parameter."""
    total = 0.0
    for anchor, importance in anchors_and_importances:
        for name, p in model.named_parameters():
            total = total + (importance[name] * (p - anchor[name]) ** 2).sum()
    return method.lam * total


class Recording:
    """Keeps each task's importance b_t and the parameters at the end of each task."""

    def task_importance(self, task, model):
        b = super().task_importance(task, model)
        self.recorded = [*getattr(self, "recorded", []), (copy.deepcopy(model.state_dict()), self.layout.unflatten(b))]
        return b


class RecordingEWC(Recording, EWC):
    pass


class RecordingOnlineEWC(Recording, OnlineEWC):
    pass


@pytest.mark.parametrize("name", NAMES)
def test_penalty_is_zero_at_the_anchor_and_matches_the_formula_elsewhere(name):
    method = ll.methods.create(name, lam=0.7)
    _, model = fit(stream(1), method)
    assert method.penalty(model).item() == 0.0  # right after the task, θ = θ*
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    got = method.penalty(model)
    want = explicit_penalty(method, model, [(method.anchors(), method.importance())])
    assert got.item() > 0 and got.item() == pytest.approx(want.item(), rel=1e-5)
    grads = torch.autograd.grad(got, list(model.parameters()))
    want_grads = torch.autograd.grad(want, list(model.parameters()))
    for g, w in zip(grads, want_grads, strict=True):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-7)


def test_ewc_keeps_one_penalty_per_task_in_closed_form():
    method = RecordingEWC(lam=0.5)
    _, model = fit(stream(3, "task"), method)
    assert len(method.recorded) == 3
    torch.manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    got = method.penalty(model)
    want = explicit_penalty(method, model, method.recorded)
    assert got.item() == pytest.approx(want.item(), rel=1e-4)
    for g, w in zip(
        torch.autograd.grad(got, list(model.parameters())),
        torch.autograd.grad(want, list(model.parameters())),
        strict=True,
    ):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("gamma", [1.0, 0.5, 0.0])
def test_online_ewc_decays_one_running_fisher_around_the_latest_anchor(gamma):
    s = stream(3, "task")
    method = RecordingOnlineEWC(lam=0.5, gamma=gamma)
    _, model = fit(s, method)
    (_, b1), (_, b2), (last, b3) = method.recorded
    for name, omega in method.importance().items():
        assert torch.allclose(omega, gamma**2 * b1[name] + gamma * b2[name] + b3[name], rtol=1e-6, atol=1e-9)
        assert torch.equal(method.anchors()[name], last[name])
    # Each b_t is the exact Fisher of the parameters at the end of task t, on its data, with its mask.
    for task, (state, b) in zip(s.tasks, method.recorded, strict=True):
        frozen = copy.deepcopy(model)
        frozen.load_state_dict(state)
        mask = s.train_masks([task.id])[task.id]
        want = fisher.diagonal_fisher(frozen, task.train_x, task.train_y, mask, "exact")
        for name in want:
            assert torch.allclose(b[name], want[name], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("scenario", ["task", "class"])
@pytest.mark.parametrize("name", NAMES)
def test_importances_are_nonnegative_and_shaped_like_the_parameters(name, scenario):
    method = ll.methods.create(name)
    _, model = fit(stream(2, scenario), method, lr=0.05)
    importance = method.importance()
    assert list(importance) == [n for n, _ in model.named_parameters()]
    for n, p in model.named_parameters():
        assert importance[n].shape == p.shape
        assert torch.isfinite(importance[n]).all() and (importance[n] >= 0).all(), n
    assert sum(v.sum() for v in importance.values()) > 0


@pytest.mark.parametrize(
    "name, settings",
    [("ewc", {"fisher": f}) for f in fisher.ESTIMATORS] + [("mas", {}), ("scp", {}), ("rwalk", {"normalize": False})],
)
def test_a_task_importance_uses_that_tasks_output_mask(name, settings):
    s = stream(3, "task")  # task 1 owns units 0-9 of 30
    method = ll.methods.create(name, **settings)
    torch.manual_seed(0)
    model = ll.models.mlp_for(s, hidden=(16,))
    method.prepare(model, s)
    method.before_task(s.tasks[0], model)
    if name == "rwalk":  # its Fisher comes from training batches
        method.loss(model, s.tasks[0].train_x[:32], s.tasks[0].train_y[:32], s.train_masks([0])[0]).backward()
        method.after_backward(model, s.tasks[0])
        method.after_step(model, s.tasks[0])
    b = method.layout.unflatten(method.task_importance(s.tasks[0], model))
    own, others = slice(0, 10), slice(10, 30)
    for part in ("head.weight", "head.bias"):
        assert (b[part][others] == 0).all(), part  # no importance for units the task never used
        assert (b[part][own] > 0).any(), part


@pytest.mark.parametrize("name", NAMES)
def test_lam_zero_gives_exactly_finetunes_R(name):
    s = stream(2, "class")
    settings = {"fisher": "sampled"} if name in ("ewc", "online-ewc", "rwalk") else {}  # draws from its own RNG
    finetune, _ = fit(s, ll.methods.create("finetune"), momentum=0.9)
    method, _ = fit(s, ll.methods.create(name, lam=0.0, **settings), momentum=0.9)
    assert np.array_equal(method.R, finetune.R)
    assert np.array_equal(method.views["task"], finetune.views["task"])


# λ that works for each method on 3 permuted synthetic tasks with SGD at lr 0.1 (10 epochs)
WORKING_LAM = {"l2": 0.1, "ewc": 3.0, "online-ewc": 3.0, "si": 0.3, "mas": 0.01, "rwalk": 0.3, "scp": 3.0}


@pytest.fixture(scope="module")
def finetune_bwt():
    s = stream(3)
    torch.manual_seed(0)
    return s, ll.fit(s, ll.models.mlp_for(s), ll.methods.create("finetune"), epochs=10).bwt


@pytest.mark.parametrize("name", NAMES)
def test_every_method_forgets_less_than_finetune(name, finetune_bwt):
    s, baseline = finetune_bwt
    torch.manual_seed(0)
    result = ll.fit(s, ll.models.mlp_for(s), ll.methods.create(name, lam=WORKING_LAM[name]), epochs=10)
    assert baseline < -0.5  # fine-tuning forgets most of the earlier tasks ...
    assert result.bwt > baseline + 0.15, (result.bwt, baseline)  # ... the regularised runs much less
    assert np.diag(result.R[1:]).min() > 0.8  # and they still learn each new task


@pytest.mark.parametrize(
    "name, settings, flag",
    [(n, {"lam": -1.0}, "lam") for n in NAMES]
    + [
        ("ewc", {"lam": float("nan")}, "lam"),
        ("ewc", {"fisher": "diagonal"}, "fisher"),
        ("rwalk", {"fisher": "fim"}, "fisher"),
        ("ewc", {"fisher_samples": -5}, "fisher_samples"),
        ("ewc", {"fisher_batch": 0}, "fisher_batch"),
        ("online-ewc", {"gamma": 1.5}, "gamma"),
        ("si", {"xi": -0.1}, "xi"),
        ("rwalk", {"xi": 0.0}, "xi"),
        ("mas", {"samples": -1}, "samples"),
        ("scp", {"slices": 0}, "slices"),
        ("scp", {"alpha": 2.0}, "alpha"),
        ("rwalk", {"update_every": 0}, "update_every"),
        ("ewc", {"step": "implicit"}, "step"),
    ],
)
def test_bad_hyperparameters_are_user_errors(name, settings, flag):
    # From Python a message names the setting as the keyword argument (the CLI says --fisher-samples).
    with pytest.raises(ll.LifelongError, match=rf"{name}: {flag} must be"):
        ll.methods.create(name, **settings)


def test_registry_names_and_settings():
    assert set(NAMES) <= set(METHODS)
    assert NAMES == ["l2", "ewc", "online-ewc", "si", "mas", "rwalk", "scp"]
    for name in NAMES:
        cls = METHODS[name]
        fields = {f.name: f for f in cls.hyperparameters()}
        assert "lam" in fields and all(f.metadata.get("help") for f in fields.values())
        assert cls.__doc__ and "Σ" in cls.__doc__  # the equation, in one line
    settings = ll.methods.create("ewc", fisher="batched", fisher_samples=100).settings()
    assert settings == {"lam": 10.0, "step": "auto", "fisher": "batched", "fisher_samples": 100, "fisher_batch": 128}
    assert ll.methods.create("ewc", fisher_samples=0).fisher_samples == 0  # 0 and None both mean all


@pytest.mark.parametrize("slices", [3, 40])  # fewer and more slices than the 10 output units
def test_scp_slices_each_squared_separately(slices):
    torch.manual_seed(0)
    model = ll.models.MLP(8, (6,), 10)
    x = torch.randn(25, 8)
    units = torch.arange(2, 9)
    got = sliced_importance(model, x, units, slices, torch.Generator().manual_seed(5))
    xi = torch.randn(slices, len(units), generator=torch.Generator().manual_seed(5))
    xi = xi / xi.norm(dim=1, keepdim=True)
    params = dict(model.named_parameters())
    want = {n: torch.zeros_like(p) for n, p in params.items()}
    for l in range(slices):
        mean_output = model(x)[:, units].mean(0)
        grads = torch.autograd.grad(mean_output @ xi[l], list(params.values()))
        for (n, _), g in zip(params.items(), grads, strict=True):
            want[n] += g**2 / slices
    for n in want:
        assert torch.allclose(got[n], want[n], rtol=1e-4, atol=1e-9), n


def test_rwalk_scales_fisher_and_score_to_unit_range():
    method = ll.methods.create("rwalk")
    fit(stream(2), method)
    omega = torch.cat([v.flatten() for v in method.importance().values()])
    assert omega.min() >= 0 and omega.max() <= 2.0 + 1e-6
    assert (method._score >= 0).all() and (method._fisher >= 0).all()
