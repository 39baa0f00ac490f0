"""fit(): the one training loop.

For each stage (one task, unless the method says otherwise), for each epoch (or a fixed number of
iterations), mini-batches are index slices of in-memory tensors; every task, future ones included, is
evaluated before any training (R[0]) and after each stage (R[i]).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from lifelong import checkpoint as checkpoints
from lifelong.data.task import Stream
from lifelong.errors import DivergedError, LifelongError, option, warn
from lifelong.methods import capacity
from lifelong.methods.base import Method
from lifelong.methods.baselines import Finetune
from lifelong.result import Result

OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass
class Settings:
    """How to train: every field is also a CLI flag and a config-file key."""

    epochs: int = 5  # passes over each task's training data (the main job's)
    iterations: int | None = None  # mini-batches per task; when set, replaces epochs
    batch_size: int = 32
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    reset_optimizer: bool = True  # a fresh optimizer (and Adam moments) for every task
    seed: int = 0
    device: str = "cpu"
    eval_every_epoch: bool = False  # per-epoch accuracy curves (show the stability gap)
    eval_batch_size: int = 4096
    lr_decay_every: int | None = None  # epochs of a task between two multiplications of lr by lr_decay
    lr_decay: float = 0.5  # e.g. the memory network's schedule: halved every 25 epochs
    lr_decay_start: int = 0  # epochs of a task at lr before the schedule counts (the memory network's linear start)
    clip_grad_norm: float | None = None  # the gradient's largest L2 norm (the memory network's 40)

    def __post_init__(self):
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size}
        for name in ("iterations", "lr_decay_every"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LifelongError(f"{option(name)} must be a whole number >= 1 (got {value!r})")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise LifelongError(f"{option(name)} must be a finite number (got {value!r})")
        if self.lr <= 0:
            raise LifelongError(f"{option('lr')} must be a positive number (got {self.lr})")
        start = self.lr_decay_start
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise LifelongError(f"{option('lr_decay_start')} must be a whole number >= 0 (got {start!r})")
        for name in ("momentum", "weight_decay"):
            if getattr(self, name) < 0:
                raise LifelongError(f"{option(name)} must be >= 0 (got {getattr(self, name)})")
        if isinstance(self.lr_decay, bool) or not isinstance(self.lr_decay, int | float) or not 0 < self.lr_decay <= 1:
            raise LifelongError(f"{option('lr_decay')} must be a number in (0, 1] (got {self.lr_decay!r})")
        clip = self.clip_grad_norm
        number = not isinstance(clip, bool) and isinstance(clip, int | float)
        if clip is not None and not (number and 0 < clip < math.inf):
            raise LifelongError(f"{option('clip_grad_norm')} must be a finite number > 0, or unset (got {clip!r})")
        if self.optimizer not in OPTIMIZERS:
            raise LifelongError(
                f"unknown {option('optimizer')} {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"
            )
        if self.device != "cpu" and not (str(self.device).startswith("cuda") and torch.cuda.is_available()):
            raise LifelongError(f"device {self.device!r} is not available here; use {option('device')} cpu")

    def schedule(self, n: int) -> tuple[int, int]:
        """(epochs, optimizer steps) of a training stage of ``n`` samples: ``iterations`` steps over as many
        epochs as they need when set (the last one cut short), else ``epochs`` full passes."""
        per_epoch = math.ceil(n / self.batch_size)
        if self.iterations is None:
            return self.epochs, self.epochs * per_epoch
        return math.ceil(self.iterations / per_epoch), self.iterations

    def lr_at(self, epoch: int) -> float:
        """The lr of a stage's epoch ``epoch`` under the step schedule (``lr_decay_every``; lr when unset)."""
        if self.lr_decay_every is None:
            return self.lr
        return self.lr * self.lr_decay ** (max(epoch - self.lr_decay_start, 0) // self.lr_decay_every)


def make_optimizer(params, s: Settings) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


@torch.no_grad()
def evaluate(method: Method, model: nn.Module, stream: Stream, after: int, batch_size: int = 4096):
    """Accuracy on every task's test set under each view, after training up to task ``after``."""
    was_training = model.training
    model.eval()
    masks = {v: (m if m is None else m.to(stream.tasks[0].test_x.device)) for v, m in stream.eval_masks(after).items()}
    out: dict[str, list[float]] = {view: [] for view in masks}
    for task in stream.tasks:
        logits = torch.cat([method.predict(model, xb, task) for xb in task.test_x.split(batch_size)])
        for view, table in masks.items():
            masked = logits if table is None else logits + table[task.id]
            out[view].append((masked.argmax(1) == task.test_y).float().mean().item())
    model.train(was_training)
    return out


def _on_device(stream: Stream, device: str) -> Stream:
    if device == "cpu" and all(t.train_x.device.type == "cpu" for t in stream.tasks):
        return stream
    tasks = [
        dataclasses.replace(t, **{k: getattr(t, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")})
        for t in stream.tasks
    ]
    return dataclasses.replace(stream, tasks=tasks)


def _as_method(method: Method | str | None) -> Method:
    """A Method from an instance, a Method class, a registered name such as "ewc", or None (finetune)."""
    from lifelong import methods

    if method is None:
        return Finetune()
    if isinstance(method, str):
        return methods.create(method)
    if isinstance(method, type) and issubclass(method, Method):
        return method()
    if not isinstance(method, Method):
        raise LifelongError(
            f"method must be a lifelong Method or a method name such as 'ewc' (got {type(method).__name__}); "
            "e.g. lifelong.methods.create('ewc', lam=10)"
        )
    return method


def check_model(model: nn.Module, stream: Stream) -> None:
    """One forward pass on one training input: the model must take the stream's inputs and give one logit
    per output unit of the stream. Says both sizes when they differ, before any training."""
    if not isinstance(model, nn.Module):
        raise LifelongError(f"model must be a torch.nn.Module (got {type(model).__name__})")
    x = stream.tasks[0].train_x[:1]
    shape = "x".join(map(str, stream.input_shape))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x.to(next(model.parameters(), x).device))
    except RuntimeError as e:
        first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
        expects = f"; its first layer expects {first.in_features} features" if first is not None else ""
        raise LifelongError(
            f"the model does not accept {stream.name}'s inputs ({shape} = {stream.input_size} features per "
            f"sample){expects}; build it for the stream, e.g. MLP(stream.input_size, hidden, stream.n_classes)"
        ) from e
    finally:
        model.train(was_training)
    if out.dim() != 2 or out.shape[1] != stream.n_classes:
        got = out.shape[1] if out.dim() == 2 else tuple(out.shape)
        raise LifelongError(
            f"the model gives {got} outputs per sample but {stream.name} ({stream.scenario}-IL) needs "
            f"{stream.n_classes}, one per output unit; build it with stream.n_classes outputs"
        )


def _save_checkpoint(folder, state, method, settings, stream, given, started: float) -> None:
    """Save a checkpoint after a stage. One that cannot be saved (state a checkpoint cannot hold, a full
    disk) is said, once per reason, and training goes on: the previous checkpoint stays valid, and losing
    the ability to resume is no reason to lose the run."""
    state.elapsed_s = time.perf_counter() - started
    try:
        checkpoints.save(folder, state, method, settings, stream, given)
    except (LifelongError, OSError) as e:
        warn(f"could not save a checkpoint ({e}); if stopped, this run resumes from an earlier one or the start")


def fit(
    stream: Stream,
    model: nn.Module,
    method: Method | str | None = None,
    settings: Settings | None = None,
    progress: Callable[[int, int, int, int], None] | None = None,
    on_row: Callable[[int, int, dict[str, list[list[float]]]], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    on_step: Callable[[int, nn.Module], None] | None = None,
    **options,
) -> Result:
    """Train ``model`` on ``stream`` with ``method``; returns the Result with its R matrix.

    ``options`` are Settings fields (epochs=5, lr=0.1, ...) when ``settings`` is not given.
    ``progress(stage, n_stages, epoch, n_epochs)`` is called after each epoch.
    ``on_row(i, n_stages, rows)`` is called once R[0] is measured (i = 0) and after each stage's evaluation
    (i = stages done), with the rows of R so far under each view ({view: [R[0], ..., R[i]]}): a caller
    can record them, so that a run stopped part-way keeps what it had finished.
    ``on_step(stage, model)`` is called after every optimizer step (and the method's after_step), e.g. to
    record the parameters' path (lifelong.landscape); unset, the loop pays one ``is None`` test per step.
    ``checkpoint``: a folder where a checkpoint of everything needed to go on is saved after each stage
    (lifelong.checkpoint; it must not hold one already). ``resume=True``: go on from the checkpoint in that
    folder, if there is one, with the same stream, settings and a freshly built model and method, which are
    then restored from it; the result is bit for bit that of a run never stopped.
    """
    if settings is not None and options:
        raise LifelongError(f"give fit() either settings= or settings as keywords ({', '.join(options)}), not both")
    s = settings or Settings(**options)
    method = _as_method(method)
    method.check(stream)
    caveat = method.caveat(stream.scenario)
    if caveat:  # it runs, but the user hears first why it will not work here
        warn(caveat)
    check_model(model, stream)
    if resume and checkpoint is None:
        raise LifelongError("resume=True needs checkpoint=, the folder of the checkpoint to go on from")
    torch.manual_seed(s.seed)  # methods that sample (e.g. a sampled Fisher) draw from the global RNG
    batches_g = torch.Generator().manual_seed(s.seed)
    stream = _on_device(stream, s.device)
    given = model.to(s.device)
    if checkpoint is not None and not resume and checkpoints.has_checkpoint(checkpoint):
        raise LifelongError(
            f"{checkpoint} holds a checkpoint already; resume it with resume=True, or give an empty folder"
        )
    # Everything from prepare() to the last finished stage, and every random state, as they were.
    saved = checkpoints.load(checkpoint, method, s, stream, given) if resume else None
    if saved is None:
        model = method.prepare(given, stream)
        model.train()
    else:
        model, batches_g = saved.model, saved.batches
    call_after_backward, call_after_step = (type(method).overrides(h) for h in ("after_backward", "after_step"))
    primary = {"domain": "domain", "task": "task", "class": "class"}[stream.scenario]

    started = time.perf_counter() - (saved.elapsed_s if saved else 0.0)
    eval_time = saved.eval_s if saved else 0.0

    def timed_eval(after: int):
        nonlocal eval_time
        t0 = time.perf_counter()
        out = evaluate(method, model, stream, after, s.eval_batch_size)
        eval_time += time.perf_counter() - t0
        return out

    rows = saved.rows if saved else [timed_eval(-1)]
    stages = method.stages(len(stream))

    def row_done():
        if on_row is not None:
            on_row(len(rows) - 1, len(stages), {v: [row[v] for row in rows] for v in rows[0]})

    row_done()
    curves, losses, train_s, held = [], [], [], []
    parameters = capacity.parameters(model)  # before any task: what the first task adds is counted from here
    optimizer = None
    if saved:
        curves, losses, train_s, held = saved.curves, saved.losses, saved.train_s, saved.held
        parameters, optimizer = saved.parameters, saved.optimizer
    checkpoint_s = 0.0
    for i, stage in enumerate(stages):
        if saved and i < saved.stages_done:
            continue
        t0 = time.perf_counter()
        task = stream.tasks[stage[-1]]
        if len(stage) == 1:  # no copy of the task's data
            x, y = task.train_x, task.train_y
        else:
            x = torch.cat([stream.tasks[t].train_x for t in stage])
            y = torch.cat([stream.tasks[t].train_y for t in stage])
        masks = stream.train_masks(stage)
        if masks is not None:
            masks = masks.to(s.device)
        # One task per stage (or no mask): one constant mask row; several tasks: each sample's own row.
        sample_task, mask_row = None, None
        if masks is not None and len(stage) > 1:
            sample_task = torch.cat([torch.full_like(stream.tasks[t].train_y, t) for t in stage])
        elif masks is not None:
            mask_row = masks[stage[0]]

        method.before_task(task, model)
        if optimizer is None or s.reset_optimizer:
            optimizer = make_optimizer(model.parameters(), s)
            method.on_optimizer(optimizer)  # once per task at most: e.g. the regularisers' proximal step

        n = len(y)
        n_epochs, remaining = s.schedule(n)
        losses.append([])
        for epoch in range(n_epochs):
            if s.lr_decay_every is not None:  # each task starts from lr: its schedule counts its own epochs
                for group in optimizer.param_groups:
                    group["lr"] = s.lr_at(epoch)
            if hasattr(model, "start_epoch"):  # a model with a schedule of its own (the memory network's)
                model.start_epoch(epoch)
            order = torch.randperm(n, generator=batches_g).to(s.device)
            batches = order.split(s.batch_size)[:remaining]
            remaining -= len(batches)
            total = torch.zeros((), device=s.device)
            for idx in batches:
                mask = mask_row if sample_task is None else masks[sample_task[idx]]
                loss = method.loss(model, x[idx], y[idx], mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if call_after_backward:
                    method.after_backward(model, task)
                if s.clip_grad_norm is not None:  # the step the method chose, bounded
                    nn.utils.clip_grad_norm_(model.parameters(), s.clip_grad_norm)
                optimizer.step()
                if call_after_step:
                    method.after_step(model, task)
                if on_step is not None:
                    on_step(i, model)
                total += loss.detach()
            mean_loss = total.item() / len(batches)
            if not math.isfinite(mean_loss):  # checked once per epoch: no per-step sync in the hot path
                raise DivergedError(i, epoch, mean_loss)
            losses[-1].append(mean_loss)
            if s.eval_every_epoch:
                curves.append({"stage": i, "epoch": epoch, "accuracy": timed_eval(max(stage))[primary]})
            if progress:
                progress(i, len(stages), epoch, n_epochs)
        method.after_task(task, model)
        train_s.append(time.perf_counter() - t0)
        held.append(capacity.record(method, model, tasks=max(stage) + 1, before=parameters))  # outside train_s
        parameters = held[-1]["parameters"]
        rows.append(timed_eval(max(stage)))
        if checkpoint is not None:  # before row_done(): a recorded row always has its checkpoint
            t0 = time.perf_counter()
            state = checkpoints.FitState(
                i + 1, model, optimizer, batches_g, rows, curves, losses, train_s, held, parameters, eval_time, 0.0
            )
            _save_checkpoint(checkpoint, state, method, s, stream, given, started)
            checkpoint_s += time.perf_counter() - t0
        row_done()

    # A method with fewer stages than tasks (joint) has one evaluation for all of them.
    rows += [rows[-1]] * (len(stream) + 1 - len(rows))
    views = {v: np.array([row[v] for row in rows]) for v in rows[0]}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if s.device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    return Result(
        method=method.name,
        benchmark=stream.name,
        scenario=stream.scenario,
        task_names=[t.name for t in stream.tasks],
        R=views[primary],
        views=views,
        config={"train": dataclasses.asdict(s), "method": method.settings()},
        curves=curves,
        losses=losses,
        timings={"train_s": train_s, "eval_s": eval_time, "total_s": time.perf_counter() - started}
        | ({"checkpoint_s": checkpoint_s} if checkpoint is not None else {}),
        peak_memory_mb=peak_mb,
        n_stages=len(stages),
        facts=json.loads(json.dumps(method.facts())),  # as the store keeps them: int keys read back as strings
        capacity=held,
    )
