"""fit_seeds(): S seeds of one configuration trained at once, as one vectorised model.

The same loop as fit() (train.py), step for step, with a leading seed dimension on everything that
differs between seeds: each seed has its own initialisation (its model), its own stream (one per seed,
as separate runs build them, or one shared), its own batch order (a generator seeded with its seed,
drawn as fit() draws it), its own method state and its own R matrix. One step is one batched forward
and backward pass for all seeds (stacked.py), one optimizer step over the stacked parameters (torch's
SGD and Adam act on each element alone, so this is S separate steps) and the method's per-step hooks on
stacked tensors (hooks.py). Each seed's R equals the R of ``fit()`` with that seed up to the order in
which matrix kernels add (tests/test_vectorized.py).

What it saves: the part of a step that does not grow with the work (launching a few dozen operations,
autograd's bookkeeping, the optimizer's loop over tensors) is paid once for S seeds. What it cannot save
is the arithmetic: on this library's 2-core CPU, 2/3 of one seed's step of the 784-50-50-50-10 MLP at
batch 32 is matrix products, so a seed costs about 0.2 ms of a step in a stack against 0.31 ms alone
(one thread), and 10 seeds take about half the time of 10 separate runs, not the time of one
(benchmarks/vectorized_seeds.py; the README's "Many seeds in one vectorised model").
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import resource
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from lifelong.data.task import Stream
from lifelong.errors import DivergedError, LifelongError, option, warn
from lifelong.methods import capacity
from lifelong.methods.base import Method
from lifelong.result import Result
from lifelong.train import Settings, _as_method, _on_device, check_model, make_optimizer
from lifelong.vectorized import support
from lifelong.vectorized.stacked import StackedMLP


def fit_seeds(
    stream: Stream | Sequence[Stream],
    models: Sequence[nn.Module],
    method: Method | str | None | Sequence[Method],
    seeds: Sequence[int],
    settings: Settings | None = None,
    progress: Callable[[int, int, int, int], None] | None = None,
    on_row: Callable[[int, int, int, dict[str, list[list[float]]]], None] | None = None,
    **options,
) -> list[Result | DivergedError]:
    """Train one model per seed, all at once; returns one Result per seed, in the order of ``seeds``.

    ``stream``: one stream for every seed, or one per seed (as ``lifelong run`` builds each seed's).
    ``models``: one MLP per seed, initialised as that seed's separate run would be (e.g.
    ``torch.manual_seed(seed)`` then ``MLP(...)``); trained in place, as fit() trains its model.
    ``method``: a name, class or instance (each seed gets its own copy), or one instance per seed.
    ``settings`` / ``options``: as fit(); ``seed`` is each seed's own from ``seeds``.
    ``progress(stage, n_stages, epoch, n_epochs)``: as fit(). ``on_row(k, i, n_stages, rows)``: fit()'s
    on_row for the k-th seed.
    A seed whose loss diverges gets its DivergedError in place of a Result; the other seeds go on.
    """
    if settings is not None and options:
        raise LifelongError(f"give fit_seeds() settings= or settings as keywords ({', '.join(options)}), not both")
    seeds = list(seeds)
    S = len(seeds)
    if S == 0 or len(set(seeds)) != S or len(models) != S:
        raise LifelongError(
            f"fit_seeds() needs distinct seeds and one model per seed (got {S} seeds, {len(models)} models)"
        )
    base = settings or Settings(**options)
    each = [dataclasses.replace(base, seed=seed) for seed in seeds]
    shared = isinstance(stream, Stream)
    streams = [stream] * S if shared else list(stream)
    if len(streams) != S:
        raise LifelongError(f"fit_seeds() needs one stream, or one per seed (got {len(streams)} for {S} seeds)")
    methods = _methods(method, S)
    _check(streams, models, methods)
    caveat = methods[0].caveat(streams[0].scenario)
    if caveat:
        warn(caveat)
    for st, model in zip(streams, models, strict=True):
        check_model(model, st)
    # One stream for every seed is moved to the device once (S copies would cost S times its memory).
    streams = [_on_device(streams[0], base.device)] * S if shared else [_on_device(st, base.device) for st in streams]
    models = [m.to(base.device) for m in models]
    stacked = StackedMLP(models)  # rebinds each model's parameters to views of the stacked ones
    for seed, m, model, st in zip(seeds, methods, models, streams, strict=True):
        torch.manual_seed(seed)  # as fit(): a method seeds its own generators from the run's seed
        if m.prepare(model, st) is not model:
            raise LifelongError(f"{m.name}.prepare() replaced the model, which vectorised seeds cannot follow")
    hooks = support.HOOKS[type(methods[0])](stacked, methods, models)
    return _train(streams, shared, stacked, models, methods, hooks, each, progress, on_row)


def _methods(method, S: int) -> list[Method]:
    if isinstance(method, list | tuple):
        methods = [_as_method(m) for m in method]
        if len(methods) != S or len({type(m) for m in methods}) != 1 or len({id(m) for m in methods}) != S:
            raise LifelongError(f"fit_seeds() needs one method, or {S} distinct instances of one method")
        if any(m.settings() != methods[0].settings() for m in methods):
            raise LifelongError("fit_seeds(): the seeds' methods must have the same settings")
        return methods
    first = _as_method(method)
    return [first] + [copy.deepcopy(first) for _ in range(S - 1)]


def _check(streams: list[Stream], models, methods: list[Method]) -> None:
    support.check_method(methods[0])
    for model in models:
        support.check_model(model)
    if len({tuple(model.hidden) for model in models}) != 1:
        raise LifelongError("vectorised seeds need one architecture: give every seed an MLP of the same hidden sizes")
    first = streams[0]
    shape = (first.scenario, first.input_shape, first.n_classes, [(len(t.train_y), len(t.test_y)) for t in first.tasks])
    for st in streams:
        if (st.scenario, st.input_shape, st.n_classes, [(len(t.train_y), len(t.test_y)) for t in st.tasks]) != shape:
            raise LifelongError(
                f"vectorised seeds need streams of one shape (scenario, inputs, outputs, tasks and their sizes); "
                f"{st.name} differs between seeds: run without {option('vectorize')}"
            )
    for m, st in zip(methods, streams, strict=True):
        m.check(st)


def _train(streams, shared, stacked, models, methods, hooks, each, progress, on_row):
    s, S = each[0], len(each)
    first = streams[0]
    device = s.device
    primary = first.scenario
    gens = [torch.Generator().manual_seed(e.seed) for e in each]
    started = time.perf_counter()
    eval_time = 0.0
    alive = hooks.alive
    failed: list[DivergedError | None] = [None] * S

    def timed_eval(after: int):
        nonlocal eval_time
        t0 = time.perf_counter()
        out = evaluate(stacked, streams, shared, after, s.eval_batch_size)
        eval_time += time.perf_counter() - t0
        return out

    rows = [[row] for row in timed_eval(-1)]  # per seed: [R[0] as {view: [...]}, ...]
    stages = methods[0].stages(len(first))

    def rows_done():
        if on_row is not None:
            for k in range(S):
                if alive[k]:
                    on_row(k, len(rows[k]) - 1, len(stages), {v: [row[v] for row in rows[k]] for v in rows[k][0]})

    rows_done()
    curves: list[list[dict]] = [[] for _ in range(S)]
    losses: list[list[list[float]]] = [[] for _ in range(S)]
    train_s, held = [], [[] for _ in range(S)]
    parameters = [capacity.parameters(model) for model in models]
    optimizer = None
    ar = torch.arange(S, device=device).unsqueeze(1)
    for i, stage in enumerate(stages):
        t0 = time.perf_counter()
        tasks = [st.tasks[stage[-1]] for st in streams]
        x, y, offsets = _stage_data(streams, stage, shared, device)
        n = len(y) // (1 if shared else S)
        masks = _train_masks(streams, stage, device)  # (S, T, C) or None
        sample_task, mask_rows = None, None
        if masks is not None and len(stage) > 1:
            sample_task = torch.cat([torch.full_like(first.tasks[t].train_y, t) for t in stage]).to(device)
        elif masks is not None:
            mask_rows = masks[:, stage[0]].unsqueeze(1)  # (S, 1, C)

        hooks.before_task(tasks)
        if optimizer is None or s.reset_optimizer:
            optimizer = make_optimizer(stacked.params, s)
            hooks.on_optimizer(s)

        n_epochs, remaining = s.schedule(n)
        for k in range(S):
            losses[k].append([])
        for epoch in range(n_epochs):
            if s.lr_decay_every is not None:
                for group in optimizer.param_groups:
                    group["lr"] = s.lr_at(epoch)
            orders = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
            batches = orders.split(s.batch_size, dim=1)[:remaining]
            remaining -= len(batches)
            total = torch.zeros(S, device=device)
            for idx in batches:
                b = idx.shape[1]
                flat = (idx if offsets is None else idx + offsets).reshape(-1)
                xb = x.index_select(0, flat).view(S, b, *x.shape[1:])
                yb = y.index_select(0, flat).view(S, b)
                mask = mask_rows if sample_task is None else masks[ar, sample_task[idx]]
                loss = hooks.loss(xb, yb, mask)
                optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()
                if hooks.has_after_backward:
                    hooks.after_backward()
                if s.clip_grad_norm is not None:
                    _clip_per_seed(stacked.params, s.clip_grad_norm)
                optimizer.step()
                if hooks.has_after_step:
                    hooks.after_step()
                total += loss.detach()
            for k, value in enumerate(total.tolist()):
                mean_loss = value / len(batches)
                losses[k][-1].append(mean_loss)
                if alive[k] and not math.isfinite(mean_loss):  # as fit(): checked once per epoch
                    alive[k], failed[k] = False, DivergedError(i, epoch, mean_loss)
            if not any(alive):
                return failed
            if s.eval_every_epoch:
                accuracy = timed_eval(max(stage))
                for k in range(S):
                    curves[k].append({"stage": i, "epoch": epoch, "accuracy": accuracy[k][primary]})
            if progress:
                progress(i, len(stages), epoch, n_epochs)
        hooks.after_task(tasks)
        train_s.append((time.perf_counter() - t0) / S)  # each seed's share of the stage's time
        for k in range(S):
            if alive[k]:
                held[k].append(capacity.record(methods[k], models[k], tasks=max(stage) + 1, before=parameters[k]))
                parameters[k] = held[k][-1]["parameters"]
        for k, row in enumerate(timed_eval(max(stage))):
            rows[k].append(row)
        rows_done()

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    total_s = time.perf_counter() - started
    out: list[Result | DivergedError] = []
    for k in range(S):
        if failed[k] is not None:
            out.append(failed[k])
            continue
        seed_rows = rows[k] + [rows[k][-1]] * (len(first) + 1 - len(rows[k]))  # joint: one row for all
        views = {v: np.array([row[v] for row in seed_rows]) for v in seed_rows[0]}
        out.append(
            Result(
                method=methods[k].name,
                benchmark=streams[k].name,
                scenario=streams[k].scenario,
                task_names=[t.name for t in streams[k].tasks],
                R=views[primary],
                views=views,
                config={"train": dataclasses.asdict(each[k]), "method": methods[k].settings()},
                curves=curves[k],
                losses=losses[k],
                # Each seed's share of the time the S seeds took together.
                timings={
                    "train_s": list(train_s),
                    "eval_s": eval_time / S,
                    "total_s": total_s / S,
                    "vectorized_seeds": S,
                },
                peak_memory_mb=peak_mb,
                n_stages=len(stages),
                facts=json.loads(json.dumps(methods[k].facts())),
                capacity=held[k],
            )
        )
    return out


def _stage_data(streams, stage, shared: bool, device):
    """The stage's training data: one stream's (x, y, None), or every seed's one after another
    (x, y, offsets) so that one ``index_select`` with each seed's indices shifted by its offset gathers
    every seed's batch."""
    per_seed = []
    for st in streams[:1] if shared else streams:
        if len(stage) == 1:  # no copy of the task's data
            per_seed.append((st.tasks[stage[0]].train_x, st.tasks[stage[0]].train_y))
        else:
            tasks = [st.tasks[t] for t in stage]
            per_seed.append((torch.cat([t.train_x for t in tasks]), torch.cat([t.train_y for t in tasks])))
    if shared:
        return per_seed[0][0], per_seed[0][1], None
    n = len(per_seed[0][1])
    x = torch.cat([px for px, _ in per_seed])
    y = torch.cat([py for _, py in per_seed])
    return x, y, torch.arange(len(streams), device=device).unsqueeze(1) * n


def _train_masks(streams, stage, device) -> torch.Tensor | None:
    masks = [st.train_masks(stage) for st in streams]
    return None if masks[0] is None else torch.stack(masks).to(device)


def _clip_per_seed(params: list[torch.Tensor], max_norm: float) -> None:
    """torch.nn.utils.clip_grad_norm_ on each seed's gradient alone: the L2 norm over all of the seed's
    parameters, scaled to at most ``max_norm``."""
    grads = [p.grad for p in params]
    S = len(grads[0])
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(S, -1), 2, dim=1) for g in grads], dim=1)
    total = torch.linalg.vector_norm(norms, 2, dim=1)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))


@torch.no_grad()
def evaluate(stacked: StackedMLP, streams, shared: bool, after: int, batch_size: int) -> list[dict[str, list[float]]]:
    """Each seed's accuracy on every task's test set under each view (train.evaluate, for S seeds)."""
    S, first = len(streams), streams[0]
    tables = [st.eval_masks(after) for st in streams]
    out: list[dict[str, list[float]]] = [{view: [] for view in tables[0]} for _ in range(S)]
    for j, task in enumerate(first.tasks):
        if shared:
            logits = torch.cat([stacked.shared(xb) for xb in task.test_x.split(batch_size)], dim=1)
            y = task.test_y
        else:
            n = len(task.test_y)
            parts = []
            for a in range(0, n, batch_size):
                parts.append(stacked(torch.stack([st.tasks[j].test_x[a : a + batch_size] for st in streams])))
            logits = torch.cat(parts, dim=1)
            y = torch.stack([st.tasks[j].test_y for st in streams])
        for view in tables[0]:
            masked = logits
            if tables[0][view] is not None:
                masked = logits + torch.stack([t[view][j] for t in tables]).to(logits.device).unsqueeze(1)
            accuracy = (masked.argmax(-1) == y).float().mean(-1).tolist()
            for k in range(S):
                out[k][view].append(accuracy[k])
    return out
