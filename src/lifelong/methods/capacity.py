"""Capacity accounting (issue 8, item 4): what the network and a method hold after each task.

The lecture's price of "a model per task" is that eventually the models no longer fit; so every method
is judged by the parameters it trains and by the bytes it keeps besides them (EWC's Fisher and anchor,
a replay memory, LwF's frozen copy, the independent baseline's stored models).

``stored_bytes`` finds that state without asking each method: it walks the method's attributes
(tensors, lists / tuples / dicts of them, modules' parameters and buffers, and objects that report their
own ``nbytes`` such as the episodic memory) and adds up each tensor storage once, so that views of one
tensor (GEM's blocks of its memory, the regularisers' per-parameter views of the anchor) count once.
Left out: storages the model itself owns (its parameters, buffers and gradients: a ParamLayout's views
of the parameters are the model, not the method's state), gradients of the method's own tensors
(per-step scratch), other objects (the stream, whose data is not the method's), and the attributes a
method names in ``Method.scratch`` (working space rebuilt for each task or step).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def parameters(model: nn.Module) -> int:
    """The model's parameters, each tensor counted once (a weight shared by two layers is one tensor)."""
    return sum(p.numel() for p in model.parameters())


def stored_bytes(method: Any, model: nn.Module) -> int:
    """Bytes of the method's own state besides the model (see the module docstring for what counts)."""
    model_storages = {_storage(t)[0] for t in _model_tensors(model)}
    tensors: dict[tuple, int] = {}  # storage -> its bytes, every storage reached
    covered: set[tuple] = set()  # storages inside objects that report their own nbytes
    reported = 0
    objects = set()  # ids of the nbytes objects counted already (one memory held under two names)
    skip = set(getattr(type(method), "scratch", ()))
    for name, value in vars(method).items():
        if name in skip:
            continue
        for kind, item in _walk(value, set()):
            if kind == "tensor":
                key, size = _storage(item)
                tensors[key] = size
            elif id(item) not in objects:
                objects.add(id(item))
                reported += int(item.nbytes)
                inside = _walk(vars(item), set()) if hasattr(item, "__dict__") else ()
                covered |= {_storage(t)[0] for what, t in inside if what == "tensor"}
    left_out = model_storages | covered
    return reported + sum(size for key, size in tensors.items() if key not in left_out)


def record(method: Any, model: nn.Module, tasks: int, before: int) -> dict:
    """What fit() keeps after a training stage: ``method.capacity(model)`` (parameters, free_fraction,
    stored_bytes), the number of ``tasks`` learned so far, and the parameters ``added`` during the stage
    (growth: parameters now minus ``before``, the count after the previous stage or before training)."""
    held = dict(method.capacity(model))
    free = held.get("free_fraction")
    return {
        "tasks": tasks,
        "parameters": int(held["parameters"]),
        "added": int(held["parameters"]) - before,
        "free_fraction": None if free is None else float(free),
        "stored_bytes": int(held["stored_bytes"]),
    }


def _walk(value: Any, seen: set[int]) -> Iterator[tuple[str, Any]]:
    """("tensor", t) for every tensor reachable through containers and modules, ("nbytes", obj) for an
    object that reports its own size; anything else is not the method's stored state."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        yield "tensor", value
    elif isinstance(value, nn.Module):
        yield from (("tensor", t) for t in (*value.parameters(), *value.buffers()))
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk(v, seen)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from _walk(v, seen)
    elif isinstance(getattr(value, "nbytes", None), int):  # the episodic memory, a numpy array
        yield "nbytes", value


def _model_tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    for p in model.parameters():
        yield p
        if p.grad is not None:
            yield p.grad
    yield from model.buffers()


def _storage(t: torch.Tensor) -> tuple[tuple, int]:
    """The tensor's storage (a key shared by all its views) and that storage's size in bytes."""
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # no plain storage (sparse, some tensor subclasses)
        return ("tensor", id(t)), t.numel() * t.element_size()
    return (str(t.device), storage.data_ptr()), storage.nbytes()
