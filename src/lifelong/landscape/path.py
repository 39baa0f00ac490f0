"""The path the parameters take while training: θ recorded every k optimizer steps, at little cost.

fit() calls ``on_step(stage, model)`` after every step (lifelong.train.fit); ``on_row`` after each stage's
evaluation. A Recorder counts steps and, every ``every``-th step of the stages it watches, copies the
model's parameters into one preallocated (points, D) float32 buffer with a single ``torch.cat(out=...)``:
no allocation, no Python list growing per step, nothing at all on the other steps but a counter. It also
keeps θ at the end of every stage (after the method's after_task), so that a stage's path starts and ends
exactly at the points the landscape is drawn through.

Li et al. 2018 (arXiv 1712.09913, §7) project such recorded trajectories onto a plane of parameter space.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lifelong.errors import LifelongError


def flat(model: nn.Module) -> torch.Tensor:
    """All of the model's parameters as one flat float32 vector (the order of ``model.parameters()``)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).float()


def auto_every(steps: int, points: int = 200) -> int:
    """The step interval that keeps a path of ``steps`` steps to at most ``points`` recorded points."""
    return max(1, math.ceil(steps / points))


class Recorder:
    """Records θ every ``every`` steps of stage ``stage`` (expected ``steps`` steps), and θ after each stage.

    Pass ``on_step=recorder.step, on_row=recorder.row`` to fit(). ``recorder.path()`` is then the stage's
    path: θ at the end of the previous stage, the recorded points, θ at the end of the stage.
    """

    def __init__(self, model: nn.Module, stage: int, steps: int, every: int):
        if every < 1:
            raise ValueError("every must be >= 1")
        self.model, self.stage, self.every = model, stage, every
        dim = sum(p.numel() for p in model.parameters())
        self.buffer = torch.empty(steps // every, dim)  # preallocated: one row per recorded step
        self.count = 0  # steps seen in the watched stage
        self.recorded = 0
        self.last = 0  # the step the last recorded row was taken at
        self.ends: dict[int, torch.Tensor] = {}  # stage index (-1: before training) -> θ after it

    def step(self, stage: int, model: nn.Module) -> None:
        if stage != self.stage:
            return
        if self.count == 0 and model is not self.model:  # once: the method trains another network
            raise LifelongError(
                "the method replaced the model it was given, so its parameters' path is not the model's"
            )
        self.count += 1
        if self.count % self.every == 0 and self.recorded < len(self.buffer):
            torch.cat([p.detach().reshape(-1) for p in model.parameters()], out=self.buffer[self.recorded])
            self.recorded += 1
            self.last = self.count

    def row(self, done: int, n_stages: int, rows) -> None:
        """fit()'s on_row: called before training (done = 0) and after each stage's evaluation."""
        self.ends[done - 1] = flat(self.model)

    def after(self, stage: int) -> torch.Tensor:
        """θ after stage ``stage`` (-1: before any training)."""
        return self.ends[stage]

    def path(self) -> torch.Tensor:
        """(M, D): θ when the watched stage starts, every recorded θ, θ when it ends (after_task included)."""
        start, end = self.ends[self.stage - 1], self.ends[self.stage]
        inner = self.buffer[: self.recorded]
        if self.recorded and self.last == self.count:
            inner = inner[:-1]  # the last step was recorded: the stage's end (after after_task) replaces it
        return torch.cat([start[None], inner, end[None]])
