"""Riemannian walk (RWalk): online Fisher (EWC++) plus a KL-normalised path-integral score.

Chaudhry, Dokania, Ajanthan & Torr 2018, "Riemannian walk for incremental learning: understanding
forgetting and intransigence", ECCV, arXiv 1801.10112.

EWC++: a running Fisher updated during training, every k = ``update_every`` steps, from the k
mini-batches of the interval since the last update (estimator ``fisher``, see methods/fisher.py):

    F ← α F_interval + (1 − α) F                        α = ``alpha``; never reset between tasks
    F_interval = the Fisher estimate on the samples of the interval's k mini-batches

Score: the path integral of SI over each interval of k steps, divided by the KL divergence the
interval's change Δθ causes (second-order: ½ F Δθ²) instead of SI's Δθ²:

    s_interval,i = max(0, Σ_steps −g_i Δθ_i(step) / (½ F_i Δθ_i(interval)² + ε))     ε = ``xi``
    s_task = Σ_intervals s_interval,       s ← s_task (first task),  s ← ½ (s + s_task) (later tasks)

    L'(θ) = L(θ) + λ Σ_i (F_i + s_i) (θ_i − θ*_i)²       θ* = the parameters after the previous task

g is the task loss's gradient (with the explicit step, the penalty's is subtracted), Δθ the change
each step makes (after the proximal pull of regularization/base.py when that step is used).

F_interval, and what it costs. The authors' code adds each step's squared mini-batch gradient to a
buffer (free: the gradient is already there) and divides it by k at the update. The per-sample
estimators here cannot reuse the training gradient, so the interval's batches are kept (k references
to tensors fit() already sliced) and their Fisher is estimated at the update in one vectorised pass
over their k · B samples, at the parameters of that moment rather than at each batch's own. One large
pass every k steps costs little more than one batch's: for the main job's 3 × 50 MLP (B = 32, k = 10)
0.78 ms per update against 0.49 ms for the last batch alone, i.e. 0.08 ms per training step against a
bare step's 0.19 ms (CPU time, one thread). With ``fisher=batched`` it is the mean of the squared
mini-batch gradients of B-sized slices of those samples, B the batch size: the authors' quantity,
evaluated at the update's parameters.

Defaults, from the authors' public code (github.com/facebookresearch/agem, model/model.py and the MNIST
scripts): α = 0.9 (FISHER_EMA_DECAY), k = 10 (FISHER_UPDATE_AFTER for the MNIST MLP), ε = 1e-3
(PARAM_XI_STEP), λ = 1 (permuted MNIST in replicate_results_iclr19.sh), and F and s each min-max scaled
to [0, 1] over all parameters before they are added (``normalize``), which makes λ independent of
their very different scales. ``fisher`` = empirical (per-sample squared gradients of the interval's
samples, with their labels) rather than the code's squared mini-batch gradient, so that F does not
shrink with the batch size.

Deviations from that code: it squares mini-batch gradients (``fisher=batched`` here), leaves out the
½ of the KL and accumulates the task scores as s ← s + ½ (s + s_task) (with the first task's scaled
by 2); here the paper's ½ F Δθ² and average ½ (s + s_task) are used.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from lifelong.methods.base import param
from lifelong.methods.fisher import ESTIMATORS, diagonal_fisher
from lifelong.methods.regularization.base import Regularizer


def minmax(v: torch.Tensor) -> torch.Tensor:
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo).clamp_min(torch.finfo(v.dtype).tiny)


@dataclasses.dataclass
class RWalk(Regularizer):
    """λ Σ (F + s)(θ − θ*)²: running Fisher plus the KL-normalised path-integral score."""

    name: ClassVar[str] = "rwalk"
    accumulate: ClassVar[str] = "latest"
    positive: ClassVar[tuple[str, ...]] = ("xi",)
    # Kept across tasks: the running Fisher and the averaged score; the rest is the current task's.
    scratch: ClassVar[tuple[str, ...]] = (
        *Regularizer.scratch,
        "_task_score",
        "_interval",
        "_previous",
        "_interval_start",
        "_grad",
        "_batches",
        "_mask",
    )

    lam: float = param(1.0, "λ: penalty strength", min=0)
    alpha: float = param(0.9, "α: EWC++ weight of the newest Fisher estimate", min=0, max=1)
    xi: float = param(1e-3, "ε: damping of the KL in the score's denominator (> 0)", min=0)
    fisher: str = param("empirical", "how each mini-batch Fisher is estimated", choices=ESTIMATORS)
    update_every: int = param(10, "k: training steps per Fisher and score update", min=1)
    normalize: bool = param(True, "min-max scale F and s to [0, 1] before adding them")

    def prepare(self, model, stream):
        model = super().prepare(model, stream)
        size, device = self.layout.size, self.layout.params[0].device
        self._fisher: torch.Tensor | None = None  # running Fisher (EWC++), kept across tasks
        self._score: torch.Tensor | None = None  # s, averaged over tasks
        self._task_score = torch.zeros(size, device=device)
        self._interval = torch.zeros(size, device=device)  # Σ −g·Δθ over the current interval
        return model

    def before_task(self, task, model) -> None:
        self._steps = 0
        self._task_score.zero_()
        self._interval.zero_()
        self._previous = self.layout.flat()
        self._interval_start = self._previous.clone()
        self._rng = self.generator(task, task.train_x.device)
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] = []  # the interval's mini-batches
        self._mask = None

    def loss(self, model, x, y, mask):
        self._batches.append((x, y))
        self._mask = mask
        return super().loss(model, x, y, mask)

    def after_backward(self, model, task) -> None:
        self._grad = self.task_gradient()  # at the parameters before the step

    def after_step(self, model, task) -> None:
        super().after_step(model, task)  # the proximal pull (if any) first: Δθ is the whole step
        theta = self.layout.flat()
        self._interval.addcmul_(self._grad, theta - self._previous, value=-1.0)
        self._previous = theta
        self._steps += 1
        if self._steps % self.update_every == 0:
            new = self._interval_fisher(model, task)
            if self._fisher is None:
                self._fisher = new
            self._close_interval(theta)  # with the running Fisher before this update, as the authors do
            self._fisher = self.alpha * new + (1.0 - self.alpha) * self._fisher

    def _interval_fisher(self, model, task) -> torch.Tensor:
        """F_interval on the samples of the mini-batches since the last update (then forgotten)."""
        xs, ys = zip(*self._batches, strict=True)
        mask = self._mask
        if mask is not None and mask.dim() != 1:
            mask = self.task_mask(task)
        x, y = torch.cat(xs), torch.cat(ys)
        fisher = diagonal_fisher(model, x, y, mask, self.fisher, None, len(ys[0]), self._rng)
        self._batches.clear()
        return self.layout.flatten(fisher)

    def _close_interval(self, theta: torch.Tensor) -> None:
        kl = 0.5 * self._fisher * (theta - self._interval_start).square() + self.xi
        self._task_score += (self._interval / kl).clamp_(min=0.0)
        self._interval.zero_()
        self._interval_start = theta

    def task_importance(self, task, model) -> torch.Tensor:
        if self._fisher is None:  # fewer than update_every steps so far: estimate on those batches
            self._fisher = self._interval_fisher(model, task)
        if self._steps % self.update_every:
            self._close_interval(self.layout.flat())  # the last, partial interval
        s = self._task_score.clone()
        self._score = s if self._score is None else 0.5 * (self._score + s)
        if self.normalize:
            return minmax(self._fisher) + minmax(self._score)
        return self._fisher + self._score
