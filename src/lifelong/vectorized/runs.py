"""`lifelong run --seeds 0..9 --vectorize`: the seeds of one method of an Experiment trained at once, and
recorded in the store as S ordinary runs, each with its seed, its config and its R, as
``Experiment.execute`` records a run: started before training, its rows of R written as each task ends,
then finished, failed (a diverged seed, with its task and epoch) or interrupted."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lifelong.errors import LifelongError, warn
from lifelong.result import Result
from lifelong.train import Settings
from lifelong.vectorized import support
from lifelong.vectorized.loop import fit_seeds


def check(exp) -> None:
    """Refuse, before any training or record, what vectorised seeds cannot train."""
    from lifelong.experiment import build_model

    for spec in exp.method_names:
        support.check_method(exp.method(spec))
    support.check_model(build_model(exp.stream(exp.seeds[0]), exp.cfg))


def execute_seeds(exp, spec: str, store=None, group: str | None = None, progress: Callable | None = None):
    """Every seed of ``exp`` with method ``spec`` as one vectorised model. Returns, per seed in order,
    (seed, run id or None, Result or the DivergedError of a seed that diverged)."""
    from lifelong.experiment import IMPORTANCE_PLOT, build_model

    seeds = exp.seeds
    streams = [exp.stream(seed) for seed in seeds]  # all held at once: the seeds train together
    models = []
    for seed, stream in zip(seeds, streams, strict=True):
        torch.manual_seed(seed)  # the initialisation is part of what the seed fixes (as execute())
        models.append(build_model(stream, exp.cfg))
    methods = [exp.method(spec) for _ in seeds]
    configs = [exp.config(seed, spec) for seed in seeds]
    ids = [store.start(c, seed, group) if store is not None else None for c, seed in zip(configs, seeds, strict=True)]

    def record_row(k: int, done: int, n_stages: int, rows: dict) -> None:
        stream = streams[k]
        try:
            store.progress(ids[k], rows[stream.scenario], [t.name for t in stream.tasks], n_stages)
        except LifelongError as e:  # e.g. the store stayed locked: the training itself is not lost
            warn(f"could not record the progress of run {ids[k]} ({e}); training goes on")

    settings = Settings(**{**exp.train_options, "seed": seeds[0]})
    try:
        results = fit_seeds(
            streams, models, methods, seeds, settings, progress, record_row if store is not None else None
        )
    except KeyboardInterrupt:
        if store is not None:
            for run_id in ids:
                store.interrupt(run_id)
        raise
    except BaseException as e:
        if store is not None:
            for run_id in ids:
                store.fail(run_id, str(e) or type(e).__name__)
        raise
    out = []
    for k, (seed, run_id, result) in enumerate(zip(seeds, ids, results, strict=True)):
        if isinstance(result, Result):
            result.config = {**configs[k], **result.config}
            if store is not None:
                store.finish(run_id, result)
                if hasattr(methods[k], "importance"):  # regularisers: which weights they guard (as execute())
                    from lifelong.results import plot_importance

                    title = f"{spec}: importance after {len(streams[k])} tasks (run {run_id})"
                    plot_importance(methods[k].importance(), store.folder(run_id) / IMPORTANCE_PLOT, title)
        elif store is not None:
            store.fail(run_id, str(result))
        out.append((seed, run_id, result))
    return out
