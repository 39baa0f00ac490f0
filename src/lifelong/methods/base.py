"""The Method base class: the few hooks that fit() calls, each with a default that does nothing extra.

A method is a small class whose constructor arguments are its hyper-parameters (a dataclass: the CLI
and ``lifelong list`` read their names, defaults and help from it). fit() checks once per run which
hooks a method overrides and calls only those, so an unused hook costs nothing in the hot path.

Per task, fit() calls ``before_task``, then ``on_optimizer`` whenever it creates an optimizer, then per
batch ``loss`` → backward → ``after_backward`` → optimizer step → ``after_step``, then ``after_task``.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.data.task import SCENARIO_NAMES, SCENARIOS, Stream, Task
from lifelong.errors import LifelongError, option
from lifelong.methods import capacity


def param(default, help: str, **checks):
    """A hyper-parameter: its default, a one-line help, and optional bounds (min=, max=, choices=)."""
    return dataclasses.field(default=default, metadata={"help": help, **checks})


@dataclasses.dataclass
class Method:
    """Sequential training with the task loss only: the base every method builds on."""

    name: ClassVar[str] = "method"
    scenarios: ClassVar[tuple[str, ...]] = SCENARIOS  # the scenarios this method is valid in
    # Why the others are refused (one clause, shown in the error and by `lifelong list`), e.g. "it picks
    # the task's own parameters at test time, and only task-IL tells it the task".
    scenarios_why: ClassVar[str] = ""
    # Scenarios where the method runs but is known not to work: why, and the paper that shows it. Running
    # there prints this first, so that nobody spends a run finding out (van de Ven & Tolias 2019).
    known_failures: ClassVar[dict[str, str]] = {}
    # Attributes that are working space, rebuilt for each task or step from the rest (per-step buffers,
    # caches, the current task's masks): capacity() does not count them as the method's stored state.
    scratch: ClassVar[tuple[str, ...]] = ()

    # ---- set-up ---------------------------------------------------------------------------------

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if not _is_a(value, hints[f.name]):
                kind = " or ".join(_type_name(t) for t in typing.get_args(hints[f.name]) or [hints[f.name]])
                raise LifelongError(f"{self.name}: {option(f.name)} must be {kind} (got {value!r})")
            bad = (
                ("min" in meta and value < meta["min"])
                or ("max" in meta and value > meta["max"])
                or ("choices" in meta and value not in meta["choices"])
            )
            if bad:
                if "choices" in meta:
                    allowed = f"one of {', '.join(map(str, meta['choices']))}"
                elif "max" not in meta:
                    allowed = f">= {meta['min']}"
                else:
                    allowed = f"in [{meta.get('min', '-inf')}, {meta['max']}]"
                raise LifelongError(f"{self.name}: {option(f.name)} must be {allowed} (got {value!r})")

    def check(self, stream: Stream) -> None:
        if stream.scenario not in self.scenarios:
            why = f": {self.scenarios_why}" if self.scenarios_why else ""
            raise LifelongError(
                f"{self.name} does not support the {stream.scenario}-incremental scenario{why}; "
                f"use {option('scenario')} {' or '.join(self.scenarios)}"
            )

    @classmethod
    def caveat(cls, scenario: str) -> str | None:
        """One line saying why this method is expected to fail in ``scenario``, or None."""
        why = cls.known_failures.get(scenario)
        return f"{cls.name} in {SCENARIO_NAMES[scenario]} is expected to fail: {why}" if why else None

    def stages(self, n_tasks: int) -> list[list[int]]:
        """Which tasks' training data each stage trains on: one task per stage by default."""
        return [[t] for t in range(n_tasks)]

    def prepare(self, model: nn.Module, stream: Stream) -> nn.Module:
        """Called once before training; may wrap or grow the model."""
        return model

    # ---- hooks called by fit(), in order ---------------------------------------------------------

    def before_task(self, task: Task, model: nn.Module) -> None: ...

    def on_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called with each optimizer fit() creates (every task, or once with ``reset_optimizer`` off),
        after ``before_task`` and before the task's first step: a method whose update depends on the
        optimizer (the regularisers' proximal step needs plain SGD and its lr) learns it here."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None):
        """The training objective on one batch; ``mask`` is the scenario's additive logit mask."""
        return cross_entropy(model(x), y, mask)

    def after_backward(self, model: nn.Module, task: Task) -> None: ...

    def after_step(self, model: nn.Module, task: Task) -> None: ...

    def after_task(self, task: Task, model: nn.Module) -> None: ...

    def predict(self, model: nn.Module, x: torch.Tensor, task: Task) -> torch.Tensor:
        """Logits for a test batch of ``task`` (fit() applies the scenario's mask afterwards)."""
        return model(x)

    def capacity(self, model: nn.Module) -> dict:
        """What the network and the method hold after a task (issue 8's capacity accounting; JSON-able):
        ``parameters`` of the model, ``free_fraction`` of its weights no task owns yet (None where the idea
        does not apply), ``stored_bytes`` of the method's own state besides the model, found by walking the
        method's attributes (methods/capacity.py; ``scratch`` names what is left out). Methods that own
        weights per task (PackNet, CPG) fill in ``free_fraction``."""
        return {
            "parameters": capacity.parameters(model),
            "free_fraction": None,
            "stored_bytes": capacity.stored_bytes(self, model),
        }

    def facts(self) -> dict:
        """What the method measured about itself during the run, kept in the run's record (JSON-able):
        e.g. a memory's size in samples and bytes, GEM's projection rate per task, DGR's samples."""
        return {}

    # ---- description ----------------------------------------------------------------------------

    @classmethod
    def hyperparameters(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    def settings(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def overrides(cls, hook: str) -> bool:
        return getattr(cls, hook) is not getattr(Method, hook)


def _is_a(value, hint) -> bool:
    """Whether a hyper-parameter's value fits its annotation (float takes an int; bool is not a number)."""
    kinds = typing.get_args(hint) or (hint,)
    if value is None:
        return type(None) in kinds
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and (int in kinds or float in kinds):
        return True
    return any(isinstance(value, k) for k in kinds if isinstance(k, type) and k not in (int, bool))


def _type_name(kind) -> str:
    return {float: "a number", int: "a whole number", bool: "True or False", str: "a string"}.get(
        kind, "None" if kind is type(None) else getattr(kind, "__name__", str(kind))
    )


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(logits if mask is None else logits + mask, y)
