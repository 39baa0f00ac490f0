"""The sweep file: which runs a sweep makes.

A sweep file is a YAML mapping with these keys (all optional; README, "Sweeps", has an example)::

    name: ewc-vs-si            # the sweep's name; its runs form the store group sweep-<name> (default: the file's stem)
    search: grid               # grid: every combination (default); random: `samples` configurations drawn
    samples: 20                # random only: how many distinct configurations to draw
    search_seed: 0             # the seed of the sweep's own random choices (draws, random orders); default 0
    fixed: {tasks: 3, epochs: 2}          # settings every run shares: any `lifelong run` option, one value each
    grid: {lr: [0.01, 0.1], benchmark: [permuted-digits, rotated-digits]}   # settings to vary, a list each
    methods: {finetune: {}, ewc: {lam: [1, 10, 100]}}   # or a list of names; each with its own hyper-parameters
    seeds: [0, 1, 2]           # or "0..4"; every configuration runs with each seed (default [0])
    orders: [[0, 1, 2], [2, 1, 0]]   # task orders: a list, `all`, or a number N of random orders (default: natural)
    validation: 0.1            # score on this share of each task's training data held out (as `lifelong tune`)

A configuration is one value of every ``grid`` key and one method with one value of each of its
hyper-parameters; the runs are configurations × orders × seeds. Under ``search: random`` a ``grid`` or
hyper-parameter value may also be a distribution, ``{log_uniform: [1e-3, 1e-1]}`` or ``{uniform: [0, 1]}``
(whole numbers for a whole-number setting); a draw picks a method, then each value, uniformly, and keeps
3 significant digits, so that the same ``search_seed`` draws the same configurations and a re-run of the
sweep finds the runs it recorded.

The sweep's own keys (``method``, ``seed``, ``seeds``, ``task_order``) are not settings under ``fixed`` or
``grid``: methods, seeds and orders have their own keys, and a method's hyper-parameter belongs to that
method. ``store`` is the command's ``--store``. Every value is checked before anything runs, and a bad
one is a one-line error that names the key, the value and how to fix it. Paths (``data_dir``) are
relative to the file's folder.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lifelong import config, methods
from lifelong.errors import LifelongError
from lifelong.studies import orders as order_study

KEYS = ("name", "search", "samples", "search_seed", "fixed", "grid", "methods", "seeds", "orders", "validation")
OWN_KEYS = {  # run options that the sweep sets through its own keys: where each belongs instead
    "method": "list methods under methods:",
    "seed": "list seeds under seeds:",
    "seeds": "list seeds under seeds: (a top-level key)",
    "task_order": "list task orders under orders:",
    "store": "give the store on the command line (--store)",
    "report": "a sweep writes no report; compare its runs with `lifelong compare --group`",
    "vectorize": "a sweep trains each run alone (its workers are the parallelism); remove it",
}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_DRAWS_PER_SAMPLE = 1000  # random search: tries per configuration before the space is taken as too small


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A range to draw a number from under random search: ``uniform`` or ``log_uniform`` on [low, high]."""

    kind: str
    low: float
    high: float
    whole: bool  # the setting takes whole numbers

    def draw(self, rng: np.random.Generator) -> float | int:
        if self.whole:
            lo, hi = math.ceil(self.low), math.floor(self.high)
            if self.kind == "uniform":
                return int(rng.integers(lo, hi + 1))
            return int(min(max(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))), lo), hi))
        if self.kind == "uniform":
            x = rng.uniform(self.low, self.high)
        else:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return min(max(float(f"{x:.3g}"), self.low), self.high)  # readable values; still inside the range


@dataclasses.dataclass
class Point:
    """One run of a sweep: the settings it sets (as config.resolve takes them), its method spec
    (``ewc:lam=10``), seed and task order (None: the stream's natural order)."""

    settings: dict[str, Any]
    method: str
    seed: int
    order: tuple[int, ...] | None

    def flags(self) -> dict[str, Any]:
        """The options of this run for config.resolve (with the sweep's own keys set)."""
        order = list(self.order) if self.order is not None else None
        return {**self.settings, "method": [self.method], "seed": self.seed, "task_order": order, "report": False}


@dataclasses.dataclass
class Sweep:
    """A checked sweep file (see the module's docstring for each field)."""

    name: str
    source: str  # the file, for messages
    search: str = "grid"
    samples: int | None = None
    search_seed: int = 0
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    grid: dict[str, list | Distribution] = dataclasses.field(default_factory=dict)
    methods: dict[str, dict[str, list | Distribution]] = dataclasses.field(default_factory=dict)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    orders: str | int | list[tuple[int, ...]] | None = None
    validation: float | None = None

    @property
    def group(self) -> str:
        """The store group of the sweep's runs (`lifelong compare --group`)."""
        return f"sweep-{self.name}"

    def configurations(self) -> list[tuple[dict[str, Any], str]]:
        """Every configuration, as (settings, method spec): the grid's product in file order, or the draws."""
        if self.search == "random":
            return self._draw()
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            settings = {**self.fixed, **dict(zip(keys, values, strict=True))}
            for name, params in self.methods.items():
                names = list(params)
                for chosen in itertools.product(*(params[p] for p in names)):
                    out.append((settings, spec(name, dict(zip(names, chosen, strict=True)))))
        return out

    def points(self, n_tasks: Callable[[dict[str, Any]], int]) -> list[Point]:
        """Every run: configurations × orders × seeds. ``n_tasks(settings)``: the number of tasks of a
        configuration's stream, which a number of random orders or ``all`` needs."""
        out = []
        for settings, method in self.configurations():
            for order in self._orders(settings, n_tasks):
                out += [Point(settings, method, seed, order) for seed in self.seeds]
        return out

    def varying(self) -> list[str]:
        """The settings that differ between configurations (grid keys, method hyper-parameters), in file order."""
        params = [p for ps in self.methods.values() for p in ps]
        return list(dict.fromkeys([*self.grid, *params]))

    def _orders(self, settings: dict, n_tasks: Callable[[dict], int]) -> list[tuple[int, ...] | None]:
        if self.orders is None:
            return [None]
        n = n_tasks(settings)
        where = f"{self.source}: orders"
        if self.orders == "all":
            if math.factorial(n) > order_study.MAX_ALL:
                raise LifelongError(
                    f"{where}: all orders of {n} tasks are {math.factorial(n)} runs per configuration and seed; "
                    f"give a number of random orders instead, e.g. orders: {order_study.DEFAULT_RANDOM}"
                )
            return list(order_study.all_orders(n))
        if isinstance(self.orders, int):
            if self.orders > math.factorial(n):
                raise LifelongError(
                    f"{where}: {n} tasks have only {math.factorial(n)} orders, fewer than the {self.orders} asked for; "
                    "use orders: all or ask for fewer"
                )
            return list(order_study.random_orders(n, self.orders, self.search_seed))
        for order in self.orders:
            if sorted(order) != list(range(n)):
                example = list(reversed(range(n)))
                raise LifelongError(
                    f"{where}: {list(order)} is not an order of the {n} tasks; list each of 0..{n - 1} once, "
                    f"e.g. {example}"
                )
        return list(self.orders)

    def _draw(self) -> list[tuple[dict[str, Any], str]]:
        """``samples`` distinct configurations drawn from ``search_seed``: a method, then every value."""
        size = self._space_size()
        if size is not None and self.samples > size:
            raise LifelongError(
                f"{self.source}: samples: {self.samples} is more than the {size} distinct configurations of the "
                "grid and methods; ask for at most that many, or use search: grid"
            )
        rng = np.random.default_rng(self.search_seed)
        names = list(self.methods)
        out, seen = [], set()
        for _ in range(self.samples * MAX_DRAWS_PER_SAMPLE):
            if len(out) == self.samples:
                break
            name = names[int(rng.integers(len(names)))]
            params = {p: _pick(v, rng) for p, v in self.methods[name].items()}
            settings = {**self.fixed, **{k: _pick(v, rng) for k, v in self.grid.items()}}
            key = json.dumps([name, params, settings], sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append((settings, spec(name, params)))
        if len(out) < self.samples:  # narrow whole-number ranges: fewer distinct values than it seemed
            raise LifelongError(
                f"{self.source}: samples: drew only {len(out)} distinct configurations in "
                f"{self.samples * MAX_DRAWS_PER_SAMPLE} tries; ask for fewer samples or widen the ranges"
            )
        return out

    def _space_size(self) -> int | None:
        """The number of distinct configurations, or None when a distribution makes it unbounded."""
        values = [*self.grid.values(), *(v for ps in self.methods.values() for v in ps.values())]
        if any(isinstance(v, Distribution) for v in values):
            return None
        grid = math.prod(len(v) for v in self.grid.values())
        return grid * sum(math.prod(len(v) for v in ps.values()) for ps in self.methods.values())


def _pick(values: list | Distribution, rng: np.random.Generator):
    return values.draw(rng) if isinstance(values, Distribution) else values[int(rng.integers(len(values)))]


def spec(name: str, params: dict[str, Any]) -> str:
    """A method with its settings as `lifelong run --method` writes it: ``ewc:lam=10.0``."""
    return ":".join([name, *(f"{k}={_text(v)}" for k, v in params.items())])


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same number
    return str(value)


# -- reading and checking the file --------------------------------------------------------------------


def load(path: str | Path) -> Sweep:
    """The checked sweep of the YAML file at ``path``."""
    p = Path(path)
    data = config.read_yaml(path, "sweep file", "")
    return parse(data, str(path), p.parent.resolve(), p.stem)


def parse(data, source: str, base: Path | None = None, default_name: str | None = None) -> Sweep:
    """A Sweep from the file's mapping ``data``; ``source`` names the file in messages, ``base`` is the
    folder that relative paths start from."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LifelongError(f"{source}: a sweep file is a mapping of keys ({', '.join(KEYS)}); see README, Sweeps")
    for key in data:
        if key not in KEYS:
            hint = f"; {OWN_KEYS[key]}" if key in OWN_KEYS else f"; the keys are: {', '.join(KEYS)}"
            if key not in OWN_KEYS and str(key).replace("-", "_") in _options():
                hint = "; a run setting goes under fixed: (one value) or grid: (values to try)"
            raise LifelongError(f"{source}: unknown key {key!r}{hint}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not NAME.match(name):
        raise LifelongError(
            f"{source}: name: {name!r} cannot name a sweep; use letters, digits, '.', '_' and '-', e.g. name: ewc-lam"
        )
    out = Sweep(name=name, source=source)
    out.search = data.get("search", "grid")
    if out.search not in ("grid", "random"):
        raise LifelongError(f"{source}: search: {out.search!r} is not grid or random")
    random = out.search == "random"
    if "samples" in data and not random:
        raise LifelongError(f"{source}: samples: is for search: random; remove it, or add search: random")
    if random:
        out.samples = _whole(data.get("samples"), f"{source}: samples", minimum=1, example="samples: 20")
    out.search_seed = _whole(data.get("search_seed", 0), f"{source}: search_seed", minimum=0, example="search_seed: 0")
    out.fixed = _settings(data.get("fixed"), f"{source}: fixed", base, many=False, random=False)
    out.grid = _settings(data.get("grid"), f"{source}: grid", base, many=True, random=random)
    both = set(out.fixed) & set(out.grid)
    if both:
        key = sorted(both)[0]
        raise LifelongError(f"{source}: {key} is under both fixed: and grid:; keep it in one of them")
    out.methods = _methods(data.get("methods", list(config.MAIN_METHODS)), f"{source}: methods", random)
    out.seeds = _seeds(data.get("seeds", [0]), f"{source}: seeds")
    out.orders = _order_request(data.get("orders"), f"{source}: orders")
    validation = data.get("validation")
    if validation is not None and (
        isinstance(validation, bool) or not isinstance(validation, int | float) or not 0 < validation < 1
    ):
        raise LifelongError(f"{source}: validation: {validation!r} must be a fraction between 0 and 1, e.g. 0.1")
    out.validation = None if validation is None else float(validation)
    return out


def _options() -> dict[str, config.Option]:
    return {o.name: o for o in config.options()}


def _settings(data, where: str, base: Path | None, many: bool, random: bool) -> dict[str, Any]:
    """``fixed`` (one value per setting) or ``grid`` (a list of values, or a distribution under random)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        example = "{lr: [0.01, 0.1]}" if many else "{tasks: 3, epochs: 2}"
        raise LifelongError(f"{where}: give a mapping of run settings, e.g. {example}")
    options = _options()
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        at = f"{where}.{key}"
        if name in OWN_KEYS:
            raise LifelongError(f"{at}: not a setting here; {OWN_KEYS[name]}")
        if name not in options:
            raise LifelongError(f"{at}: unknown setting; `lifelong list` shows every run option")
        opt = options[name]
        if opt.group == "method":
            raise LifelongError(
                f"{at}: {name} is a method's hyper-parameter; give it with its method, "
                f"e.g. methods: {{ewc: {{{name}: [...]}}}}"
            )
        if not many:
            out[name] = _value(opt, value, at, base)
        elif isinstance(value, dict):
            out[name] = _distribution(opt, value, at, random)
        elif isinstance(value, list) and value:
            out[name] = _distinct([_value(opt, v, at, base) for v in value], at)
        else:
            raise LifelongError(
                f"{at}: give a list of values to try, e.g. {name}: [{_example(opt)}]; one value for every run "
                "belongs under fixed:"
            )
    return out


def _methods(data, where: str, random: bool) -> dict[str, dict[str, list | Distribution]]:
    """Method names, each with the values of its hyper-parameters: a list of names, or a mapping."""
    if isinstance(data, str):
        data = [data]
    if isinstance(data, list):
        data = {name: None for name in data} if all(isinstance(n, str) for n in data) else data
    if not isinstance(data, dict) or not data:
        raise LifelongError(f"{where}: give method names, e.g. [finetune, ewc], or a mapping {{ewc: {{lam: [1, 10]}}}}")
    options = _options()
    out = {}
    for name, params in data.items():
        try:
            cls = methods.get(str(name))
        except LifelongError as e:
            raise LifelongError(f"{where}: {e}") from None
        own = [f.name for f in cls.hyperparameters()]
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise LifelongError(f"{where}.{name}: give its hyper-parameters as a mapping, e.g. {{lam: [1, 10]}}")
        out[name] = {}
        for param, value in params.items():
            key = str(param).replace("-", "_")
            at = f"{where}.{name}.{param}"
            if key not in own:
                raise LifelongError(f"{at}: not a setting of {name} (its settings: {', '.join(own) or 'none'})")
            opt = options[key]
            if isinstance(value, dict):
                out[name][key] = _distribution(opt, value, at, random)
            else:
                values = value if isinstance(value, list) else [value]
                if not values:
                    raise LifelongError(f"{at}: give at least one value, e.g. {key}: [{_example(opt)}]")
                out[name][key] = _distinct([_value(opt, v, at, None) for v in values], at)
    return out


def _value(opt: config.Option, value, where: str, base: Path | None):
    """One value of a run option, converted and checked as the command line checks it."""
    if value is None:
        raise LifelongError(f"{where}: no value; give one, e.g. {opt.name}: {_example(opt)}")
    try:
        out = opt.convert(value)
    except (TypeError, ValueError):
        raise LifelongError(
            f"{where}: {value!r} is not a valid {opt.convert.__name__}; e.g. {opt.name}: {_example(opt)}"
        ) from None
    if opt.choices and out not in opt.choices:
        shown = ", ".join(map(str, opt.choices))
        raise LifelongError(f"{where}: {out!r} is not one of: {shown}")
    values = out if isinstance(out, list) else [out]
    if isinstance(out, list) and not out:
        raise LifelongError(f"{where}: an empty list; give at least one value")
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise LifelongError(f"{where}: {value!r}: give finite numbers (no nan or inf)")
    if opt.name in config.UNIQUE_LISTS and isinstance(out, list) and len(set(out)) != len(out):
        raise LifelongError(f"{where}: {value!r} repeats a value; give each value once")
    if opt.name in config.PATH_OPTIONS and base is not None:
        out = str(base / Path(out).expanduser())
    return out


def _distinct(values: list, where: str) -> list:
    for k, v in enumerate(values):
        if v in values[:k]:
            raise LifelongError(f"{where}: {v!r} is listed twice; give each value once")
    return values


def _distribution(opt: config.Option, value: dict, where: str, random: bool) -> Distribution:
    if not random:
        raise LifelongError(f"{where}: a distribution needs search: random; under grid, list the values to try")
    if len(value) != 1 or next(iter(value)) not in ("uniform", "log_uniform"):
        raise LifelongError(f"{where}: a distribution is {{uniform: [low, high]}} or {{log_uniform: [low, high]}}")
    kind, bounds = next(iter(value.items()))
    if opt.convert not in (int, float):
        raise LifelongError(f"{where}: {opt.name} is not a number, so it cannot be drawn from a range; list its values")
    ok = (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
        and bounds[0] < bounds[1]
        and (kind == "uniform" or bounds[0] > 0)
    )
    if not ok:
        need = "0 < low < high" if kind == "log_uniform" else "low < high"
        raise LifelongError(f"{where}: {kind} needs [low, high] with {need} (got {bounds!r})")
    if opt.convert is int and math.ceil(bounds[0]) > math.floor(bounds[1]):
        raise LifelongError(f"{where}: [{bounds[0]}, {bounds[1]}] holds no whole number for {opt.name}")
    return Distribution(kind, float(bounds[0]), float(bounds[1]), whole=opt.convert is int)


def _whole(value, where: str, minimum: int, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LifelongError(f"{where}: {value!r}: give a whole number >= {minimum}, e.g. {example}")
    return value


def _seeds(value, where: str) -> list[int]:
    if isinstance(value, str) and ".." in value:  # the command line's form (config.int_list): 0..4
        try:
            value = config.int_list(value)
        except ValueError:
            raise LifelongError(
                f"{where}: {value!r} is not a range; write FIRST..LAST, e.g. 0..4, or a list [0, 1, 2]"
            ) from None
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in values):
        raise LifelongError(f"{where}: {value!r}: give whole numbers >= 0, e.g. [0, 1, 2] or 0..4")
    return _distinct(values, where)


def _order_request(value, where: str):
    """None, 'all', a number of random orders, or a list of orders (each checked later against the stream)."""
    if value is None or value == "all":
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise LifelongError(f"{where}: {value} random orders; ask for 1 or more")
        return value
    if isinstance(value, list) and value:
        out = []
        for order in value:
            if not isinstance(order, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in order):
                raise LifelongError(f"{where}: {order!r} is not a list of task numbers, e.g. [2, 0, 1]")
            out.append(tuple(order))
        return _distinct(out, where)
    raise LifelongError(f"{where}: {value!r}: give a list of orders, e.g. [[0, 1, 2], [2, 1, 0]], all, or a number")


def _example(opt: config.Option) -> str:
    """A value of ``opt`` as YAML, for messages: its default, else a plausible one."""
    if opt.choices:
        return str(opt.choices[0])
    if isinstance(opt.default, list):
        return "[" + ", ".join(map(str, opt.default)) + "]"
    if opt.default is not None and not isinstance(opt.default, bool):
        return str(opt.default)
    if opt.convert is config.boolean:
        return "true"
    return {int: "3", float: "0.1", config.int_list: "[0, 1]", config.float_list: "[0.5, 1.0]"}.get(opt.convert, "...")
