"""What ``lifelong.landscape.draw`` returns: the plane, the grid's losses, the paths and the numbers.

Three named points anchor everything: ``task1`` (θ*_1, after task 1), ``finetune`` (θ*_2 after task 2
with fine-tuning) and ``method`` (θ*_2 after task 2 with the chosen method); ``joint`` (both tasks at once)
is the end of the third straight line, and usually lies off the plane.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from lifelong.landscape.linear import Line
from lifelong.landscape.plane import Plane
from lifelong.result import Result

POINTS = ("task1", "finetune", "method", "joint")


@dataclasses.dataclass
class Landscape:
    benchmark: str
    scenario: str
    task_names: list[str]  # the two tasks drawn
    method: str  # the chosen method's name, e.g. "ewc"
    method_settings: dict[str, Any]  # its hyper-parameters (λ...)
    settings: dict[str, Any]  # training settings (fit's) and the landscape's own (grid, samples, every...)
    plane: Plane
    coords: dict[str, np.ndarray]  # (a, b) of task1, finetune, method on the plane; joint's projection
    off_plane: dict[str, float]  # each point's distance from the plane (0 for the three anchors)
    loss: dict[str, np.ndarray]  # each point's loss on every task (tasks,)
    accuracy: dict[str, np.ndarray]  # each point's accuracy on every task (tasks,)
    a: np.ndarray  # the grid's coordinates along u (n,)
    b: np.ndarray  # ... and along v (n,)
    grid_loss: np.ndarray  # (tasks, len(b), len(a))
    grid_accuracy: np.ndarray
    paths: dict[str, np.ndarray]  # task 2's training path, projected, per run ("finetune", "method"): (M, 2)
    path_off_plane: dict[str, float]  # the largest distance of a path's points from the plane
    lines: dict[str, Line]  # "finetune", "method", "joint": the straight line from θ*_1 to that point
    results: dict[str, Result]  # the three trainings' results (R matrices)
    timings: dict[str, float]  # seconds: training, grid, lines
    chance_loss: list[float]  # each task's loss of a uniform guess over its units: ln(number of units)
    notes: list[str] = dataclasses.field(default_factory=list)  # things a reader must know (one line each)

    def label(self, point: str) -> str:
        return {
            "task1": "θ*₁ (after task 1)",
            "finetune": "θ*₂ finetune",
            "method": f"θ*₂ {self.method}",
            "joint": "joint",
        }[point]

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-able numbers (landscape.json)."""
        return {
            "benchmark": self.benchmark,
            "scenario": self.scenario,
            "tasks": self.task_names,
            "method": self.method,
            "method_settings": self.method_settings,
            "settings": self.settings,
            "points": {
                p: {
                    "coordinates": self.coords[p].tolist(),
                    "off_plane": self.off_plane[p],
                    "loss": self.loss[p].tolist(),
                    "accuracy": self.accuracy[p].tolist(),
                }
                for p in POINTS
            },
            "grid": {
                "a": self.a.tolist(),
                "b": self.b.tolist(),
                "loss": self.grid_loss.tolist(),
                "accuracy": self.grid_accuracy.tolist(),
            },
            "paths": {
                k: {"coordinates": v.tolist(), "off_plane_max": self.path_off_plane[k]} for k, v in self.paths.items()
            },
            "lines": {k: line.to_dict() for k, line in self.lines.items()},
            "R": {k: np.asarray(r.R).tolist() for k, r in self.results.items()},
            "timings": self.timings,
            "chance_loss": self.chance_loss,
            "notes": self.notes,
        }
