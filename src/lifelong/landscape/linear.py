"""Each task's loss and accuracy along the straight line between two solutions.

θ(t) = (1 − t) θ_a + t θ_b, for t from 0 (θ_a) to 1 (θ_b) and a little beyond on both sides. Mirzadeh et
al. 2021 ("Linear mode connectivity in multitask and continual learning", arXiv 2010.04495) compare the
line from θ*_1 to the sequential solution θ*_2 with the line from θ*_1 to the multitask (joint) solution:
along the first, task 1's loss climbs; along the second it stays low (the two are linearly connected).
The barrier of a line (Frankle et al. 2020, "Linear mode connectivity and the lottery ticket hypothesis",
arXiv 1912.05671) is the most its loss rises above the straight interpolation of its ends' losses,

    barrier = max_{0 ≤ t ≤ 1} L(θ(t)) − ((1 − t) L(θ_a) + t L(θ_b)),

0 for a convex (or flat) profile. The climb, max_{0 ≤ t ≤ 1} L(θ(t)) − L(θ_a), is how far task 1's loss
rises on the way from θ*_1, endpoint included: what a method that keeps task 1 keeps small.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from lifelong.landscape.grid import TaskData, evaluate


@dataclasses.dataclass
class Line:
    """The line from ``start`` to ``end`` (names of the two points): t (n,), loss and accuracy (tasks, n)."""

    start: str
    end: str
    t: np.ndarray
    loss: np.ndarray
    acc: np.ndarray

    def _inside(self) -> np.ndarray:
        return (self.t >= 0) & (self.t <= 1)

    def at(self, t: float, task: int) -> float:
        """The loss of ``task`` at one of the line's t values (0 and 1 are always among them)."""
        return float(self.loss[task][np.flatnonzero(np.isclose(self.t, t))[0]])

    def barrier(self, task: int) -> float:
        inside = self._inside()
        t, loss = self.t[inside], self.loss[task][inside]
        return float(np.max(loss - ((1 - t) * self.at(0, task) + t * self.at(1, task))))

    def climb(self, task: int) -> float:
        return float(np.max(self.loss[task][self._inside()]) - self.at(0, task))

    def to_dict(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "t": self.t.tolist(),
            "loss": self.loss.tolist(),
            "accuracy": self.acc.tolist(),
            "barrier": [self.barrier(j) for j in range(len(self.loss))],
            "climb": [self.climb(j) for j in range(len(self.loss))],
        }


def t_values(steps: int = 20, beyond: float = 0.2) -> np.ndarray:
    """k / steps for every whole k from −beyond·steps to (1 + beyond)·steps: 0 and 1 are exact values."""
    extra = int(round(beyond * steps))
    return np.arange(-extra, steps + extra + 1) / steps


def line(
    model: nn.Module,
    theta_a: torch.Tensor,
    theta_b: torch.Tensor,
    data: list[TaskData],
    start: str = "a",
    end: str = "b",
    steps: int = 20,
    beyond: float = 0.2,
) -> Line:
    """Every task's loss and accuracy at θ(t) = (1 − t) θ_a + t θ_b (vectorised like the grid)."""
    t = t_values(steps, beyond)
    direction = (theta_b.detach().double() - theta_a.detach().double()).float()[None]
    loss, acc = evaluate(model, theta_a, direction, t[:, None], data)
    return Line(start, end, t, loss, acc)
