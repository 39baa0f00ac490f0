"""Task affinity: for every ordered pair of tasks (i, j), what learning i first does to j, and what
learning j next does to i.

For a source task i and a target task j ≠ i (accuracies on the tasks' test sets, in the stream's
scenario):

- ``scratch[j]``: j learned alone, from the initialisation every run of the study starts from;
- ``after[i, j]``: j after learning i, then fine-tuning the same network on j;
- ``retained[i, j]``: i after the same two steps;
- forward gain ``gain[i, j] = after[i, j] - scratch[j]`` (> 0: i helps j);
- backward loss ``forgetting[i, j] = scratch[i] - retained[i, j]`` (> 0: learning j makes the network
  forget i).

This is taskonomy's transfer measurement (Zamir et al. 2018, "Taskonomy: Disentangling Task Transfer
Learning", CVPR, Sec. 3.2) with the whole network fine-tuned instead of a readout on a frozen encoder, as
in continual learning; and with the price of transfer (forgetting) beside its gain. The training is plain
fine-tuning (the stream's scenario, the config's training settings): it measures how the tasks relate,
not what a method does about it (the order study measures that).

Cost: one run per source task i trains i from scratch, which is also ``scratch[i]``, then fine-tunes a
copy on each of the T - 1 other tasks: T + T(T-1) = T² trainings of one task each, in T units of work
(:func:`source_run`, a plain function of (config, source, seed)) that run in parallel.

Beside the raw gains: taskonomy's pairwise normalisation (ahp.py) from per-sample win rates, and a
clustering of the tasks (taxonomy.py).
"""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F

from lifelong.data.task import Stream
from lifelong.errors import LifelongError, option
from lifelong.methods.baselines import Finetune
from lifelong.studies import ahp, pool
from lifelong.train import Settings, fit

DEFINITIONS = {
    "scratch": "scratch[j] = accuracy on task j after learning j alone (from the shared initialisation)",
    "after": "after[i,j] = accuracy on task j after learning task i, then fine-tuning on j",
    "retained": "retained[i,j] = accuracy on task i after learning i, then fine-tuning on j",
    "gain": "forward gain[i,j] = after[i,j] - scratch[j] (> 0: learning i first helps j)",
    "forgetting": "backward loss[i,j] = scratch[i] - retained[i,j] (> 0: learning j next makes i forgotten)",
    "ahp": "AHP[i,j] = taskonomy's normalised affinity of source i for target j: principal eigenvector of the "
    "ratios of per-sample win rates between sources (Zamir et al. 2018, Sec. 3.3); each column sums to 1",
}


def substream(stream: Stream, tasks: list[int]) -> Stream:
    """The tasks ``tasks`` of ``stream`` (in that order) as a stream of their own. A task keeps its output
    units (so transfer in task- and class-IL is between the same heads as in the whole stream); its id
    becomes its position, as fit() and the masks index tasks by position."""
    picked = [dataclasses.replace(stream.tasks[t], id=k) for k, t in enumerate(tasks)]
    return dataclasses.replace(stream, tasks=picked)


@dataclasses.dataclass
class FinetuneLast(Finetune):
    """Fine-tuning on the stream's last task only, from a network that learned the earlier ones already:
    fit() then masks and evaluates exactly as at that task of a sequential run (in class-IL the units of
    the earlier tasks stay candidates)."""

    def stages(self, n_tasks: int) -> list[list[int]]:
        return [[n_tasks - 1]]


@torch.no_grad()
def _losses(model: torch.nn.Module, pair: Stream) -> np.ndarray:
    """The per-sample loss on the pair's second (target) task's test set, under the scenario's mask
    after both tasks (as fit() evaluates): what taskonomy's win rates compare."""
    was = model.training
    model.eval()
    target = pair.tasks[1]
    logits = torch.cat([model(x) for x in target.test_x.split(4096)])
    table = pair.eval_masks(1)[pair.scenario]
    if table is not None:
        logits = logits + table[target.id]
    model.train(was)
    return F.cross_entropy(logits, target.test_y, reduction="none").numpy()


def transfer_from(stream: Stream, source: int, model: torch.nn.Module, settings: Settings) -> dict:
    """Learn task ``source`` from ``model`` (its initialisation), then fine-tune a copy on each other
    task. Returns the source's accuracy alone and, per target, the accuracies and the target's per-sample
    test losses (for the win rates). ``model`` ends trained on the source."""
    solo = fit(substream(stream, [source]), model, Finetune(), settings)
    record = {"source": source, "scratch": float(solo.R[1, 0]), "targets": {}, "train_s": solo.timings["train_s"][0]}
    for target in range(len(stream)):
        if target == source:
            continue
        tuned, pair = copy.deepcopy(model), substream(stream, [source, target])
        run = fit(pair, tuned, FinetuneLast(), settings)  # R: before (row 0) and after fine-tuning (row 2)
        record["targets"][target] = {
            "after": float(run.R[2, 1]),
            "retained": float(run.R[2, 0]),
            "zero_shot": float(run.R[0, 1]),  # the source's network on the target before fine-tuning
            "losses": _losses(tuned, pair).tolist(),
        }
        record["train_s"] += run.timings["train_s"][0]
    return record


def source_run(cfg: dict, source: int, seed: int) -> dict:
    """The unit of work: build ``cfg``'s stream and model (as `lifelong run` does, from ``seed``), then
    transfer_from(source). A plain function of (config, source, seed) for worker processes."""
    from lifelong.experiment import Experiment, build_model

    exp = Experiment({**cfg, "method": ["finetune"], "seed": seed, "seeds": None})
    stream = exp.stream(seed)
    settings = Settings(**{**exp.train_options, "seed": seed})
    torch.manual_seed(seed)  # the same initialisation for every source, as in the stream's own runs
    model = build_model(stream, exp.cfg)
    return transfer_from(stream, source, model, settings)


@dataclasses.dataclass
class Affinity:
    """The T x T matrices of a study (rows: source i, columns: target j; the diagonal is nan)."""

    task_names: list[str]
    scenario: str
    scratch: np.ndarray  # (T,)
    after: np.ndarray
    retained: np.ndarray
    zero_shot: np.ndarray
    wins: list[np.ndarray]  # per target j: W[a, b] = share of j's test samples where source a beats b
    trainings: int = 0
    wall_s: float = 0.0
    train_s: float = 0.0

    @property
    def gain(self) -> np.ndarray:
        return self.after - self.scratch[None, :]

    @property
    def forgetting(self) -> np.ndarray:
        return self.scratch[:, None] - self.retained

    @property
    def ahp(self) -> np.ndarray:
        """AHP[i, j]: the normalised affinity of source i for target j (each column sums to 1 over the
        sources i ≠ j; nan on the diagonal)."""
        T = len(self.task_names)
        out = np.full((T, T), np.nan)
        for j in range(T):
            sources = [i for i in range(T) if i != j]
            out[sources, j] = ahp.priorities(self.wins[j][np.ix_(sources, sources)])
        return out

    def to_dict(self) -> dict:
        def listed(a):
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(a)]

        return {
            "task_names": self.task_names,
            "scenario": self.scenario,
            "scratch": self.scratch.tolist(),
            **{k: listed(getattr(self, k)) for k in ("after", "retained", "zero_shot", "gain", "forgetting", "ahp")},
            "trainings": self.trainings,
            "wall_s": self.wall_s,
            "train_s": self.train_s,
            "definitions": DEFINITIONS,
        }


def combine(records: list[dict], task_names: list[str], scenario: str) -> Affinity:
    """The matrices from the T source records (one per source task, in any order)."""
    T = len(task_names)
    if sorted(r["source"] for r in records) != list(range(T)):
        raise LifelongError(f"an affinity study needs one record per source task 0..{T - 1}")
    scratch = np.zeros(T)
    after, retained, zero_shot = (np.full((T, T), np.nan) for _ in range(3))
    losses: dict[tuple[int, int], np.ndarray] = {}
    for r in records:
        i = r["source"]
        scratch[i] = r["scratch"]
        for j, t in r["targets"].items():
            j = int(j)  # JSON keys are strings
            after[i, j], retained[i, j], zero_shot[i, j] = t["after"], t["retained"], t["zero_shot"]
            losses[i, j] = np.asarray(t["losses"])
    wins = []
    for j in range(T):
        W = np.full((T, T), 0.5)  # a source ties with itself; rows/columns of j stay unused
        for a in range(T):
            for b in range(T):
                if a != b and j not in (a, b):
                    W[a, b] = ahp.win_rate(losses[a, j], losses[b, j])
        wins.append(W)
    return Affinity(
        task_names=list(task_names),
        scenario=scenario,
        scratch=scratch,
        after=after,
        retained=retained,
        zero_shot=zero_shot,
        wins=wins,
        trainings=T * T,
        train_s=float(sum(r["train_s"] for r in records)),
    )


def measure(stream: Stream, make_model, settings: Settings | None = None, **options) -> Affinity:
    """An affinity study of ``stream`` in this process. ``make_model()`` returns the initial network
    (called once per source task: every source starts from the same initialisation only if it does so,
    e.g. by seeding); ``settings`` or keyword settings (iterations=, lr=, ...) as for fit()."""
    if settings is not None and options:
        raise LifelongError("give measure() either settings= or settings as keywords, not both")
    if len(stream) < 2:
        raise LifelongError(f"an affinity study needs at least 2 tasks (got {len(stream)}); set {option('tasks')}")
    settings = settings or Settings(**options)
    t0 = time.perf_counter()
    records = [transfer_from(stream, i, make_model(), settings) for i in range(len(stream))]
    out = combine(records, [t.name for t in stream.tasks], stream.scenario)
    out.wall_s = time.perf_counter() - t0
    return out


def study(cfg: dict, workers: int | None = None, done=None) -> Affinity:
    """The affinity study of ``cfg``'s stream (its first seed) in ``workers`` processes: T units of work,
    T² trainings. The config is checked once here, before any worker starts."""
    from lifelong.experiment import Experiment

    if list(cfg["method"]) != ["finetune"]:
        raise LifelongError(
            f"an affinity study measures plain fine-tuning between pairs of tasks; leave out {option('method')} "
            "(the order study compares methods)"
        )
    workers = pool.check_workers(workers)
    seed = (cfg.get("seeds") or [cfg["seed"]])[0]
    cfg = {**cfg, "seed": seed, "seeds": None}
    exp = Experiment(cfg)  # checks every setting and builds the stream once
    stream = exp.stream(seed)
    if len(stream) < 2:
        raise LifelongError(f"an affinity study needs at least 2 tasks (got {len(stream)}); set {option('tasks')}")
    t0 = time.perf_counter()
    records = pool.run(source_run, [(cfg, i, seed) for i in range(len(stream))], workers, done)
    out = combine(records, [t.name for t in stream.tasks], stream.scenario)
    out.wall_s = time.perf_counter() - t0
    return out
