"""A library method's state as tensors + JSON, so that the learner resumes it after a restart without
pickles.

A method keeps its state in its attributes (Replay: an episodic memory and a generator; the regularisers:
Ω, the anchor θ*, a ParamLayout over the model; SI: its running path integral). ``capture`` walks them
the way methods/capacity.py does and writes every tensor into a flat ``{path: tensor}`` dict (saved with
safetensors, weights.py) and everything else into a JSON document that says how to rebuild it:

- numbers, strings, None, lists, tuples, torch.Size, dicts, sets: as JSON (all but lists tagged);
- a tensor: ``{"$tensor": path}``; one of the model's own parameters or buffers: ``{"$param": name}``, so
  that it is re-linked to the restored model (a ParamLayout's parameters *are* the model);
- a torch.Generator: its state tensor; a random.Random: its state, so that sampling continues exactly;
- the live stream, a task: a reference (``$stream``, ``$task``): the learner rebuilds both from the store;
- a module other than the model that has the model's parameter names (LwF's frozen copy): its state dict,
  restored into a copy of the model;
- an object of a class defined in ``lifelong`` (an EpisodicMemory, a ParamLayout, a nested Method):
  its class name and attributes; on restore it is created without calling its constructor
  (``object.__new__``), as copy/pickle do, but only for classes of this package, found by name;
- an optimizer: dropped (None); the learner builds a new one per candidate and calls ``on_optimizer``;
- the same object reached twice: ``{"$ref": path}``, so shared objects stay shared.

Anything else (a function, a file) is refused with a one-line error naming the method and the
attribute: better to refuse a method at its first candidate than to resume it wrongly. ``Method.scratch``
attributes are saved too (a restored Replay needs the current task's masks that ``before_task`` set).
Two views of one tensor come back as two tensors; the methods keep such views only in their scratch
(the regularisers' per-parameter views of θ*), which ``on_optimizer`` rebuilds for every candidate.

``restore`` sets the attributes on a method that was just built from its spec and prepared on the model.
"""

from __future__ import annotations

import copy
import importlib
import random
from typing import Any

import torch
from torch import nn

from lifelong.data.task import Stream, Task
from lifelong.serve.errors import ServeError


def capture(method, model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, document) holding every non-scratch attribute of ``method``."""
    own = {id(t): name for name, t in (*model.named_parameters(), *model.named_buffers())}
    walker = _Encoder(method.name, own)
    attrs = {name: walker.encode(value, name) for name, value in vars(method).items()}
    return walker.tensors, {"class": _class_name(type(method)), "attrs": attrs}


def restore(method, model: nn.Module, stream: Stream, tensors: dict[str, torch.Tensor], document: dict) -> None:
    """Set the captured attributes on ``method`` (built from the same spec and prepared on ``model``)."""
    if document.get("class") != _class_name(type(method)):
        raise ServeError(
            f"the saved learner state is of {document.get('class')}, not {_class_name(type(method))}; "
            "serve with the method the state was made with"
        )
    decoder = _Decoder(model, stream, tensors)
    for name, value in document["attrs"].items():
        setattr(method, name, decoder.decode(value, name))


class _Encoder:
    def __init__(self, method_name: str, own: dict[int, str]):
        self.method_name, self.own = method_name, own
        self.tensors: dict[str, torch.Tensor] = {}
        self.seen: dict[int, str] = {}
        self.keep: list = []  # keeps every walked object alive, so that no id is reused during the walk

    def encode(self, value: Any, path: str):
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, torch.Tensor) and id(value) in self.own:
            return {"$param": self.own[id(value)]}
        if id(value) in self.seen:
            return {"$ref": self.seen[id(value)]}
        self.seen[id(value)] = path
        self.keep.append(value)
        if isinstance(value, torch.Tensor):
            self.tensors[path] = value.detach()
            return {"$tensor": path, "requires_grad": value.requires_grad}
        if isinstance(value, torch.Generator):
            self.tensors[path] = value.get_state()
            return {"$generator": path, "device": str(value.device)}
        if isinstance(value, random.Random):
            version, state, gauss = value.getstate()
            return {"$random": [version, list(state), gauss]}
        if isinstance(value, torch.device | torch.dtype):
            return {"$torch": str(value)}
        if isinstance(value, Stream):
            return {"$stream": True}
        if isinstance(value, Task):
            return {"$task": value.id}
        if isinstance(value, torch.optim.Optimizer):
            return None
        kind = {list: "$list", tuple: "$tuple", torch.Size: "$size", set: "$set", frozenset: "$set"}.get(type(value))
        if kind is not None:
            items = sorted(value, key=repr) if kind == "$set" else value
            return {kind: [self.encode(v, f"{path}.{i}") for i, v in enumerate(items)]}
        if isinstance(value, dict):
            return {
                "$dict": [
                    [self.encode(k, f"{path}.k{i}"), self.encode(v, f"{path}.{i}")]
                    for i, (k, v) in enumerate(value.items())
                ]
            }
        if isinstance(value, nn.Module):
            names = {n for n, _ in (*value.named_parameters(), *value.named_buffers())}
            if names != set(self.own.values()):
                raise self._refuse(path, value)
            for name, t in value.state_dict().items():
                self.tensors[f"{path}/{name}"] = t.detach()
            return {"$module": path, "training": value.training}
        if hasattr(value, "__dict__") and type(value).__module__.startswith("lifelong."):
            attrs = {k: self.encode(v, f"{path}.{k}") for k, v in vars(value).items()}
            return {"$object": _class_name(type(value)), "attrs": attrs}
        raise self._refuse(path, value)

    def _refuse(self, path: str, value) -> ServeError:
        return ServeError(
            f"{self.method_name} keeps a {type(value).__name__} in {path}, which the learner cannot save "
            "without pickles; serve with another method (e.g. the default replay-l2)"
        )


class _Decoder:
    def __init__(self, model: nn.Module, stream: Stream, tensors: dict[str, torch.Tensor]):
        self.model, self.stream, self.tensors = model, stream, tensors
        self.own = dict((*model.named_parameters(), *model.named_buffers()))
        self.done: dict[str, Any] = {}

    def decode(self, value: Any, path: str):
        if not isinstance(value, dict):
            return value
        if "$param" in value:
            return self.own[value["$param"]]
        if "$ref" in value:
            return self.done[value["$ref"]]
        out = self._decode(value, path)
        self.done[path] = out
        return out

    def _decode(self, value: dict, path: str):
        device = next(self.model.parameters()).device
        if "$tensor" in value:
            return self.tensors[value["$tensor"]].to(device).clone().requires_grad_(value["requires_grad"])
        if "$generator" in value:
            g = torch.Generator(device=value["device"])
            g.set_state(self.tensors[value["$generator"]])
            return g
        if "$random" in value:
            version, state, gauss = value["$random"]
            r = random.Random()
            r.setstate((version, tuple(state), gauss))
            return r
        if "$torch" in value:
            text = value["$torch"]
            return getattr(torch, text.removeprefix("torch.")) if text.startswith("torch.") else torch.device(text)
        if "$stream" in value:
            return self.stream
        if "$task" in value:
            return self.stream.tasks[value["$task"]]
        for kind, build in (("$list", list), ("$tuple", tuple), ("$size", torch.Size), ("$set", set)):
            if kind in value:
                return build(self.decode(v, f"{path}.{i}") for i, v in enumerate(value[kind]))
        if "$dict" in value:
            return {
                self.decode(k, f"{path}.k{i}"): self.decode(v, f"{path}.{i}") for i, (k, v) in enumerate(value["$dict"])
            }
        if "$module" in value:
            module = copy.deepcopy(self.model)
            prefix = value["$module"] + "/"
            module.load_state_dict({k[len(prefix) :]: t for k, t in self.tensors.items() if k.startswith(prefix)})
            return module.train(value["training"])
        if "$object" in value:
            obj = object.__new__(_find_class(value["$object"]))
            self.done[path] = obj  # its attributes may refer back to it
            for k, v in value["attrs"].items():
                setattr(obj, k, self.decode(v, f"{path}.{k}"))
            return obj
        raise ServeError(f"the saved learner state has an unknown entry at {path}; it was written by another version")


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _find_class(name: str) -> type:
    """A class of this package by its ``module:qualname`` (never anything outside ``lifelong``)."""
    module, _, qualname = name.partition(":")
    if not module.startswith("lifelong."):
        raise ServeError(f"the saved learner state names {name}, which is not a lifelong class; it is not ours")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ServeError(f"the saved learner state names {name}, which is not a class")
    return obj
