"""Does the order of the tasks matter? One stream, one or more methods, several task orders.

The lecture's closing slide: learning task 2 then task 1 can forget far less than task 1 then task 2.
An order study runs the same stream (same tasks, same seed) under several orders and reports how ACC,
BWT and FWT vary with the order. Which orders:

- ``all``: every permutation of 0..T-1 (T! runs per method and seed; refused beyond ``MAX_ALL``),
- ``N`` random orders: N distinct permutations drawn from ``numpy.random.default_rng(seed)``, so the same
  seed gives the same orders,
- orders the user lists, e.g. ``"0,1,2;2,1,0"``: each must list every task of 0..T-1 once.

An order is presented through the ``task_order`` setting of the stream builders, so task ``order[k]`` of
the stream in its natural order is the k-th task learned; a result's R has its columns in the order
learned, and its task names say which task each column is.

The unit of work is :func:`run_order`, a plain function of (config, order, seed) → record, run in worker
processes by :mod:`lifelong.studies.pool`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import numpy as np

from lifelong import metrics
from lifelong.errors import LifelongError, option, warn
from lifelong.studies import pool

MAX_ALL = 720  # all orders of 6 tasks; more is a long study: ask for N random orders instead
DEFAULT_RANDOM = 20  # random orders when T! > DEFAULT_ALL_UP_TO! (and the curriculum's comparison set)
DEFAULT_ALL_UP_TO = 4  # all 24 orders of 4 tasks by default; beyond, DEFAULT_RANDOM random ones

Order = tuple[int, ...]


def all_orders(n_tasks: int) -> list[Order]:
    """Every permutation of 0..T-1, the natural order first (lexicographic)."""
    _check_tasks(n_tasks)
    if math.factorial(n_tasks) > MAX_ALL:
        raise LifelongError(
            f"all orders of {n_tasks} tasks are {math.factorial(n_tasks)} runs per method and seed; "
            f"give a number of random orders instead, e.g. {option('orders')} {DEFAULT_RANDOM}"
        )
    return list(itertools.permutations(range(n_tasks)))


def random_orders(n_tasks: int, n: int, seed: int = 0, exclude: list[Order] = ()) -> list[Order]:
    """``n`` distinct random permutations of 0..T-1 (none of ``exclude``), reproducible from ``seed``."""
    _check_tasks(n_tasks)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LifelongError(f"{option('orders')} needs a number of random orders >= 1 (got {n!r})")
    exclude = {tuple(o) for o in exclude}
    available = math.factorial(n_tasks) - len(exclude)
    if n > available:
        raise LifelongError(
            f"{n_tasks} tasks have only {available} distinct orders{' besides the excluded' * bool(exclude)}, "
            f"fewer than the {n} asked for; use {option('orders')} all or ask for fewer"
        )
    rng = np.random.default_rng(seed)
    out: list[Order] = []
    seen = set(exclude)
    while len(out) < n:  # rejection: fine while n is well below T! (else all_orders is the better request)
        order = tuple(int(t) for t in rng.permutation(n_tasks))
        if order not in seen:
            seen.add(order)
            out.append(order)
    return out


def check_order(order, n_tasks: int) -> Order:
    """An order must list each task of 0..T-1 exactly once."""
    try:
        out = tuple(int(t) for t in order)
    except (TypeError, ValueError):
        raise LifelongError(f"{option('orders')}: {order!r} is not a list of task numbers, e.g. 2,0,1") from None
    if sorted(out) != list(range(n_tasks)):
        raise LifelongError(
            f"{option('orders')}: {','.join(map(str, out))} is not an order of the {n_tasks} tasks; "
            f"list each of 0..{n_tasks - 1} once, e.g. {','.join(map(str, reversed(range(n_tasks))))}"
        )
    return out


def parse_orders(text: str | None, n_tasks: int, seed: int = 0) -> list[Order]:
    """What ``--orders`` asks for: ``all``, a number N of random orders, or orders separated by ';'
    (``"0,1,2;2,1,0"``). None: all orders for T <= DEFAULT_ALL_UP_TO, else DEFAULT_RANDOM random ones."""
    _check_tasks(n_tasks)
    if text is None:
        return all_orders(n_tasks) if n_tasks <= DEFAULT_ALL_UP_TO else random_orders(n_tasks, DEFAULT_RANDOM, seed)
    text = str(text).strip()
    if text.lower() == "all":
        return all_orders(n_tasks)
    if text.isdigit():
        return random_orders(n_tasks, int(text), seed)
    parts = [p for p in text.split(";") if p.strip()]
    if not parts:
        raise LifelongError(f"{option('orders')} needs all, a number, or orders such as 0,1,2;2,1,0 (got {text!r})")
    orders = [check_order([t for t in p.split(",") if t.strip()], n_tasks) for p in parts]
    repeated = next((o for k, o in enumerate(orders) if o in orders[:k]), None)
    if repeated is not None:
        raise LifelongError(f"{option('orders')} lists {','.join(map(str, repeated))} twice; give each order once")
    return orders


def comparison_orders(text: str | None, n_tasks: int, proposed: Order, seed: int = 0) -> list[Order]:
    """The orders a proposed order (a curriculum) is ranked against: ``--orders`` N (default
    DEFAULT_RANDOM) random orders other than ``proposed``, or every other order where fewer exist (with a
    warning: the rank is then among all orders), or ``all``, or the orders listed."""
    text = None if text is None else str(text).strip()
    if text is not None and not text.isdigit():
        return [o for o in parse_orders(text, n_tasks, seed) if o != tuple(proposed)]
    n = DEFAULT_RANDOM if text is None else int(text)
    others = math.factorial(n_tasks) - 1
    if n >= others:
        if n > others:
            warn(f"{n_tasks} tasks have only {others} orders besides the proposed one; it is ranked among all of them")
        return [o for o in itertools.permutations(range(n_tasks)) if o != tuple(proposed)]
    return random_orders(n_tasks, n, seed, exclude=[tuple(proposed)])


def _check_tasks(n_tasks: int) -> None:
    if n_tasks < 2:
        raise LifelongError(
            f"an order study needs at least 2 tasks (got {n_tasks}); set {option('tasks')} to 2 or more"
        )


def label(order: Order) -> str:
    """An order as the user writes it: ``2,0,1``."""
    return ",".join(map(str, order))


# -- the unit of work --------------------------------------------------------------------------------


def run_order(cfg: dict, order: Order, seed: int) -> dict:
    """Train and evaluate ``cfg``'s single method on its stream presented in ``order``, with ``seed``.
    A resolved config (config.resolve) with one method; returns a JSON-able record. A run that diverges
    or is refused is a record with its ``error``, so that one bad order does not end the study."""
    from lifelong.experiment import Experiment

    if len(cfg["method"]) != 1:
        raise LifelongError(f"run_order runs one method; give a config with a single {option('method')}")
    t0 = time.perf_counter()
    record = {"method": cfg["method"][0], "order": list(order), "seed": seed}
    try:
        exp = Experiment({**cfg, "task_order": list(order), "seed": seed, "seeds": None})
        _, result = exp.execute(seed, exp.method_names[0])
    except LifelongError as e:
        return {**record, "error": str(e), "wall_s": time.perf_counter() - t0}
    sequential = result.sequential  # joint training: no backward or forward transfer
    return {
        **record,
        "task_names": list(result.task_names),
        "scenario": result.scenario,
        "R": np.asarray(result.R).tolist(),
        "acc": result.acc,
        "bwt": result.bwt if sequential else float("nan"),
        "fwt": result.fwt if sequential else float("nan"),
        "train_s": float(sum(result.timings["train_s"])),
        "wall_s": time.perf_counter() - t0,
    }


# -- a study -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class OrderStudy:
    """The records of every (method, order, seed), and what they say per method."""

    benchmark: str
    scenario: str
    task_names: list[str]  # in the stream's natural order: order k means task_names[k]
    methods: list[str]
    orders: list[Order]
    seeds: list[int]
    records: list[dict]
    wall_s: float = 0.0
    workers: int = 1
    curriculum: Order | None = None  # the proposed order, when the study checks one

    def runs(self, method: str, order: Order) -> list[dict]:
        return [r for r in self.records if r["method"] == method and tuple(r["order"]) == tuple(order)]

    def finished(self, method: str, order: Order) -> list[dict]:
        return [r for r in self.runs(method, order) if "error" not in r]

    def scores(self, method: str, key: str) -> dict[Order, float]:
        """Each order's metric ``key`` (acc, bwt, fwt) for ``method``, mean over the seeds that finished."""
        out = {}
        for order in self.orders:
            done = [r[key] for r in self.finished(method, order)]
            if done:
                out[order] = float(np.mean(done))
        return out

    def R(self, method: str, order: Order) -> np.ndarray:
        """The mean over seeds of R for ``method`` in ``order`` (columns in the order learned)."""
        return np.mean([r["R"] for r in self.finished(method, order)], axis=0)

    def spread(self, method: str) -> dict[str, dict[str, float]]:
        """Per metric: mean, sd (ddof=1), min, max and max - min over orders."""
        out = {}
        for key in ("acc", "bwt", "fwt"):
            v = np.array([x for x in self.scores(method, key).values() if math.isfinite(x)])
            if not len(v):
                out[key] = dict.fromkeys(("mean", "sd", "min", "max", "spread"), float("nan"))
                continue
            sd = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
            out[key] = {"mean": float(v.mean()), "sd": sd, "min": float(v.min()), "max": float(v.max())}
            out[key]["spread"] = out[key]["max"] - out[key]["min"]
        return out

    def best_worst(self, method: str, key: str = "acc") -> tuple[Order, Order] | None:
        """The orders with the highest and the lowest ``key`` (first of equals in the study's order)."""
        scores = self.scores(method, key)
        if not scores:
            return None
        return max(scores, key=scores.get), min(scores, key=scores.get)

    def rank(self, method: str, order: Order, key: str = "acc") -> tuple[int, int]:
        """(rank, n): 1 + the number of orders with a strictly higher ``key``, among the n that finished."""
        scores = self.scores(method, key)
        if order not in scores:
            raise LifelongError(f"order {label(order)} has no finished run of {method}, so it has no rank")
        return 1 + sum(v > scores[order] for v in scores.values()), len(scores)

    def names(self, order: Order) -> list[str]:
        return [self.task_names[t] for t in order]

    def errors(self) -> list[dict]:
        return [r for r in self.records if "error" in r]

    def to_dict(self) -> dict:
        return {
            "benchmark": self.benchmark,
            "scenario": self.scenario,
            "task_names": self.task_names,
            "methods": self.methods,
            "orders": [list(o) for o in self.orders],
            "seeds": self.seeds,
            "curriculum": list(self.curriculum) if self.curriculum else None,
            "wall_s": self.wall_s,
            "workers": self.workers,
            "definitions": {k: metrics.DEFINITIONS[k] for k in ("acc", "bwt", "fwt")},
            "records": self.records,
        }


def study(
    cfg: dict,
    orders: list[Order] | str | None = None,
    workers: int | None = None,
    curriculum: Order | None = None,
    done=None,
) -> OrderStudy:
    """Every method of ``cfg`` under every order, for every seed of ``cfg``, in ``workers`` processes
    (default: the cores available). ``orders``: a list, or ``--orders``' text (parse_orders). The config is
    checked here, once, before any worker starts (a bad method or option is one error, not one per run)."""
    from lifelong.experiment import Experiment

    if cfg.get("task_order") is not None:
        raise LifelongError(f"an order study chooses the orders itself; give them with {option('orders')}")
    workers = pool.check_workers(workers)
    seeds = list(cfg["seeds"]) if cfg.get("seeds") else [cfg["seed"]]
    exp = Experiment({**cfg, "seeds": None, "seed": seeds[0]})  # checks every setting and builds the stream once
    stream = exp.stream(seeds[0])
    n_tasks = len(stream)
    if curriculum is not None:
        curriculum = check_order(curriculum, n_tasks)
        if orders is None or isinstance(orders, str):
            orders = comparison_orders(orders, n_tasks, curriculum, seeds[0])
        orders = [curriculum] + [check_order(o, n_tasks) for o in orders if tuple(o) != curriculum]
    elif orders is None or isinstance(orders, str):
        orders = parse_orders(orders, n_tasks, seeds[0])
    else:
        orders = [check_order(o, n_tasks) for o in orders]
    jobs = [({**cfg, "method": [spec]}, order, seed) for spec in exp.method_names for order in orders for seed in seeds]
    t0 = time.perf_counter()
    records = pool.run(run_order, jobs, workers, done)
    return OrderStudy(
        benchmark=stream.name,
        scenario=stream.scenario,
        task_names=[t.name for t in stream.tasks],
        methods=list(exp.method_names),
        orders=orders,
        seeds=seeds,
        records=records,
        wall_s=time.perf_counter() - t0,
        workers=min(workers, len(jobs)),
        curriculum=curriculum,
    )
