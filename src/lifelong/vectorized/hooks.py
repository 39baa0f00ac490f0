"""The methods' hooks for S stacked seeds: per-step hooks on the stacked tensors, per-task hooks per seed.

Every seed keeps its own Method object, prepared on its own model (whose parameters are views of the
stacked ones, see stacked.py), so what a method does once per task (``before_task``, ``on_optimizer``,
``after_task``: importance estimates, accumulation, anchors) is the method's own code, run once per
seed. What it does on every step is elementwise per parameter for the methods supported here, so it is
done once for all seeds on (S, *shape) tensors:

- finetune, joint, cumulative: the task loss only (joint and cumulative differ in their stages).
- the regularisers with a quadratic penalty λ Σ_i Ω_i (θ_i − θ*_i)² (regularization/base.py: l2, ewc,
  online-ewc, mas, scp): the explicit step adds the penalty to each seed's loss, its gradient 2λΩ(θ − θ*)
  elementwise; the proximal step pulls θ towards θ* by k = 2ηλΩ / (1 + 2ηλΩ) after the optimizer's
  step, one ``lerp`` per stacked parameter. Ω, θ*, k are each seed's own, stacked once per task.
- SI adds its path integral ω += −g ⊙ Δθ (per element) to that.

RWalk is not here: its running Fisher is re-estimated every k steps from per-sample gradients of the
interval's batches, which is not elementwise and would be S separate estimates inside the hot loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.data.task import Task
from lifelong.methods.base import Method
from lifelong.methods.regularization.base import Regularizer
from lifelong.train import Settings, make_optimizer
from lifelong.vectorized.stacked import StackedMLP


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Each seed's mean cross-entropy over its batch: logits (S, B, C), y (S, B) -> (S,)."""
    S, B, C = logits.shape
    if mask is not None:
        logits = logits + mask
    return F.cross_entropy(logits.reshape(S * B, C), y.reshape(-1), reduction="none").view(S, B).mean(1)


def _stack(per_seed: Sequence[torch.Tensor], like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Flat per-seed vectors (a ParamLayout's order) as one (S, *shape) tensor per stacked parameter."""
    numels = [p[0].numel() for p in like]
    chunks = torch.stack(list(per_seed)).split(numels, dim=1)
    return [c.reshape(p.shape).contiguous() for c, p in zip(chunks, like, strict=True)]


class Plain:
    """The task loss alone (finetune, joint, cumulative); every method's per-task hooks, once per seed."""

    has_after_backward = False
    has_after_step = False

    def __init__(self, stacked: StackedMLP, methods: Sequence[Method], models: Sequence[nn.Module]):
        self.stacked, self.methods, self.models = stacked, list(methods), list(models)
        # False for a seed whose run diverged: its per-task hooks stop (its weights are NaN); its slice of
        # the stacked tensors goes on at no extra cost, and touches no other seed's numbers.
        self.alive = [True] * len(self.methods)

    def live(self) -> list[Method]:
        """Each seed's method, or for a diverged seed a live seed's (whose state only fills its slot)."""
        first = next(m for m, ok in zip(self.methods, self.alive, strict=True) if ok)
        return [m if ok else first for m, ok in zip(self.methods, self.alive, strict=True)]

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return cross_entropy(self.stacked(x), y, mask)

    def before_task(self, tasks: Sequence[Task]) -> None:
        for method, task, model, ok in zip(self.methods, tasks, self.models, self.alive, strict=True):
            if ok:
                method.before_task(task, model)

    def on_optimizer(self, settings: Settings) -> None:
        # Each seed's method learns its optimizer's settings from one of its own over its own model's
        # parameters (what fit() would have given it); the stacked optimizer makes the steps.
        for method, model in zip(self.methods, self.models, strict=True):
            method.on_optimizer(make_optimizer(model.parameters(), settings))
        self.refresh()

    def after_task(self, tasks: Sequence[Task]) -> None:
        for method, task, model, ok in zip(self.methods, tasks, self.models, self.alive, strict=True):
            if ok:
                method.after_task(task, model)
        self.refresh()

    def refresh(self) -> None:
        """Re-read what the per-step hooks need from the per-seed methods (after each per-task hook)."""

    def after_backward(self) -> None: ...

    def after_step(self) -> None: ...


class _Penalty(torch.autograd.Function):
    """Each seed's λ (Σ_i Ω_i (θ_i − θ*_i)² + c) (S,), with gradient 2λΩ(θ − θ*) (regularization/base.py)."""

    @staticmethod
    def forward(ctx, hooks: Penalised, *params):
        wds, total = [], hooks.const.clone()
        for p, anchor, omega in zip(params, hooks.anchor, hooks.omega, strict=True):
            d = p.detach() - anchor
            wd = omega * d
            wds.append(wd)
            total += (wd * d).reshape(len(total), -1).sum(1)
        ctx.hooks = hooks
        ctx.save_for_backward(*wds)
        return hooks.lam * total

    @staticmethod
    def backward(ctx, grad_output):
        hooks = ctx.hooks
        scale = 2.0 * hooks.lam * grad_output  # as the one-seed penalty: wd * (2λ · dL/dpenalty)
        grads = [wd * scale.view(-1, *[1] * (wd.dim() - 1)) for wd in ctx.saved_tensors]
        hooks.penalty_grad = grads  # SI subtracts it to recover the task loss's gradient
        return (None, *grads)


class Penalised(Plain):
    """λ Σ_i Ω_i (θ_i − θ*_i)² per seed, by the explicit or the proximal step (each seed's method chose)."""

    def refresh(self) -> None:
        methods: list[Regularizer] = self.live()  # type: ignore[assignment]
        first = methods[0]
        self.lam = first.lam
        # The seeds are at the same point of the same schedule, so they take the same kind of step.
        self.in_loss = first.in_loss
        self.pulling = first._pull is not None
        self.has_after_step = self.pulling
        self.penalty_grad: list[torch.Tensor] | None = None
        params = self.stacked.params
        if first.penalised:
            self.omega = _stack([m._omega for m in methods], params)
            self.anchor = _stack([m._anchor for m in methods], params)
            self.const = torch.stack([m._const for m in methods])
        if self.pulling:  # the proximal step's k and θ*, per parameter, as each seed's method computed them
            self.pull = [torch.stack(ks) for ks in zip(*(m._pull for m in methods), strict=True)]
            self.target = [torch.stack(ts) for ts in zip(*(m._target for m in methods), strict=True)]

    def loss(self, x, y, mask):
        task_loss = super().loss(x, y, mask)
        if not self.in_loss:
            return task_loss
        return task_loss + _Penalty.apply(self, *self.stacked.params)

    def after_step(self) -> None:
        if self.pulling:
            with torch.no_grad():  # θ ← θ + k ⊙ (θ* − θ)
                torch._foreach_lerp_(self.stacked.params, self.target, self.pull)


class PathIntegral(Penalised):
    """SI (regularization/si.py): ω += −g ⊙ Δθ per step, g the task loss's gradient, Δθ the whole step."""

    has_after_backward = True

    def before_task(self, tasks) -> None:
        super().before_task(tasks)
        self.previous = [p.detach().clone() for p in self.stacked.params]
        self.path = [torch.zeros_like(p) for p in self.stacked.params]

    def refresh(self) -> None:
        super().refresh()
        self.has_after_step = True

    def after_backward(self) -> None:
        grads = [p.grad.clone() for p in self.stacked.params]
        if self.in_loss and self.penalty_grad is not None:
            torch._foreach_sub_(grads, self.penalty_grad)
        self.grad = grads

    def after_step(self) -> None:
        super().after_step()  # the proximal pull (if any) first: Δθ is the whole step
        with torch.no_grad():
            theta = [p.detach().clone() for p in self.stacked.params]
            torch._foreach_addcmul_(self.path, self.grad, torch._foreach_sub(theta, self.previous), value=-1.0)
            self.previous = theta

    def after_task(self, tasks) -> None:
        for s, method in enumerate(self.methods):  # each seed's path integral, in its layout's order
            method._path.copy_(torch.cat([p[s].reshape(-1) for p in self.path]))
        super().after_task(tasks)
