"""Every run of a sweep, checked and identified before any of them runs.

Bad input fails here, in one line, before any training or record, as for `lifelong run`: each distinct
setting of the grid is built once as an Experiment of all its methods and seeds (which builds the data of
its first seed and checks the model, the training settings and every method against it). Its stream also
tells how many tasks there are, which ``orders: all`` or a number of random orders needs. Each run then
gets its resolved config (what the unit receives) and the hash that identifies it in the store.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from lifelong import config
from lifelong.errors import LifelongError
from lifelong.experiment import Experiment
from lifelong.results.select import value_text
from lifelong.sweep.schema import Point, Sweep
from lifelong.sweep.unit import config_hash


@dataclasses.dataclass
class Job:
    """One run of the sweep: the point it comes from, its resolved config and its identity."""

    point: Point
    cfg: dict[str, Any]
    key: str

    def args(self, store_path: str, group: str, validation: float | None) -> tuple:
        """The arguments of unit.run_point."""
        return (self.cfg, self.point.method, self.point.seed, validation, store_path, group, self.key)


def plan(sweep: Sweep) -> list[Job]:
    """The sweep's runs in order: configurations (grid, then methods), each under every order and seed."""
    specs: dict[str, list[str]] = {}  # the methods of each distinct grid setting
    for settings, spec in sweep.configurations():
        specs.setdefault(_canonical(settings), []).append(spec)
    experiments: dict[str, Experiment] = {}

    def experiment(settings: dict) -> Experiment:
        key = _canonical(settings)
        if key not in experiments:
            flags = {**settings, "method": specs[key], "seeds": sweep.seeds, "report": False}
            try:
                experiments[key] = Experiment(config.resolve(None, flags), validation_fraction=sweep.validation)
            except LifelongError as e:
                where = ", ".join(f"{k} {value_text(v)}" for k, v in settings.items() if k in sweep.grid)
                raise LifelongError(f"{sweep.source}{f' (with {where})' if where else ''}: {e}") from None
        return experiments[key]

    jobs = []
    for point in sweep.points(lambda settings: len(experiment(settings).stream(sweep.seeds[0]))):
        exp = experiment(point.settings)
        run_config = exp.config(point.seed, point.method)
        if point.order is not None:  # as Experiment.config records the order it was built with
            run_config["task_order"] = list(point.order)
        jobs.append(Job(point, config.resolve(None, point.flags()), config_hash(run_config)))
    return jobs


def _canonical(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)
