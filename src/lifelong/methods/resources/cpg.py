"""CPG: Compacting, Picking and Growing (Hung, Tu, Wu, Chen, Chan & Chen 2019, "Compacting, Picking and
Growing for Unforgetting Continual Learning", NeurIPS, arXiv 1910.06562; the authors' code: ivclab/CPG).

Every weight of the network has an owner: free, or the one task that trained it and keeps it frozen. Task
k learns in three moves (the paper's Algorithm 1):

- **Pick.** Task k trains the free weights together with a real-valued *picking mask* over the weights of
  tasks 1..k−1. The mask starts at 0.01 (the authors' value), is binarised in the forward pass (1 above the
  threshold 5·10⁻³, else 0) and learns through the straight-through estimator, with its own Adam (the
  authors' 5·10⁻⁴). It only chooses which old weights task k uses: an old weight is never changed.
- **Grow.** If task k misses its accuracy goal on a validation split, the free weights and the mask are
  reset, every hidden layer gets ``grow_units`` more units and the task is trained again with the same
  budget, until the goal is met or the network has grown ``max_growths`` times in all (the authors'
  width cap). New units are task k's: earlier tasks never see them.
- **Compact.** The task's weights are pruned by magnitude, layer by layer, in stages of ``sparsity_step``
  up to ``max_sparsity`` (the authors' 0.1 steps to 0.95), each stage ``prune_epochs`` long with a lower
  learning rate: over its first fifth the sparsity follows the cubic schedule of Zhu & Gupta (2017, arXiv
  1710.01878), s_t = s_f + (s_i − s_f)(1 − t/n)³, updated every 10 steps (the authors' 4 of 20 epochs,
  every 10 steps), and the rest fine-tunes. CPG keeps the highest sparsity whose validation accuracy still
  meets the goal; the pruned weights are zeroed and released for later tasks, the rest is frozen. If the
  goal was missed at the cap, the task is pruned until it holds at most 1/(tasks left + 1) of its weights
  (the authors' rule), so that later tasks still find room.

At test time task k uses its own weights, the old weights its binary mask picked, and its own biases (the
authors keep biases per task): all frozen, so every earlier task's outputs are bit-identical after later
tasks and BWT is exactly 0. A task not learned yet is answered by the network as it stands (every weight,
the live biases): what it would start from, since the initial mask picks every old weight.

Choices where the paper and code are silent, and deviations:

- The MLP (lifelong.models.MLP), not a CNN; the output layer is one head whose units belong to tasks
  (task-IL only): a task owns its output rows outright, they are not pruned or picked (the authors' per-task
  classifiers).
- The goal (unset ``goal``): the validation accuracy of a fresh model of the original size (the same
  initial weights) trained on the task alone with the same optimizer and number of steps, times
  ``goal_fraction`` (the authors train such individual models first and allow no loss). A number for
  ``goal`` sets an absolute validation accuracy instead.
- The validation split (``holdout``) is held out from the task's training data. fit() drives the
  picking phase (its optimizer, steps and hooks), but the batches come from the remaining training split:
  loss() ignores fit()'s batch and draws one of the same size, so the validation data is never trained on.
- Growth retraining repeats fit()'s number of steps with an optimizer of the same kind and settings;
  compacting uses that optimizer kind with ``prune_lr`` (unset: a tenth of the task's, the authors' 10⁻³
  after 10⁻²); the picking mask is frozen while compacting (the authors' mask lr 0).
- Pruned weights are zeroed at once (the authors zero them at each epoch's end); stages stop at the first
  one that misses the goal instead of pruning to the end and choosing afterwards (the same choice when
  accuracy falls with sparsity); the authors' optional second round (retraining mask and weights after
  pruning) is left out.
- Freezing is exact: gradients of frozen weights are zeroed after backward and their values restored after
  each step, so weight decay, momentum and Adam cannot move them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import LifelongError, option
from lifelong.methods.base import Method, cross_entropy, param
from lifelong.methods.resources import TASK_IL_ONLY
from lifelong.models import MLP

PRUNE_EVERY = 10  # steps between two updates of the pruning mask (the authors' pruning_frequency)


def cubic_sparsity(t: float, n: float, initial: float, final: float) -> float:
    """Zhu & Gupta's schedule: the sparsity after t of n pruning steps, s_f + (s_i − s_f)(1 − t/n)³."""
    p = min(max(t / n, 0.0), 1.0)
    return final + (initial - final) * (1.0 - p) ** 3


class Binarize(torch.autograd.Function):
    """1 where the real-valued mask is above the threshold, else 0; the gradient passes straight through."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, threshold: float) -> torch.Tensor:
        return (scores > threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def picked_weight(weight, own, old, scores, threshold: float) -> torch.Tensor:
    """The weight a task trains with: its own entries, and the old entries its binarised mask picks."""
    keep = own.to(weight.dtype)
    if scores is not None:
        keep = keep + old.to(weight.dtype) * Binarize.apply(scores, threshold)
    return weight * keep


def run(x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The MLP's forward pass with the given (weight, bias) per layer: ReLU after all but the last."""
    h = x.flatten(1)
    for w, b in layers[:-1]:
        h = F.relu(F.linear(h, w, b))
    return F.linear(h, *layers[-1])


@dataclasses.dataclass
class CPG(Method):
    """CPG: compact by gradual pruning, pick old weights with learned masks, grow when the goal is missed."""

    name: ClassVar[str] = "cpg"
    scenarios: ClassVar[tuple[str, ...]] = ("task",)
    scenarios_why: ClassVar[str] = TASK_IL_ONLY
    # The current task's working state, rebuilt every task: not capacity kept from one task to the next.
    scratch: ClassVar[tuple[str, ...]] = (
        "_start",
        "_frozen",
        "_old",
        "_scores",
        "_val",
        "_fit_idx",
        "_units",
        "_batches",
    )

    # Bounds that are exclusive or allow "unset" are checked in __post_init__.
    goal: float | None = param(None, "validation accuracy in (0, 1] each task must reach; unset: a model's alone")
    goal_fraction: float = param(1.0, "> 0: the unset goal is this times a fresh model's validation accuracy")
    holdout: float = param(0.1, "part of each task's training data held out to check the goal, in (0, 1)")
    grow_units: int = param(10, "units added to every hidden layer when a task misses its goal", min=1)
    max_growths: int = param(3, "the cap: growths in the whole run (0: never grow)", min=0)
    mask_init: float = param(1e-2, "initial value of the real-valued picking mask (the authors' 0.01)")
    mask_threshold: float = param(5e-3, "the mask picks an old weight where it is above this (the authors')")
    mask_lr: float = param(5e-4, "> 0: Adam's learning rate for the picking mask (the authors' 5e-4)")
    sparsity_step: float = param(0.1, "sparsity added by each compacting stage, in (0, 1)")
    max_sparsity: float = param(0.95, "the highest sparsity tried, in [0, 1) (0: no compacting)")
    prune_epochs: int = param(1, "epochs of each compacting stage (0: no compacting)", min=0)
    prune_lr: float | None = param(None, "> 0: learning rate while compacting; unset: a tenth of the task's")

    def __post_init__(self):
        super().__post_init__()
        checks = [
            ("goal", self.goal is None or 0 < self.goal <= 1, "in (0, 1], or unset"),
            ("goal_fraction", 0 < self.goal_fraction < math.inf, "a finite number > 0"),
            ("holdout", 0 < self.holdout < 1, "in (0, 1)"),
            ("mask_init", math.isfinite(self.mask_init), "a finite number"),
            ("mask_threshold", math.isfinite(self.mask_threshold), "a finite number"),
            ("mask_lr", 0 < self.mask_lr < math.inf, "a finite number > 0"),
            ("sparsity_step", 0 < self.sparsity_step < 1, "in (0, 1)"),
            ("max_sparsity", 0 <= self.max_sparsity < 1, "in [0, 1)"),
            ("prune_lr", self.prune_lr is None or 0 < self.prune_lr < math.inf, "a finite number > 0, or unset"),
        ]
        for name, ok, what in checks:
            if not ok:
                raise LifelongError(f"{self.name}: {option(name)} must be {what} (got {getattr(self, name)!r})")

    # ---- set-up ---------------------------------------------------------------------------------

    def prepare(self, model, stream):
        if not isinstance(model, MLP):
            raise LifelongError(f"cpg works on lifelong.models.MLP only (got {type(model).__name__}); use an MLP")
        self.stream, self._initial = stream, copy.deepcopy(model)  # the fresh model the goal is measured on
        self.owner = [torch.zeros_like(lin.weight, dtype=torch.int16) for lin in layers(model)]  # 0 = free
        self.learned: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}  # id -> (keep, biases)
        self.growths, self.stats, self._task, self._fit_opt = 0, [], None, None
        self._g = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, ())))  # fit() seeded the global RNG
        return model

    def before_task(self, task, model) -> None:
        n = len(task.train_y)
        n_val = round(n * self.holdout)
        if not 1 <= n_val < n:
            raise LifelongError(
                f"task {task.name} has {n} training samples: too few to hold out {option('holdout')} "
                f"{self.holdout}; use more data or another {option('holdout')}"
            )
        order = torch.randperm(n, generator=self._g)
        self._task, self._val, self._fit_idx = task, order[:n_val], order[n_val:]
        self._units = self.stream.train_masks([task.id])[task.id].to(task.train_x.device)
        self._batches, self._size, self._fit_steps = None, 32, 0
        me = task.id + 1
        with torch.no_grad():
            for o in self.owner[:-1]:
                o[o == 0] = me  # the task trains every free weight (the authors' finetuning mask)
            self.owner[-1][list(task.classes)] = me  # and owns its output units' rows
        self._begin(model)

    def _begin(self, model) -> None:
        """Snapshot the weights (frozen ones are restored to it) and start a fresh picking mask."""
        me = self._task.id + 1
        self._start = [(lin.weight.detach().clone(), lin.bias.detach().clone()) for lin in layers(model)]
        self._frozen = [o != me for o in self.owner]
        self._old = [(o > 0) & (o < me) for o in self.owner[:-1]]
        self._scores = None
        if self._task.id > 0:  # task 1 has nothing to pick from
            self._scores = [torch.full(o.shape, self.mask_init, device=o.device, requires_grad=True) for o in self._old]
            self._mask_opt = torch.optim.Adam(self._scores, lr=self.mask_lr)

    def on_optimizer(self, optimizer) -> None:
        self._fit_opt = optimizer  # growth and compacting use one of the same kind and settings

    # ---- the picking phase, driven by fit() ------------------------------------------------------

    def _weights(self, model, learn_mask: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        me, out = self._task.id + 1, []
        for i, lin in enumerate(layers(model)):
            scores = None if self._scores is None or i == len(self.owner) - 1 else self._scores[i]
            if scores is not None and not learn_mask:
                scores = scores.detach()
            old = self._old[i] if i < len(self._old) else None
            out.append((picked_weight(lin.weight, self.owner[i] == me, old, scores, self.mask_threshold), lin.bias))
        return out

    def _batch(self) -> torch.Tensor:
        if self._batches is None:  # batches of fit()'s size, over epochs of the training split
            self._batches = self._epochs()
        return next(self._batches)

    def _epochs(self):
        while True:
            yield from self._fit_idx[torch.randperm(len(self._fit_idx), generator=self._g)].split(self._size)

    def _loss(self, model, idx, mask, learn_mask: bool) -> torch.Tensor:
        x, y = self._task.train_x[idx], self._task.train_y[idx]
        return cross_entropy(run(x, self._weights(model, learn_mask)), y, mask)

    def loss(self, model, x, y, mask):
        # fit()'s batch may hold validation samples: train on a batch of the same size from the training split.
        if self._batches is None:
            self._size = len(y)
        return self._loss(model, self._batch(), mask, learn_mask=True)

    def after_backward(self, model, task) -> None:
        for lin, frozen in zip(layers(model), self._frozen, strict=True):
            if lin.weight.grad is not None:
                lin.weight.grad.masked_fill_(frozen, 0.0)

    def after_step(self, model, task) -> None:
        self._restore(model)
        if self._scores is not None:
            self._mask_opt.step()
            self._mask_opt.zero_grad(set_to_none=True)
        self._fit_steps += 1

    @torch.no_grad()
    def _restore(self, model) -> None:
        """Frozen weights back to their values: weight decay, momentum or Adam may have moved them."""
        for lin, frozen, (w0, _) in zip(layers(model), self._frozen, self._start, strict=True):
            lin.weight.copy_(torch.where(frozen, w0, lin.weight))

    # ---- growing and compacting, after fit()'s loop ----------------------------------------------

    def after_task(self, task, model) -> None:
        steps = max(self._fit_steps, 1)
        kind, settings = type(self._fit_opt), dict(self._fit_opt.defaults)
        goal = self.goal if self.goal is not None else self.goal_fraction * self._alone(kind, settings, steps)
        accuracy, grown = self._accuracy(model), 0
        while accuracy < goal and self.growths < self.max_growths:
            self._reset(model)  # the paper resets the released weights before growing
            self._grow(model)
            self.growths, grown = self.growths + 1, grown + self.grow_units
            self._train(model, steps, kind(model.parameters(), **settings), learn_mask=True)
            accuracy = self._accuracy(model)
        # Goal missed at the cap: leave later tasks their share anyway (the authors' rule).
        must = 0.0 if accuracy >= goal else 1 - 1 / (len(self.stream) - task.id)
        prune_settings = {**settings, "lr": self.prune_lr or settings["lr"] / 10}
        sparsity, accuracy = self._compact(model, goal, must, accuracy, kind, prune_settings)
        me = task.id + 1
        picks = zip(self.owner[:-1], self._old, self._picks(), strict=True)
        keep = [(o == me) | (old & (s > self.mask_threshold)) for o, old, s in picks]
        self.learned[task.id] = (keep + [self.owner[-1] == me], [lin.bias.detach().clone() for lin in layers(model)])
        self.stats.append(
            {"task": task.name, "goal": goal, "val_accuracy": accuracy, "sparsity": sparsity, "units_grown": grown}
        )
        # The batch iterator too: before_task starts a new one, and a live generator cannot be checkpointed.
        self._task, self._scores, self._batches = None, None, None

    def _picks(self) -> list[torch.Tensor]:
        if self._scores is None:
            return [torch.zeros_like(o, dtype=torch.float) for o in self._old]
        return [s.detach() for s in self._scores]

    def _alone(self, kind, settings, steps: int) -> float:
        """Validation accuracy of a fresh model of the original size trained on this task alone."""
        alone = copy.deepcopy(self._initial)
        optimizer = kind(alone.parameters(), **settings)
        for _ in range(steps):
            idx = self._batch()
            loss = cross_entropy(alone(self._task.train_x[idx]), self._task.train_y[idx], self._units)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return self._hits(alone(self._task.train_x[self._val]))

    def _hits(self, logits) -> float:
        return ((logits + self._units).argmax(1) == self._task.train_y[self._val]).float().mean().item()

    @torch.no_grad()
    def _accuracy(self, model) -> float:
        return self._hits(run(self._task.train_x[self._val], self._weights(model, learn_mask=False)))

    def _train(self, model, steps: int, optimizer, learn_mask: bool, each_step=None) -> None:
        for t in range(steps):
            loss = self._loss(model, self._batch(), self._units, learn_mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.after_backward(model, self._task)
            optimizer.step()
            self._restore(model)
            if learn_mask and self._scores is not None:
                self._mask_opt.step()
                self._mask_opt.zero_grad(set_to_none=True)
            if each_step is not None:
                each_step(t)

    @torch.no_grad()
    def _reset(self, model) -> None:
        """The task's weights and biases back to where they started (the mask restarts when it grows)."""
        for lin, (w0, b0) in zip(layers(model), self._start, strict=True):
            lin.weight.copy_(w0)
            lin.bias.copy_(b0)

    @torch.no_grad()
    def _grow(self, model) -> None:
        """Widen every hidden layer by ``grow_units``; the new weights are the current task's (fresh init,
        zero biases), so earlier tasks, which only use their own and picked weights, never see them."""
        me, g, lins = self._task.id + 1, self.grow_units, layers(model)
        for i, lin in enumerate(lins):
            rows, cols = lin.weight.shape
            more_rows, more_cols = (0 if lin is model.head else g), (g if i > 0 else 0)
            fresh = nn.Linear(cols + more_cols, rows + more_rows).to(lin.weight.device, lin.weight.dtype)
            fresh.weight[:rows, :cols] = lin.weight
            fresh.bias.zero_()[:rows] = lin.bias
            owner = torch.full_like(fresh.weight, me, dtype=torch.int16)
            owner[:rows, :cols] = self.owner[i]
            if lin is model.head:  # new columns: only this task's output rows own them
                owner[:, cols:] = torch.where(self.owner[i][:, :1] == me, me, 0)
            swap = {lin.weight: fresh.weight, lin.bias: fresh.bias}
            lin.weight, lin.bias, self.owner[i] = fresh.weight, fresh.bias, owner
            lin.in_features, lin.out_features = cols + more_cols, rows + more_rows
            if self._fit_opt is not None:  # fit() keeps its optimizer when reset_optimizer is off
                for group in self._fit_opt.param_groups:
                    group["params"] = [swap.get(p, p) for p in group["params"]]
                for p in swap:
                    self._fit_opt.state.pop(p, None)
        model.hidden = tuple(h + g for h in model.hidden)
        self._begin(model)

    def _compact(self, model, goal, must, accuracy, kind, settings) -> tuple[float, float]:
        """Gradual pruning in stages; keep the highest sparsity that meets the goal (or reaches ``must``)."""
        per_epoch = math.ceil(len(self._fit_idx) / self._size)
        steps = self.prune_epochs * per_epoch
        window = max(1, steps // 5)
        stages = [round(self.sparsity_step * i, 6) for i in range(1, math.ceil(self.max_sparsity / self.sparsity_step))]
        stages = [s for s in stages if s < self.max_sparsity] + [self.max_sparsity]
        reached, kept = 0.0, self._snapshot(model)
        for final in stages if steps > 0 and self.max_sparsity > 0 else []:
            start = reached

            def prune(t, start=start, final=final):
                if t < window and ((t + 1) % PRUNE_EVERY == 0 or t + 1 == window):
                    self._prune(model, cubic_sparsity(t + 1, window, start, final))

            self._train(model, steps, kind(model.parameters(), **settings), learn_mask=False, each_step=prune)
            now = self._accuracy(model)
            if now < goal and reached >= must:
                self._load(model, kept)  # this stage went too far: back to the last one that met the goal
                break
            reached, accuracy, kept = final, now, self._snapshot(model)
        return self._sparsity(), accuracy

    @torch.no_grad()
    def _prune(self, model, sparsity: float) -> None:
        """Release the smallest-magnitude weights of the task, per hidden layer, so that ``sparsity`` of the
        weights it trained are free (the authors rank its weights and those released so far together)."""
        me = self._task.id + 1
        for i, lin in enumerate(layers(model)[:-1]):
            mine, free = self.owner[i] == me, self.owner[i] == 0
            candidates = lin.weight[mine | free].abs()
            k = round(sparsity * candidates.numel())
            if k < 1:
                continue
            cut = mine & (lin.weight.abs() <= candidates.kthvalue(k).values)
            self.owner[i][cut] = 0
            lin.weight[cut] = 0.0
            self._start[i][0][cut] = 0.0  # a released weight stays zero until a later task takes it
            self._frozen[i] |= cut

    def _sparsity(self) -> float:
        me = self._task.id + 1
        mine = sum(int((o == me).sum()) for o in self.owner[:-1])
        free = sum(int((o == 0).sum()) for o in self.owner[:-1])
        return free / max(mine + free, 1)

    def _snapshot(self, model):
        return [
            [lin.weight.detach().clone(), lin.bias.detach().clone(), o.clone(), w0.clone(), f.clone()]
            for lin, o, (w0, _), f in zip(layers(model), self.owner, self._start, self._frozen, strict=True)
        ]

    @torch.no_grad()
    def _load(self, model, snapshot) -> None:
        for i, (lin, (w, b, o, w0, f)) in enumerate(zip(layers(model), snapshot, strict=True)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
            self.owner[i].copy_(o)
            self._start[i][0].copy_(w0)
            self._frozen[i].copy_(f)

    # ---- test time --------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, model, x, task):
        if task.id in self.learned:  # its own and picked weights, its biases, at its sizes
            keep, biases = self.learned[task.id]
            mine = zip(layers(model), keep, biases, strict=True)
            return run(x, [(lin.weight[: k.shape[0], : k.shape[1]] * k, b) for lin, k, b in mine])
        if self._task is not None and task.id == self._task.id:  # the task being learned (per-epoch curves)
            return run(x, self._weights(model, learn_mask=False))
        return model(x)

    def capacity(self, model) -> dict:
        out = super().capacity(model)
        if hasattr(self, "owner"):
            out["free_fraction"] = sum(int((o == 0).sum()) for o in self.owner) / sum(o.numel() for o in self.owner)
            stored = [*self.owner, *(t for keep, biases in self.learned.values() for t in (*keep, *biases))]
            out["stored_bytes"] = sum(t.numel() * t.element_size() for t in stored)
        return out

    def facts(self) -> dict:
        """Per task: the goal, the validation accuracy reached, the sparsity kept and the units grown."""
        keys = ("goal", "val_accuracy", "sparsity", "units_grown")
        return {k: [s[k] for s in self.stats] for k in keys} if self.stats else {}


def layers(model: MLP) -> list[nn.Linear]:
    """The MLP's linear layers in order: the hidden ones, then the output layer."""
    return [m for m in model.body if isinstance(m, nn.Linear)] + [model.head]
