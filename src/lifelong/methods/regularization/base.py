"""The base of the selective-synaptic-plasticity family: a quadratic penalty around an anchor.

While learning a new task the loss is

    L'(θ) = L(θ) + λ Σ_i Ω_i (θ_i − θ*_i)²                                   (no factor 1/2)

θ* (the anchor) are the parameters after the earlier tasks and Ω_i ≥ 0 each parameter's accumulated
importance. Methods differ only in how a task's importance b_i is estimated (``task_importance``)
and in how importances and anchors are combined over tasks (the class variables below).

The 1/2 convention. There is no 1/2 in front of the sum, as in SI (Zenke et al. 2017: c Σ Ω (θ−θ*)²),
MAS (Aljundi et al. 2018: λ Σ Ω (θ−θ*)²), RWalk (Chaudhry et al. 2018) and the SCP authors' code. EWC
(Kirkpatrick et al. 2017) and online EWC (Schwarz et al. 2018) write (λ/2) Σ F (θ−θ*)², so their
papers' λ is twice ``lam`` here: λ_paper = 2 · lam. The same Ω and lam give the same penalty in every
method, which is what makes their λ comparable once the importances are on a comparable scale.

Accumulation over tasks (``accumulate``), b_t being task t's importance:
- ``sum``:    Ω_t = Ω_{t−1} + b_t                        (EWC, SI, MAS)
- ``online``: Ω_t = γ Ω_{t−1} + b_t, decay γ = ``gamma`` (online EWC; SCP with its moving average)
- ``latest``: Ω_t = b_t                                  (L2, RWalk: b_t already carries the history)

Anchors (``anchor``):
- ``latest``:   θ* = the parameters after the last task (one penalty around one point).
- ``per-task``: one penalty per earlier task around its own parameters, Σ_t b_t (θ − θ*_t)², as in the
  original EWC. It is kept in closed form, A (θ − μ)² + c with A = Σ_t b_t, μ the b-weighted mean of
  the anchors and c ≥ 0 a constant, so the per-batch cost does not grow with the number of tasks.

The step (``step``). The papers take gradient steps on L': the penalty's gradient 2λΩ(θ − θ*) is
added to the task gradient (the explicit step). With plain SGD at learning rate η that step multiplies
θ_i − θ*_i by (1 − 2ηλΩ_i) per step, so it oscillates and diverges as soon as η · 2λ · max Ω ≥ 2, which
importances of tens reach at λ = 1 and η = 0.1 (MAS on permuted digits: max Ω ≈ 53 after task 1, so
η · 2λ · max Ω ≈ 10.7). For plain SGD the default is instead the proximal step (proximal gradient
descent; Parikh & Boyd 2014, "Proximal algorithms", Found. Trends Optim. 1(3), §4.2): the optimizer
steps on the task loss alone, θ' = θ − η g (g includes weight decay), then the penalty is minimised
exactly together with the distance to θ',

    θ ← argmin_u ‖u − θ'‖² / (2η) + λ Σ_i Ω_i (u_i − θ*_i)²  =  (θ' + 2ηλ Ω ⊙ θ*) / (1 + 2ηλ Ω).

It agrees with the explicit step to first order in η and has the same fixed points (the stationary
points of L'), but it pulls each parameter towards θ* by a fraction 2ηλΩ / (1 + 2ηλΩ) < 1, so no λ
makes it diverge: a huge λ pins the parameters with Ω > 0 at θ* instead. Per-task anchors use their
closed form (Ω = A, θ* = μ; the constant c does not move the minimiser). This is a deviation from the
papers, chosen so that every default trains under the default optimizer whatever the scale of its
importances; ``step="explicit"`` restores the papers' step. ``auto`` (the default) is proximal with
``torch.optim.SGD`` without momentum and explicit otherwise (momentum, Adam: there the closed form is
not the optimizer's update); ``proximal`` with such an optimizer is an error. fit() tells the method
its optimizer through the ``on_optimizer`` hook; hooks called by hand without it use the explicit step.
With the explicit step and SGD, a warning says before a task when η · 2λ · max Ω is past the stable
range: 2 for plain SGD, 2(1 + β) with momentum β, 2(1 + β)/(1 + 2β) with Nesterov momentum.
Under the proximal step the training loss fit() records is the task loss alone.

Hot path. Importances are computed once per task (``after_task``) and stored as flat vectors (Ω, μ) of
all trainable parameters. Explicit step: the penalty of a batch is one custom autograd function:
concatenate the parameters, subtract μ, multiply by Ω, one dot product; its backward is one multiply,
split into views for the parameters. Proximal step: nothing in the loss; after the optimizer's step,
one fused ``lerp`` over all parameters, θ ← θ + k ⊙ (θ* − θ) with k = 2ηλΩ / (1 + 2ηλΩ), reading
per-parameter views of k and θ* computed once per task. No ``.item()`` in either. On five permuted
digits tasks (10 epochs, CPU time of the whole fit(), one thread; benchmarks/penalty_step.py) L2 costs
0.06 s more than fine-tuning's 0.46 s with the proximal step and 0.21 s more with the explicit one.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn

from lifelong.data.task import Stream, Task
from lifelong.errors import LifelongError, option, warn
from lifelong.methods.base import Method, cross_entropy, param

ACCUMULATIONS = ("sum", "online", "latest")
ANCHORS = ("latest", "per-task")
STEPS = ("auto", "proximal", "explicit")
# Sample-count settings that may be None (all samples), so they cannot use param(min=...).
COUNT_FIELDS = ("fisher_samples", "samples")


class ParamLayout:
    """The trainable parameters of a model as one flat vector (and back)."""

    def __init__(self, model: nn.Module):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise LifelongError("the model has no trainable parameters to regularise")
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.size = sum(self.numels)

    def flat(self) -> torch.Tensor:
        """The current parameter values, detached, as one new vector."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def flat_grad(self) -> torch.Tensor:
        """The current gradients as one new vector (zeros for parameters without a gradient)."""
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params])

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.views(flat), strict=True))

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat vector shaped like the parameters, in order (no copy)."""
        return [v.view(s) for v, s in zip(flat.split(self.numels), self.shapes, strict=True)]


def plain_sgd(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every step is θ ← θ − lr · g (weight decay inside g): torch's SGD without momentum."""
    return type(optimizer) is torch.optim.SGD and all(
        g["momentum"] == 0 and not g.get("maximize", False) for g in optimizer.param_groups
    )


def explicit_limit(optimizer: torch.optim.Optimizer) -> float | None:
    """The largest lr · h for which SGD's explicit step on a quadratic of curvature h does not diverge:
    2 without momentum, 2(1 + β) with heavy-ball momentum β, 2(1 + β)/(1 + 2β) with Nesterov's (from the
    roots of each recursion's characteristic polynomial). None where it is not that simple (Adam,
    dampening): no check."""
    if type(optimizer) is not torch.optim.SGD:
        return None
    limits = []
    for g in optimizer.param_groups:
        beta = g["momentum"]
        if beta and g.get("dampening", 0):
            return None
        limits.append(2 * (1 + beta) / (1 + 2 * beta) if g.get("nesterov") else 2 * (1 + beta))
    return min(limits)


class _Penalty(torch.autograd.Function):
    """λ (Σ_i Ω_i (θ_i − μ_i)² + c) with gradient 2λΩ(θ − μ), computed on one flat vector."""

    @staticmethod
    def forward(ctx, reg: Regularizer, *params):
        d = torch.cat([p.detach().reshape(-1) for p in params]).sub_(reg._anchor)
        wd = reg._omega * d
        ctx.reg = reg
        ctx.save_for_backward(wd)
        return reg.lam * (torch.dot(wd, d) + reg._const)

    @staticmethod
    def backward(ctx, grad_output):
        (wd,) = ctx.saved_tensors
        reg = ctx.reg
        g = wd * (2.0 * reg.lam * grad_output)
        reg._penalty_grad = g  # SI and RWalk subtract it to recover the task loss's gradient
        return (None, *(v.view(s) for v, s in zip(g.split(reg.layout.numels), reg.layout.shapes, strict=True)))


@dataclasses.dataclass
class Regularizer(Method):
    """L'(θ) = L(θ) + λ Σ_i Ω_i (θ_i − θ*_i)²; subclasses say how a task's importance is estimated."""

    name: ClassVar[str] = "regularizer"
    accumulate: ClassVar[str] = "sum"
    anchor: ClassVar[str] = "latest"
    positive: ClassVar[tuple[str, ...]] = ()  # settings that must be > 0, not only >= 0
    # Stored: Ω, θ* (flat) and c. Rebuilt from them and the optimizer each task: the lr vector, the
    # proximal step's views; the last penalty gradient is per step.
    scratch: ClassVar[tuple[str, ...]] = ("_lr", "_pull", "_target", "_penalty_grad")
    known_failures: ClassVar[dict[str, str]] = {
        "class": "a penalty keeps the old weights near their values but, without old data, cannot teach the "
        "shared output layer to tell old classes from new ones; EWC, online EWC and SI score about 20 % on "
        "class-IL split MNIST (van de Ven & Tolias 2019, arXiv 1904.07734, Table 4; MAS and L2 likewise, "
        "Hsu et al. 2018, arXiv 1810.12488)"
    }

    # Subclasses redefine lam with their own default and help; the field keeps this first position.
    lam: float = param(1.0, "λ: penalty strength", min=0)
    step: str = param(
        "auto",
        "how the penalty is applied: proximal (exact, stable for any λ; plain SGD only), explicit (the "
        "papers' gradient step) or auto (proximal with plain SGD, else explicit)",
        choices=STEPS,
    )

    # ---- set-up ---------------------------------------------------------------------------------

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, name = getattr(self, f.name), option(f.name)
            if f.name in COUNT_FIELDS:
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                    raise LifelongError(f"{self.name}: {name} must be a whole number >= 0 (0: all; got {value})")
            elif isinstance(value, float) and not math.isfinite(value):
                raise LifelongError(f"{self.name}: {name} must be a finite number (got {value})")
        super().__post_init__()
        for name in self.positive:
            if getattr(self, name) <= 0:
                raise LifelongError(f"{self.name}: {option(name)} must be > 0 (got {getattr(self, name)})")
        if self.accumulate not in ACCUMULATIONS or self.anchor not in ANCHORS:
            raise LifelongError(f"{self.name}: unknown accumulation {self.accumulate!r} or anchor {self.anchor!r}")
        if self.anchor == "per-task" and self.accumulate != "sum":
            raise LifelongError(f"{self.name}: per-task anchors need the sum accumulation")

    def prepare(self, model: nn.Module, stream: Stream) -> nn.Module:
        self.stream = stream
        self.layout = ParamLayout(model)
        self.tasks_done = 0
        self._omega: torch.Tensor | None = None  # accumulated importance Ω (flat)
        self._anchor: torch.Tensor | None = None  # anchor θ* (flat; the weighted mean μ for per-task anchors)
        self._const = torch.zeros((), device=self.layout.params[0].device)  # c of the per-task closed form
        self._penalty_grad: torch.Tensor | None = None
        # The step, decided by on_optimizer (explicit until then, e.g. for hooks called by hand).
        self._proximal = False
        self._optimizer: torch.optim.Optimizer | None = None
        self._lr: torch.Tensor | None = None  # each parameter's learning rate (flat)
        self._pull: list[torch.Tensor] | None = None  # per-parameter views of k = a / (1 + a)
        self._target: list[torch.Tensor] | None = None  # per-parameter views of θ*
        self._warned = False
        # Seeds this method's own generator (sampled labels, subsets, slices): the global RNG, which
        # fit() seeds with the run's seed, is read but never advanced, so lam = 0 changes nothing.
        self._seed = torch.initial_seed()
        return model

    # ---- what subclasses provide ------------------------------------------------------------------

    def task_importance(self, task: Task, model: nn.Module) -> torch.Tensor:
        """b for the task just learned: a flat non-negative vector (``self.layout`` order)."""
        raise NotImplementedError

    def decay(self) -> float:
        """γ of the ``online`` accumulation."""
        return float(getattr(self, "gamma", 1.0))

    # ---- hooks ------------------------------------------------------------------------------------

    @property
    def penalised(self) -> bool:
        """Whether the penalty acts: after the first task and with lam > 0."""
        return self._omega is not None and self.lam > 0

    @property
    def in_loss(self) -> bool:
        """Whether the penalty is added to the loss: penalised, with the explicit step."""
        return self.penalised and not self._proximal

    def on_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Chooses the step for this optimizer (see the module docstring) and reads each parameter's lr."""
        plain = plain_sgd(optimizer)
        if self.step == "proximal" and not plain:
            raise LifelongError(
                f"{self.name}: {option('step')} proximal needs plain SGD (no momentum, not Adam); "
                f"use {option('step')} auto or explicit"
            )
        self._proximal = self.step == "proximal" or (self.step == "auto" and plain)
        self._optimizer = optimizer
        lr_of = {id(p): float(g["lr"]) for g in optimizer.param_groups for p in g["params"]}
        # each parameter's lr (0 for one the optimizer does not step), in the parameters' own dtype
        self._lr = torch.cat([torch.full_like(p, lr_of.get(id(p), 0.0)).reshape(-1) for p in self.layout.params])
        self._refresh_step()

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None):
        task_loss = cross_entropy(model(x), y, mask)
        if not self.in_loss:
            return task_loss
        return task_loss + self.penalty(model)

    def after_step(self, model: nn.Module, task: Task) -> None:
        if self._pull is not None:  # the proximal step: θ ← θ + k ⊙ (θ* − θ) = (θ' + aθ*) / (1 + a)
            with torch.no_grad():
                torch._foreach_lerp_(self.layout.params, self._target, self._pull)

    def penalty(self, model: nn.Module | None = None) -> torch.Tensor:
        """λ Σ_i Ω_i (θ_i − θ*_i)² at the current parameters (zero before the first task ends)."""
        if self._omega is None:
            return torch.zeros((), device=self._const.device)
        return _Penalty.apply(self, *self.layout.params)

    def task_gradient(self) -> torch.Tensor:
        """The gradient of the task loss alone, as a flat vector: the total gradient minus the penalty's,
        so that path integrals (SI, RWalk) do not credit the penalty with the drop in the task loss."""
        g = self.layout.flat_grad()
        if self.in_loss and self._penalty_grad is not None:  # the proximal step adds none
            g -= self._penalty_grad
        return g

    def after_task(self, task: Task, model: nn.Module) -> None:
        with torch.no_grad():
            b = self.task_importance(task, model).detach().to(self._const.device)
            if b.shape != (self.layout.size,):
                raise RuntimeError(f"{self.name}: importance of shape {tuple(b.shape)}, expected ({self.layout.size},)")
            self._consolidate(b, self.layout.flat())
        self.tasks_done += 1
        self._refresh_step()
        if self.tasks_done < len(self.stream):
            self._check_stability()

    def _refresh_step(self) -> None:
        """The proximal step's per-parameter views of k = a / (1 + a), a = 2 · lr · λ · Ω, and of θ*:
        recomputed when Ω or the optimizer changes (once per task), never per batch."""
        self._pull = self._target = None
        if self._proximal and self.penalised and self._lr is not None:
            a = (2.0 * self.lam * self._lr * self._omega).clamp_(max=1e30)  # k = 1, not inf / inf
            self._pull = self.layout.views(a / (1.0 + a))
            self._target = self.layout.views(self._anchor)

    def _check_stability(self) -> None:
        """Warn once when the explicit step with SGD will diverge on the penalty alone."""
        limit = None if self._optimizer is None else explicit_limit(self._optimizer)
        if self._warned or self._proximal or limit is None or not self.penalised:
            return
        value = (2.0 * self.lam * self._lr * self._omega).max().item()
        if value >= limit:
            self._warned = True
            fix = f"lower {option('lam')} or {option('lr')}"
            if plain_sgd(self._optimizer):
                fix = f"set {option('step')} to proximal (or auto), or {fix}"
            warn(
                f"{self.name}: lr · 2 · lam · max Ω = {value:.3g} after task {self.tasks_done} is past the "
                f"explicit step's stable range (< {limit:.3g}), so training will likely diverge; {fix}"
            )

    def _consolidate(self, b: torch.Tensor, theta: torch.Tensor) -> None:
        old = self._omega
        if old is None or self.accumulate == "latest":
            omega = b.clone()
        elif self.accumulate == "sum":
            omega = old + b
        else:
            omega = self.decay() * old + b
        if self.anchor == "per-task" and old is not None:
            # Σ_t b_t (θ − θ*_t)² = A (θ − μ)² + c: add b (θ − θ_new)² to A (θ − μ)² + c.
            A = omega
            safe = torch.where(A > 0, A, torch.ones_like(A))
            mu = torch.where(A > 0, (old * self._anchor + b * theta) / safe, theta)
            gap = torch.where(A > 0, old * b / safe * (self._anchor - theta).square(), torch.zeros_like(A))
            self._anchor, self._const = mu, self._const + gap.double().sum().to(gap.dtype)
        else:
            self._anchor, self._const = theta.clone(), torch.zeros_like(self._const)
        self._omega = self.clean(omega)

    def clean(self, omega: torch.Tensor) -> torch.Tensor:
        """A last word on the accumulated Ω (SI clamps it at zero, as its authors' code does)."""
        return omega

    # ---- helpers for subclasses and users ---------------------------------------------------------

    def importance(self) -> dict[str, torch.Tensor]:
        """The accumulated Ω by parameter name, shaped like the parameters (zeros before any task)."""
        omega = self._omega if self._omega is not None else torch.zeros(self.layout.size, device=self._const.device)
        return {n: v.clone() for n, v in self.layout.unflatten(omega).items()}

    def anchors(self) -> dict[str, torch.Tensor]:
        """The anchor θ* by parameter name (for per-task anchors: their Ω-weighted mean μ)."""
        anchor = self._anchor if self._anchor is not None else self.layout.flat()
        return {n: v.clone() for n, v in self.layout.unflatten(anchor).items()}

    def task_mask(self, task: Task) -> torch.Tensor | None:
        """The logit mask row ``task`` was trained with (None in domain-IL), on the data's device."""
        masks = self.stream.train_masks([task.id])
        return None if masks is None else masks[task.id].to(task.train_x.device)

    def generator(self, task: Task, device: torch.device | str) -> torch.Generator:
        """A generator for ``task``'s random draws, seeded from the run's seed and the task."""
        return torch.Generator(device=device).manual_seed((self._seed + 7919 * (task.id + 1)) % 2**63)

    @staticmethod
    def as_count(samples: int | None) -> int | None:
        return samples or None
