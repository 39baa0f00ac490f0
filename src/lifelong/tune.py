"""Choosing a hyper-parameter honestly: sweep it over a list of values, score each on a validation
split carved from the training data (data/validation.py), never on the test set, and pick the value
with the best validation ACC. The whole curve (ACC and BWT against the value) is kept for the report."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from lifelong import config
from lifelong.errors import DivergedError, LifelongError, option
from lifelong.experiment import Experiment


def sweep(
    cfg: dict,
    param: str,
    values: list,
    fraction: float = 0.1,
    store=None,
    group: str | None = None,
    progress: Callable | None = None,
) -> list[dict]:
    """One point per value: mean and sd over seeds of validation ACC and BWT, and the run ids."""
    if len(cfg["method"]) != 1:
        raise LifelongError(f"tune sweeps one method at a time; give a single {option('method')}")
    if not values:
        raise LifelongError(f"{option('values')} needs at least one value to try")
    setting = {o.name: o for o in config.options()}.get(param)
    if setting is None or setting.group not in ("train", "method"):
        raise LifelongError(
            f"{option('param')} {param}: not a training setting or method hyper-parameter; see `lifelong list`"
        )
    values = [config.convert(setting, v, option("values")) for v in values]
    experiments = [Experiment({**cfg, param: v}, validation_fraction=fraction) for v in values]  # checks all first
    chance = chance_level(experiments[0].stream(experiments[0].seeds[0]))
    points = []
    for value, exp in zip(values, experiments, strict=True):
        accs, bwts, ids = [], [], []
        for seed, name in exp.runs:
            try:
                run_id, result = exp.execute(seed, name, store, group, progress)
            except DivergedError:  # a value too large for this lr: part of the curve, not the end of the sweep
                accs.append(float("nan"))
                bwts.append(float("nan"))
                continue
            accs.append(result.acc)
            bwts.append(result.bwt)
            ids.append(run_id)
        sd = (lambda v: float(np.std(v, ddof=1))) if len(accs) > 1 else (lambda v: float("nan"))
        points.append(
            {
                "value": value,
                "acc": float(np.mean(accs)),
                "acc_sd": sd(accs),
                "bwt": float(np.mean(bwts)),
                "bwt_sd": sd(bwts),
                "run_ids": ids,
                "chance": chance,
            }
        )
    return points


def chance_level(stream) -> float:
    """The ACC of guessing: one over the units a test sample chooses among at the end of the stream
    (a task's own units in task- and domain-IL, every unit in class-IL)."""
    units = stream.n_classes if stream.scenario == "class" else len(stream.tasks[0].classes)
    return 1.0 / units


def best(points: list[dict]) -> dict:
    """The point with the highest validation ACC (the first of equals: the sweep's order breaks ties).
    A value whose runs diverged (ACC nan) is never chosen."""
    finite = [p for p in points if math.isfinite(p["acc"])]
    if not finite:
        raise LifelongError(f"every value of the sweep diverged; try smaller values or a lower {option('lr')}")
    return max(finite, key=lambda p: p["acc"])
