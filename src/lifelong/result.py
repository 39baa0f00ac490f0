"""What a run produces, and its JSON form (``result.json``, schema version 1; see docs/result-schema.md)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from lifelong import metrics

SCHEMA_VERSION = 1


@dataclasses.dataclass
class Result:
    method: str
    benchmark: str
    scenario: str
    task_names: list[str]
    R: np.ndarray  # (T+1) x T accuracies in [0, 1] in the stream's own scenario
    views: dict[str, np.ndarray]  # R under each evaluation view ("task" and "class", or "domain")
    config: dict[str, Any] = dataclasses.field(default_factory=dict)  # every setting of the run
    curves: list[dict] = dataclasses.field(default_factory=list)  # per-epoch accuracies, if asked
    losses: list[list[float]] = dataclasses.field(default_factory=list)  # mean loss per stage, epoch
    timings: dict[str, Any] = dataclasses.field(default_factory=dict)  # seconds
    peak_memory_mb: float = 0.0
    status: str = "finished"
    n_stages: int | None = None  # training stages; fewer than tasks for joint training (None: one per task)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)  # what the method measured (Method.facts)
    # After each training stage: tasks, parameters, added, free_fraction, stored_bytes (methods/capacity.py).
    capacity: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def sequential(self) -> bool:
        """True when tasks were learned one after another, so BWT, FWT and forgetting mean something.
        Joint training learns all tasks in one stage: its rows repeat one evaluation."""
        return self.n_stages is None or self.n_stages == len(self.task_names)

    @property
    def acc(self) -> float:
        return metrics.acc(self.R)

    @property
    def bwt(self) -> float:
        return metrics.bwt(self.R)

    @property
    def fwt(self) -> float:
        return metrics.fwt(self.R)

    def metrics(self, reference=None) -> dict[str, float]:
        """Every metric of metrics.summary(); only ACC when the run was not sequential (joint)."""
        out = metrics.summary(self.R, reference)
        return out if self.sequential else {"acc": out["acc"]}

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "status": self.status,
            "method": self.method,
            "benchmark": self.benchmark,
            "scenario": self.scenario,
            "task_names": list(self.task_names),
            "R": np.asarray(self.R).tolist(),
            "views": {k: np.asarray(v).tolist() for k, v in self.views.items()},
            "metrics": self.metrics(),
            "definitions": {k: metrics.DEFINITIONS[k] for k in self.metrics()},
            "config": self.config,
            "curves": self.curves,
            "losses": self.losses,
            "timings": self.timings,
            "peak_memory_mb": self.peak_memory_mb,
            "n_stages": self.n_stages,
            "facts": self.facts,
            "capacity": self.capacity,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        return cls(
            method=d["method"],
            benchmark=d["benchmark"],
            scenario=d["scenario"],
            task_names=d["task_names"],
            R=np.asarray(d["R"], dtype=float),
            views={k: np.asarray(v, dtype=float) for k, v in d["views"].items()},
            config=d.get("config", {}),
            curves=d.get("curves", []),
            losses=d.get("losses", []),
            timings=d.get("timings", {}),
            peak_memory_mb=d.get("peak_memory_mb", 0.0),
            status=d.get("status", "finished"),
            n_stages=d.get("n_stages"),
            facts=d.get("facts", {}),
            capacity=d.get("capacity", []),  # absent before issue 8
        )
