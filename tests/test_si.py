"""SI's path integral against a step-by-step hand computation on a quadratic, with plain SGD."""

import pytest
import torch
from torch import nn

import lifelong as ll
from lifelong.methods import SI

H = [1.0, 0.5, 2.0, 0.25]  # curvatures of L_t(θ) = ½ Σ h_i (θ_i − c_ti)²
CENTRES = [[1.0, -2.0, 0.5, 3.0], [-1.0, 1.0, 2.0, -0.5]]
THETA0 = [0.2, 0.1, -0.3, 0.4]
LR, STEPS, C, XI = 0.3, 6, 0.5, 0.1


def hand_si(lam=C, xi=XI, count_penalty=False):
    """Plain Python floats: Ω after each task, following SGD one step at a time."""
    theta, omega, anchor, out = list(THETA0), [0.0] * 4, None, []
    for centre in CENTRES:
        start, w = list(theta), [0.0] * 4
        for _ in range(STEPS):
            g_task = [h * (t - c) for h, t, c in zip(H, theta, centre, strict=True)]
            g_total = list(g_task)
            if anchor is not None:  # the penalty c Σ Ω (θ − θ*)² adds 2cΩ(θ − θ*), not counted in ω
                g_total = [g + 2 * lam * o * (t - a) for g, o, t, a in zip(g_task, omega, theta, anchor, strict=True)]
            new = [t - LR * g for t, g in zip(theta, g_total, strict=True)]
            g_path = g_total if count_penalty else g_task
            w = [wi - g * (n - t) for wi, g, n, t in zip(w, g_path, new, theta, strict=True)]
            theta = new
        omega = [max(0.0, o + wi / ((t - s) ** 2 + xi)) for o, wi, t, s in zip(omega, w, theta, start, strict=True)]
        anchor = list(theta)
        out.append(list(omega))
    return out


def run_si(lam=C, xi=XI):
    stream = ll.benchmarks.permuted("synthetic", n_tasks=2)
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([THETA0]))
    method = SI(lam=lam, xi=xi)
    model = method.prepare(model, stream)
    h = torch.tensor(H)
    out = []
    for task, centre in zip(stream.tasks, CENTRES, strict=True):
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        method.before_task(task, model)
        for _ in range(STEPS):
            opt.zero_grad(set_to_none=True)
            theta = model.weight[0]
            loss = 0.5 * (h * (theta - torch.tensor(centre)) ** 2).sum()
            if method.penalised:
                loss = loss + method.penalty(model)
            loss.backward()
            method.after_backward(model, task)
            opt.step()
            method.after_step(model, task)
        method.after_task(task, model)
        out.append(method.importance()["weight"][0].tolist())
    return out


@pytest.mark.parametrize("lam", [C, 0.0])
def test_si_path_integral_matches_the_hand_computation(lam):
    got, want = run_si(lam), hand_si(lam)
    for g_task, w_task in zip(got, want, strict=True):
        assert g_task == pytest.approx(w_task, rel=1e-5, abs=1e-6)
    assert all(o > 0 for o in want[0])  # gradient descent on a quadratic: every ω is positive


def test_si_counts_the_task_gradient_only():
    got, with_penalty = run_si(), hand_si(count_penalty=True)
    assert got[0] == pytest.approx(with_penalty[0], rel=1e-5)  # no penalty during the first task
    assert got[1] != pytest.approx(with_penalty[1], rel=1e-3)  # the penalty's gradient is not in ω


def test_si_damping_must_be_positive():
    with pytest.raises(ll.LifelongError, match="si: xi must be > 0"):
        ll.methods.create("si", xi=0.0)
