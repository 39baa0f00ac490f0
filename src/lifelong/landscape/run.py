"""``draw``: train the three runs, lay the plane through their solutions, evaluate the grid and the lines.

One initialisation (seeded), three trainings with fit():
- fine-tuning on task 1 then task 2, recording θ every k steps of task 2: θ*_1 and θ*_2 finetune;
- the method (EWC by default) on task 1 then task 2, recording likewise: θ*_2 method. Task 1 is learned the
  same way in both runs (same initialisation, same batches; a regulariser has nothing to regularise yet),
  so both leave from the same θ*_1; a method that changes task 1's training too is drawn from its own θ*_1,
  projected, and the result says how far that lies from the finetune run's;
- joint training on both tasks at once: θ_joint, the end of the third straight line (Mirzadeh et al. 2021,
  arXiv 2010.04495).
Then the plane through θ*_1, θ*_2 finetune and θ*_2 method (plane.py), both paths projected on it, each
task's loss and accuracy on a grid over the plane (grid.py), and the three lines (linear.py). This is the
lecture's picture of why fine-tuning forgets (Mirzadeh et al. 2020, arXiv 2006.06958): task 2's gradient
walks θ out of task 1's low-loss valley; a method that guards task 1's important parameters walks along it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from lifelong import methods as methods_module
from lifelong.data import budget
from lifelong.data.task import Stream
from lifelong.errors import LifelongError, option, warn
from lifelong.landscape import grid as grid_module
from lifelong.landscape.linear import line
from lifelong.landscape.path import Recorder, auto_every
from lifelong.landscape.plane import Plane
from lifelong.landscape.result import Landscape
from lifelong.methods.base import Method
from lifelong.models.mlp import MLP
from lifelong.train import Settings, fit

# θ*_1 of the method's run and of fine-tuning's count as one point below this relative distance.
SAME_START = 1e-6


def draw(
    stream: Stream,
    method: Method | str = "ewc",
    model: nn.Module | None = None,
    hidden: Sequence[int] = (50, 50, 50),
    grid: int = 41,
    eval_samples: int | None = 1000,
    every: int | None = None,
    eval_split: str = "test",
    border: float = 0.25,
    vectorize: bool = True,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
    **options,
) -> Landscape:
    """The landscape of the stream's first two tasks: see the module docstring.

    ``method``: the method drawn against fine-tuning (a Method or a name; EWC at its default λ unless given).
    ``model``: the network to train (copied for each run; default: an MLP with ``hidden`` layers, initialised
    from ``seed``). ``grid``: points per side of the grid. ``eval_samples``: examples of each task's
    ``eval_split`` set ("test" or "train") the losses are evaluated on (None: all). ``every``: record θ every this many
    steps (default: at most 200 points per path). ``border``: the grid's border around the anchors and
    paths, as a share of their extent. ``options`` (or ``settings``) are fit()'s settings (epochs, lr, seed...).
    """
    say = progress or (lambda message: None)
    if settings is not None and options:
        raise LifelongError(f"give draw() either settings= or settings as keywords ({', '.join(options)}), not both")
    s = settings or Settings(**options)
    _check(grid, every, border)
    if s.device != "cpu":
        raise LifelongError(f"the landscape trains and evaluates on the CPU; set {option('device')} to cpu")
    method = methods_module.create(method) if isinstance(method, str) else method
    if not isinstance(method, Method):
        raise LifelongError(f"method must be a lifelong Method or a method name such as 'ewc' (got {method!r})")
    _check_method(method)
    stream = _first_two(stream)
    data = grid_module.task_data(stream, eval_samples, eval_split, s.seed)  # checks samples and split before training
    torch.manual_seed(s.seed)  # the initialisation is part of what the seed fixes (as `lifelong run`)
    init = copy.deepcopy(model) if model is not None else MLP(stream.input_size, list(hidden), stream.n_classes)
    steps = s.schedule(len(stream.tasks[1].train_y))[1]  # fit()'s steps on task 2
    every = every or auto_every(steps)
    _check_paths_fit(2 * (steps // every) * sum(p.numel() for p in init.parameters()) * 4, every)

    t0 = time.perf_counter()
    say("training task 1, then task 2 with finetune")
    finetune, ft = _train(stream, init, methods_module.create("finetune"), s, steps, every)
    say(f"training task 1, then task 2 with {method.name}")
    chosen, rec = _train(stream, init, method, s, steps, every)
    say("training both tasks at once (joint)")
    joint, joint_rec = _train(stream, init, methods_module.create("joint"), s, 0, 1)
    train_s = time.perf_counter() - t0

    theta = {"task1": ft.after(0), "finetune": ft.after(1), "method": rec.after(1), "joint": joint_rec.after(0)}
    notes = []
    start_gap = (rec.after(0) - theta["task1"]).norm().item()
    if start_gap > SAME_START * max(theta["task1"].norm().item(), 1.0):
        notes.append(
            f"{method.name} learned task 1 differently from fine-tuning: its θ after task 1 lies "
            f"{start_gap:.3g} from θ*₁ (fine-tuning's), where its path starts"
        )
    plane = Plane.through(theta["task1"], theta["finetune"], theta["method"])
    coords = {k: plane.coordinates(v).numpy() for k, v in theta.items()}
    off_plane = {k: float(plane.distance(v)) for k, v in theta.items()}
    paths = {"finetune": ft.path(), "method": rec.path()}
    projected = {k: plane.coordinates(p).numpy() for k, p in paths.items()}
    path_off = {k: float(plane.distance(p).max()) for k, p in paths.items()}

    t0 = time.perf_counter()
    say(f"evaluating {grid} × {grid} points of the plane on {len(data[0].y)} examples of each task")
    every_point = np.concatenate([np.stack([coords[k] for k in ("task1", "finetune", "method")]), *projected.values()])
    a, b = grid_module.axes(every_point, grid, border)
    grid_loss, grid_acc = grid_module.on_plane(init, plane, a, b, data, vectorize)
    grid_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    anchors = np.stack([coords[k] for k in ("task1", "finetune", "method")])
    anchor_loss, anchor_acc = grid_module.evaluate(init, plane.origin, plane.basis.float(), anchors, data, vectorize)
    loss = {k: anchor_loss[:, i] for i, k in enumerate(("task1", "finetune", "method"))}
    accuracy = {k: anchor_acc[:, i] for i, k in enumerate(("task1", "finetune", "method"))}
    loss["joint"], accuracy["joint"] = grid_module.at(init, theta["joint"], data)
    lines = {k: line(init, theta["task1"], theta[k], data, "task1", k) for k in ("finetune", "method", "joint")}
    lines_s = time.perf_counter() - t0

    landscape_settings = {
        "grid": grid,
        "eval_samples": eval_samples,
        "every": every,
        "eval_split": eval_split,
        "border": border,
    }
    return Landscape(
        benchmark=stream.name,
        scenario=stream.scenario,
        task_names=[t.name for t in stream.tasks],
        method=method.name,
        method_settings=method.settings(),
        settings={"train": dataclasses.asdict(s), "landscape": landscape_settings},
        plane=plane,
        coords=coords,
        off_plane=off_plane,
        loss=loss,
        accuracy=accuracy,
        a=a,
        b=b,
        grid_loss=grid_loss,
        grid_accuracy=grid_acc,
        paths=projected,
        path_off_plane=path_off,
        lines=lines,
        results={"finetune": finetune, "method": chosen, "joint": joint},
        timings={"train_s": train_s, "grid_s": grid_s, "lines_s": lines_s},
        chance_loss=[math.log(stream.n_classes if d.mask is None else int((d.mask == 0).sum())) for d in data],
        notes=notes,
    )


def _check(grid: int, every: int | None, border: float) -> None:
    for name, value, low in (("grid", grid, 2), ("every", every, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise LifelongError(f"{option(name)} must be a whole number >= {low} (got {value!r})")
    if isinstance(border, bool) or not isinstance(border, int | float) or not 0 <= border < math.inf:
        raise LifelongError(f"{option('border')} must be a finite number >= 0 (got {border!r})")


def _check_method(method: Method) -> None:
    """The picture is of one network's parameters: the method must train them task by task and answer
    with the network itself."""
    if method.stages(2) != [[0], [1]]:
        raise LifelongError(
            f"{method.name} does not learn the tasks one after another, so it has no θ after task 1 (joint is "
            f"drawn anyway, as the end of a straight line); choose another {option('method')}, e.g. ewc"
        )
    if type(method).overrides("predict"):
        raise LifelongError(
            f"{method.name} answers through its own predict() (stored models, exemplar means, masks or columns), "
            f"so the network's loss at its θ is not what it answers; choose another {option('method')}, e.g. ewc"
        )
    if method.name == "finetune":
        raise LifelongError(
            f"the method is drawn against fine-tuning, so it cannot be finetune; choose another {option('method')}, "
            "e.g. ewc"
        )


def _check_paths_fit(need: int, every: int) -> None:
    """Refuse, with the estimate, two recorded paths that cannot fit in the memory free now."""
    free = budget.free_bytes()
    if free is not None and need > budget.SHARE_OF_FREE * free:
        raise LifelongError(
            f"recording θ every {every} steps would need about {budget.human(need)} of memory, but "
            f"{budget.human(free)} is free; record less often (a larger {option('every')})"
        )


def _first_two(stream: Stream) -> Stream:
    if len(stream) < 2:
        raise LifelongError(f"the landscape needs two tasks (got {len(stream)}); set {option('tasks')} to 2")
    if len(stream) > 2:
        rest = len(stream) - 2
        verb = "is" if rest == 1 else "are"
        warn(f"the landscape is drawn for the stream's first two tasks; {rest} more {verb} left out")
        stream = dataclasses.replace(stream, tasks=stream.tasks[:2])
    return stream


def _train(stream: Stream, init: nn.Module, method: Method, s: Settings, steps: int, every: int):
    """fit() from a copy of ``init``, recording θ after every stage and every ``every`` steps of task 2."""
    model = copy.deepcopy(init)
    recorder = Recorder(model, stage=1, steps=steps, every=every)
    result = fit(stream, model, method, s, on_step=recorder.step, on_row=recorder.row)
    return result, recorder
