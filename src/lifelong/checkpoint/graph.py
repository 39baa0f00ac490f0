"""Live objects as tensors + JSON, and back, without pickles: what a checkpoint keeps of a run.

fit()'s state between two tasks is a graph of objects: the model (which a method may have grown: PNN's
columns, CPG's wider layers), the optimizer, the method's attributes (importances, anchors, memories,
masks, frozen copies of the model, generators of random numbers, DGR's VAE and its optimizer...), and
fit()'s own generator of batch orders. ``capture`` walks that graph and writes

- every tensor *storage* once, as raw bytes (``{name: uint8 tensor}``, saved with safetensors), and every
  tensor as a view of one (dtype, shape, stride, offset). So tensors that share memory still share it
  when restored: a ``detach()`` of a parameter, the regularisers' per-parameter views of θ*, GEM's
  blocks of its memory. A view that autograd links to its base (requires_grad) is rebuilt from the
  restored base, so gradients still flow into it. A storage of the stream's data (a memory that slices
  a task's tensors) is not copied: it is named, and re-linked to the rebuilt stream;
- everything else as JSON: numbers, strings, containers, a module (its class, its parameters, buffers,
  submodules and plain attributes: the model's structure comes back as it was, grown or not), an
  optimizer (its class, groups, per-parameter state), a torch.Generator or random.Random (its state),
  an object of a class of this package (its class and attributes), the stream and its tasks (a
  reference: the caller rebuilds the stream), and the same object reached twice as a reference
  (``{"$ref": path}``), so shared objects stay shared.

Anything else (a function made at run time, a live Python generator, an open file, a tensor that is the
result of a computation still attached to autograd, a module with hooks) is refused with a one-line
``CheckpointError`` that names the attribute: a checkpoint that silently dropped state would resume a
different run. Classes are found by name on restore: this package's and torch's (imported on demand) and
those of modules already imported (a user's own model class); an object is made with ``object.__new__``
(a module with ``nn.Module.__init__``, so that torch's internals are those of the running version) and
its attributes set, as copy and pickle do, but no code named by the file is ever imported from outside
those packages.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import random
import sys
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn

from lifelong.data.task import Stream
from lifelong.errors import LifelongError

# What nn.Module.__init__ sets in this torch version: its hook tables must be empty to be saved, and a
# restored module gets fresh ones from nn.Module.__init__.
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_MODULE_STATE = ("training", "_parameters", "_buffers", "_non_persistent_buffers_set", "_modules")
_STREAM_FIELDS = ("train_x", "train_y", "test_x", "test_y")
_IMPORTABLE = ("lifelong.", "torch.")  # packages whose classes a checkpoint may name and import


class CheckpointError(LifelongError):
    """State that a checkpoint cannot hold, or a checkpoint that cannot be restored."""


def capture(roots: dict[str, Any], stream: Stream, owner: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(JSON document, {storage name: uint8 tensor}) of ``roots`` ({name: object}). ``owner`` names the
    method in error messages."""
    encoder = _Encoder(stream, owner)
    graph = {name: encoder.encode(value, name) for name, value in roots.items()}
    return {"graph": graph, "storages": encoder.storage_info}, encoder.saved


def rebuild(
    document: dict, saved: dict[str, torch.Tensor], stream: Stream, into: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The roots of a captured graph, made again. ``into`` ({root name: object}) gives objects to restore
    in place (the caller's method, its model) instead of making new ones: same class, attributes replaced."""
    decoder = _Decoder(document["storages"], saved, stream, into or {})
    return {name: decoder.decode(value, name) for name, value in document["graph"].items()}


def class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


# ---- writing -------------------------------------------------------------------------------------------


class _Encoder:
    def __init__(self, stream: Stream, owner: str):
        self.stream, self.owner = stream, owner
        self.saved: dict[str, torch.Tensor] = {}
        self.storage_info: dict[str, dict] = {}
        self.names: dict[tuple, str] = {}  # storage key -> its name
        self.memo: dict[int, str] = {}  # id of an object already written -> its path
        self.keep: list = []  # every object walked stays alive, so that no id is reused during the walk
        self.tasks = {id(t): i for i, t in enumerate(stream.tasks)}
        for i, task in enumerate(stream.tasks):  # the stream's data: named, never copied
            for field in _STREAM_FIELDS:
                t = getattr(task, field)
                key = _storage_key(t)
                if key not in self.names:
                    name = f"stream.{i}.{field}"
                    self.names[key] = name
                    self.storage_info[name] = {"stream": [i, field], "nbytes": t.untyped_storage().nbytes()}
                    self.keep.append(t)

    def encode(self, value: Any, path: str):
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if id(value) in self.memo:
            return {"$ref": self.memo[id(value)]}
        self.memo[id(value)] = path
        self.keep.append(value)
        if isinstance(value, torch.Tensor):
            return self._tensor(value, path)
        if kind in (list, tuple, set, frozenset, torch.Size):
            items = [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
            return items if kind is list else {_CONTAINERS[kind]: items}
        if kind in (dict, OrderedDict):
            if kind is dict and all(type(k) is str and not k.startswith("$") for k in value):
                return {k: self.encode(v, f"{path}[{k!r}]") for k, v in value.items()}
            pairs = [
                [self.encode(k, f"{path}<{i}>"), self.encode(v, f"{path}[{i}]")]
                for i, (k, v) in enumerate(value.items())
            ]
            if kind is dict:
                return {"$dict": pairs}
            # A module's state_dict() is an OrderedDict whose _metadata (versions) load_state_dict reads.
            return {"$odict": pairs, "attrs": self.encode(dict(vars(value)), f"{path}.attrs")}
        if kind is range:
            return {"$range": [value.start, value.stop, value.step]}
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            return {"$ndarray": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return {"$numpy": value.dtype.str, "value": value.item()}
        if kind in (torch.dtype, torch.device):
            return {"$torch": str(value)}
        if kind is torch.Generator:
            return {"$generator": self.encode(value.get_state(), f"{path}.state"), "device": str(value.device)}
        if kind is random.Random:
            return {"$random": self.encode(value.getstate(), f"{path}.state")}
        if value is self.stream:
            return {"$stream": None}
        if id(value) in self.tasks:
            return {"$task": self.tasks[id(value)]}
        if isinstance(value, nn.Module):
            return self._module(value, path)
        if isinstance(value, torch.optim.Optimizer):
            return self._optimizer(value, path)
        if isinstance(value, type) or (callable(value) and kind.__name__ in ("function", "builtin_function_or_method")):
            return {"$named": self._findable(value, path)}
        if hasattr(value, "__dict__") and (kind.__module__.startswith("lifelong.") or dataclasses.is_dataclass(kind)):
            attrs = {k: self.encode(v, f"{path}.{k}") for k, v in vars(value).items()}
            return {"$object": self._findable(kind, path), "attrs": attrs}
        raise self.refuse(path, value, "")

    def _tensor(self, t: torch.Tensor, path: str) -> dict:
        if type(t) not in (torch.Tensor, nn.Parameter) or t.layout != torch.strided or t.device.type == "meta":
            raise self.refuse(path, t, f" ({type(t).__name__}, {t.layout})")
        out = {
            "$tensor": self._storage(t),
            "dtype": str(t.dtype).removeprefix("torch."),
            "shape": list(t.shape),
            "stride": list(t.stride()),
            "offset": t.storage_offset(),
            "requires_grad": t.requires_grad,
        }
        if t.grad_fn is not None:  # computed, still attached to autograd: only a view of a kept tensor can be
            if t._base is None:
                raise self.refuse(path, t, " (the result of a computation still attached to autograd)")
            out["view_of"] = self.encode(t._base, f"{path}.base")
        if isinstance(t, nn.Parameter):
            out["parameter"] = True
        if t.is_leaf and t.grad is not None:
            out["grad"] = self.encode(t.grad, f"{path}.grad")
        return out

    def _storage(self, t: torch.Tensor) -> str:
        key = _storage_key(t)
        if key not in self.names:
            name = f"s{len(self.saved)}"
            whole = torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())
            self.saved[name] = whole.detach().cpu()
            self.storage_info[name] = {"nbytes": whole.numel(), "device": str(t.device)}
            self.names[key] = name
        return self.names[key]

    def _module(self, m: nn.Module, path: str) -> dict:
        state = vars(m)
        hooks = sorted(k for k in _MODULE_INTERNALS.difference(_MODULE_STATE) if state.get(k))
        if hooks:
            raise self.refuse(path, m, f" (it has {hooks[0]} registered: hooks are code)")
        attrs = {
            k: self.encode(v, f"{path}.{k}")
            for k, v in state.items()
            if k not in _MODULE_INTERNALS or k in _MODULE_STATE
        }
        return {"$module": self._findable(type(m), path), "attrs": attrs}

    def _optimizer(self, opt: torch.optim.Optimizer, path: str) -> dict:
        hooks = [k for k, v in vars(opt).items() if k.endswith("_hooks") and v]
        if hooks:
            raise self.refuse(path, opt, f" (it has {hooks[0]} registered: hooks are code)")
        defaults = self.encode(dict(opt.defaults), f"{path}.defaults")  # first: the order the restore reads
        groups = [
            {
                "params": self.encode(list(g["params"]), f"{path}.groups[{i}].params"),
                "options": self.encode({k: v for k, v in g.items() if k != "params"}, f"{path}.groups[{i}]"),
            }
            for i, g in enumerate(opt.param_groups)
        ]
        state = [
            [self.encode(p, f"{path}.state<{i}>"), self.encode(s, f"{path}.state[{i}]")]
            for i, (p, s) in enumerate(opt.state.items())
        ]
        return {
            "$optimizer": self._findable(type(opt), path),
            "defaults": defaults,
            "groups": groups,
            "state": state,
        }

    def _findable(self, obj, path: str) -> str:
        """The ``module:qualname`` of a class or function that a restore can find again."""
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
        if not module or "<" in qualname:
            raise self.refuse(path, obj, " (made at run time: it has no name to find it by)")
        found = _lookup(module, qualname, importing=False)
        if found is not obj:
            raise self.refuse(path, obj, f" ({module}:{qualname} does not name it)")
        return f"{module}:{qualname}"

    def refuse(self, path: str, value, why: str) -> CheckpointError:
        return CheckpointError(
            f"{self.owner}: cannot checkpoint {path}, a {type(value).__name__}{why}; a checkpoint keeps tensors, "
            "numbers, strings, containers, modules, optimizers, random generators and lifelong's own objects"
        )


_CONTAINERS = {tuple: "$tuple", set: "$set", frozenset: "$frozenset", torch.Size: "$size"}


def _storage_key(t: torch.Tensor) -> tuple:
    storage = t.untyped_storage()
    if storage.nbytes() == 0:  # empty storages may all sit at address 0: never shared
        return ("empty", id(storage), id(t))
    return (str(t.device), storage.data_ptr())


# ---- reading -------------------------------------------------------------------------------------------


class _Decoder:
    def __init__(self, info: dict, saved: dict[str, torch.Tensor], stream: Stream, into: dict[str, Any]):
        self.info, self.saved, self.stream, self.into = info, saved, stream, into
        self.storages: dict[str, torch.UntypedStorage] = {}
        self.done: dict[str, Any] = {}

    def decode(self, value: Any, path: str):
        if isinstance(value, list):
            out: list = []
            self.done[path] = out
            out.extend(self.decode(v, f"{path}[{i}]") for i, v in enumerate(value))
            return out
        if not isinstance(value, dict):
            return value
        tags = [k for k in value if k.startswith("$")]
        if not tags:
            out = {}
            self.done[path] = out
            out.update({k: self.decode(v, f"{path}[{k!r}]") for k, v in value.items()})
            return out
        tag = tags[0]
        if tag == "$ref":
            return self.done[value["$ref"]]
        if tag == "$float":
            return float(value["$float"])
        made = getattr(self, "_" + tag[1:], None)
        if made is None:
            raise CheckpointError(
                f"the checkpoint has an unknown entry {tag} at {path}; it was written by another version"
            )
        out = made(value, path)
        self.done.setdefault(path, out)
        return out

    def _items(self, value: list, path: str) -> list:
        return [self.decode(v, f"{path}[{i}]") for i, v in enumerate(value)]

    def _tuple(self, value, path):
        return tuple(self._items(value["$tuple"], path))

    def _set(self, value, path):
        return set(self._items(value["$set"], path))

    def _frozenset(self, value, path):
        return frozenset(self._items(value["$frozenset"], path))

    def _size(self, value, path):
        return torch.Size(self._items(value["$size"], path))

    def _dict(self, value, path, kind=dict):
        out = kind()
        self.done[path] = out
        for i, (k, v) in enumerate(value.get("$dict", value.get("$odict"))):
            key = self.decode(k, f"{path}<{i}>")
            out[key] = self.decode(v, f"{path}[{i}]")
        return out

    def _odict(self, value, path):
        out = self._dict(value, path, OrderedDict)
        vars(out).update(self.decode(value["attrs"], f"{path}.attrs"))
        return out

    def _range(self, value, path):
        return range(*value["$range"])

    def _ndarray(self, value, path):
        return np.array(value["data"], dtype=np.dtype(value["$ndarray"])).reshape(value["shape"])

    def _numpy(self, value, path):
        return np.dtype(value["$numpy"]).type(value["value"])

    def _torch(self, value, path):
        text = value["$torch"]
        if text.startswith("torch."):
            dtype = getattr(torch, text.removeprefix("torch."), None)
            if not isinstance(dtype, torch.dtype):
                raise CheckpointError(f"the checkpoint names an unknown dtype {text} at {path}")
            return dtype
        return torch.device(text)

    def _generator(self, value, path):
        g = torch.Generator(device=value["device"])
        g.set_state(self.decode(value["$generator"], f"{path}.state").cpu())
        return g

    def _random(self, value, path):
        r = random.Random()
        r.setstate(self.decode(value["$random"], f"{path}.state"))
        return r

    def _stream(self, value, path):
        return self.stream

    def _task(self, value, path):
        return self.stream.tasks[value["$task"]]

    def _named(self, value, path):
        return _lookup(*value["$named"].split(":", 1), importing=True)

    def _storage(self, name: str) -> torch.UntypedStorage:
        if name not in self.storages:
            info = self.info[name]
            if "stream" in info:
                i, field = info["stream"]
                tensor = getattr(self.stream.tasks[i], field)
            else:
                # A fresh allocation (torch aligns it as it did the original): the safetensors buffer is not.
                tensor = self.saved[name].to(info["device"]).clone()
            if tensor.untyped_storage().nbytes() != info["nbytes"]:
                where = "the rebuilt stream's" if "stream" in info else "the saved"
                raise CheckpointError(
                    f"the checkpoint does not match {where} data: storage {name} holds "
                    f"{tensor.untyped_storage().nbytes()} bytes, {info['nbytes']} expected"
                )
            self.storages[name] = tensor.untyped_storage()
        return self.storages[name]

    def _tensor(self, value, path):
        storage = self._storage(value["$tensor"])
        dtype = getattr(torch, value["dtype"])
        shape, stride, offset = value["shape"], value["stride"], value["offset"]
        end = offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True)) + 1 if all(shape) else offset
        if end * dtype.itemsize > storage.nbytes():
            raise CheckpointError(f"the checkpoint's tensor {path} of shape {shape} does not fit its saved storage")
        if "view_of" in value:  # rebuilt from its base, so that autograd links them as before
            base = self.decode(value["view_of"], f"{path}.base")
            with torch.enable_grad():
                t = base.as_strided(shape, stride, offset)
        else:
            t = torch.empty(0, dtype=dtype, device=storage.device).set_(storage, offset, shape, stride)
            if value.get("parameter"):
                t = nn.Parameter(t, requires_grad=value["requires_grad"])
            elif value["requires_grad"]:
                t.requires_grad_(True)
        self.done[path] = t
        if "grad" in value:
            t.grad = self.decode(value["grad"], f"{path}.grad")
        return t

    def _module(self, value, path):
        cls = _lookup(*value["$module"].split(":", 1), importing=True)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise CheckpointError(f"the checkpoint names {value['$module']} at {path}, which is not a torch module")
        m = self._target(path, cls)
        if path not in self.into:
            nn.Module.__init__(m)  # torch's internals (hook tables...) as this version has them
        self.done[path] = m
        for k, v in value["attrs"].items():
            m.__dict__[k] = self.decode(v, f"{path}.{k}")
        return m

    def _object(self, value, path):
        cls = _lookup(*value["$object"].split(":", 1), importing=True)
        if not isinstance(cls, type):
            raise CheckpointError(f"the checkpoint names {value['$object']} at {path}, which is not a class")
        obj = self._target(path, cls)
        self.done[path] = obj
        for k, v in value["attrs"].items():
            obj.__dict__[k] = self.decode(v, f"{path}.{k}")
        return obj

    def _target(self, path: str, cls: type):
        """The object to fill: the caller's own for a root given in ``into``, else a new, empty one."""
        if path not in self.into:
            return object.__new__(cls)
        obj = self.into[path]
        if type(obj) is not cls:
            raise CheckpointError(
                f"the checkpoint holds a {cls.__qualname__} as its {path}, not a {type(obj).__qualname__}; "
                "resume with what the run was started with"
            )
        return obj

    def _optimizer(self, value, path):
        cls = _lookup(*value["$optimizer"].split(":", 1), importing=True)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise CheckpointError(f"the checkpoint names {value['$optimizer']} at {path}, which is not an optimizer")
        defaults = self.decode(value["defaults"], f"{path}.defaults")
        groups = [
            {
                "params": self.decode(g["params"], f"{path}.groups[{i}].params"),
                **self.decode(g["options"], f"{path}.groups[{i}]"),
            }
            for i, g in enumerate(value["groups"])
        ]
        opt = cls(groups, **defaults)
        self.done[path] = opt
        for i, (p, s) in enumerate(value["state"]):
            param = self.decode(p, f"{path}.state<{i}>")
            opt.state[param] = self.decode(s, f"{path}.state[{i}]")
        return opt


def _lookup(module: str, qualname: str, importing: bool):
    """The object ``module:qualname``. Modules of this package and of torch are imported if need be;
    any other must be imported already (a user's own model class): a checkpoint never imports code."""
    if module not in sys.modules:
        if not (importing and module.startswith(_IMPORTABLE)):
            raise CheckpointError(f"the checkpoint names {module}:{qualname}; import {module} before resuming")
        importlib.import_module(module)
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise CheckpointError(f"the checkpoint names {module}:{qualname}, which this version does not have")
    return obj
