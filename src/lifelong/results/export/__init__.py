"""Recorded runs, written to TensorBoard or MLflow: the same content through one small interface.

    export.export(store, rows, "tensorboard", "lifelong-runs/tensorboard")    # run-0007-ewc-seed0/, ...
    export.export(store, rows, "mlflow", "sqlite:///lifelong-runs/mlflow.db")  # one MLflow run per run

What a run gives, whichever the back end (accuracies are fractions in [0, 1], as in result.json):

- params: every setting of the run (select.settings: method, lr, lam, seed, ...), as strings;
- tags: where it comes from (the store, the run id, its group, code version, start time);
- scalars ``accuracy/<task>`` at step i = R[i, task] (i tasks learned; step 0: at initialisation), the
  same under every other evaluation view (``accuracy_class-IL/<task>``), per-epoch curves
  (``epoch/accuracy/<task>`` with --eval-every-epoch, ``epoch/loss`` always; step = epochs trained),
  ``train_s`` per task, and the metrics (``metrics/acc``, ``metrics/bwt``, ...) at the last step;
- a table ``R`` (the accuracy matrix: Markdown text in TensorBoard, a CSV artifact in MLflow) and an
  image ``R`` (its heatmap, as the report draws it).

The back ends are optional extras, imported only when used; a missing one is a one-line error that
gives the pip command. Exporting never replaces anything: a TensorBoard folder that already holds files
gets a numbered sibling, and each export is a new MLflow run.
"""

from __future__ import annotations

import abc
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.data.task import SCENARIO_NAMES
from lifelong.errors import LifelongError
from lifelong.result import Result
from lifelong.results.select import settings, value_text
from lifelong.results.store import Store

TARGETS = ("tensorboard", "mlflow")
TAG_CHARACTERS = re.compile(r"[^A-Za-z0-9_.\- /]")  # what both back ends accept in a name


class Writer(abc.ABC):
    """Where one run goes. ``where``: how to find it afterwards (a folder, an MLflow run id)."""

    where: str = ""

    @abc.abstractmethod
    def params(self, params: dict[str, str]) -> None:
        """The run's settings."""

    @abc.abstractmethod
    def tags(self, tags: dict[str, str]) -> None:
        """Where the run comes from."""

    @abc.abstractmethod
    def scalar(self, tag: str, value: float, step: int) -> None:
        """One point of a curve."""

    @abc.abstractmethod
    def table(self, name: str, rows: list[str], columns: list[str], values: np.ndarray) -> None:
        """A matrix with named rows and columns (fractions)."""

    @abc.abstractmethod
    def image(self, name: str, png: Path) -> None:
        """A figure, as a PNG file."""

    @abc.abstractmethod
    def close(self, failed: bool = False) -> None:
        """Flush and end the run (marked failed when the export stopped part-way)."""


def export(
    store: Store, rows: Sequence[dict[str, Any]], to: str, where: str | None = None, experiment: str = "lifelong"
) -> list[str]:
    """Write every run of ``rows`` (finished store rows) to ``to`` ('tensorboard' or 'mlflow'). ``where``:
    the TensorBoard root folder (default: ``tensorboard/`` beside the store), or the MLflow tracking URI
    (default: $MLFLOW_TRACKING_URI, else ``sqlite:///<store folder>/mlflow.db``). Returns, per run, where it
    went."""
    if to not in TARGETS:
        raise LifelongError(f"cannot export to {to!r}; choose one of {', '.join(TARGETS)}")
    out = []
    for row in rows:
        result = store.result(row["id"])
        writer = _open(to, store, row, where, experiment)
        try:
            write_run(writer, row, result, store)
        except BaseException:
            writer.close(failed=True)
            raise
        writer.close()
        out.append(writer.where)
    return out


def default_location(to: str, store: Store) -> str:
    """Where ``export`` writes when not told: beside the store (MLflow: $MLFLOW_TRACKING_URI first)."""
    if to == "tensorboard":
        return str(store.home / "tensorboard")
    import os

    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///" + str(store.home.resolve() / "mlflow.db")


def write_run(writer: Writer, row: dict[str, Any], result: Result, store: Store | None = None) -> None:
    """Everything one run gives (see the module's docstring), through ``writer``."""
    writer.params({k: value_text(v) for k, v in settings(row).items() if k != "group"})
    source = {"store": store.location if store else "", "run_id": row["id"], "group": row.get("group")}
    source |= {k: row.get(k) for k in ("seed", "code_version", "created", "status")}
    writer.tags({f"lifelong.{k}": value_text(v) for k, v in source.items()})
    names = [_tag(n) for n in result.task_names]
    for view, R in [(result.scenario, result.R)] + [(v, R) for v, R in result.views.items() if v != result.scenario]:
        prefix = "accuracy" if view == result.scenario else f"accuracy_{SCENARIO_NAMES.get(view, view)}"
        for i, accuracies in enumerate(np.asarray(R, dtype=float)):
            for name, value in zip(names, accuracies, strict=True):
                writer.scalar(f"{prefix}/{name}", value, i)
    for k, point in enumerate(result.curves, start=1):
        for name, value in zip(names, point["accuracy"], strict=True):
            writer.scalar(f"epoch/accuracy/{name}", value, k)
    for k, loss in enumerate((x for stage in result.losses for x in stage), start=1):
        writer.scalar("epoch/loss", loss, k)
    for i, seconds in enumerate(result.timings.get("train_s", []), start=1):
        writer.scalar("train_s", seconds, i)
    last = len(np.asarray(result.R)) - 1
    for key, value in result.metrics().items():
        writer.scalar(f"metrics/{key}", value, last)
    rows = ["init"] + [f"after {n}" for n in result.task_names]
    writer.table("R", rows, list(result.task_names), np.asarray(result.R, dtype=float))
    with tempfile.TemporaryDirectory() as tmp:
        writer.image("R", _heatmap(result, row, Path(tmp) / "R.png"))


def _open(to: str, store: Store, row: dict[str, Any], where: str | None, experiment: str) -> Writer:
    where = where or default_location(to, store)
    spec = (row.get("config") or {}).get("method_spec") or row.get("method")
    if to == "tensorboard":
        from lifelong.results.export.tensorboard_writer import TensorBoardWriter

        # TensorBoard lists runs by folder: the run's own folder name, then what it ran
        name = f"{Path(row['folder']).name}-{spec}-seed{row.get('seed')}"
        return TensorBoardWriter(_free_folder(Path(where), re.sub(r"[^A-Za-z0-9._=-]+", "_", name)))
    from lifelong.results.export.mlflow_writer import MlflowWriter

    return MlflowWriter(where, experiment, f"{spec} seed {row.get('seed')} (run {row['id']})")


def _free_folder(root: Path, name: str) -> Path:
    """root/name, or root/name-2, -3... when that folder already holds files (never write into another
    export's events: TensorBoard would draw both as one run)."""
    for k in range(1, 1000):
        path = root / (name if k == 1 else f"{name}-{k}")
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            return path
    raise LifelongError(f"{root / name} and 998 variants of it exist; move old exports aside")


def _heatmap(result: Result, row: dict[str, Any], path: Path) -> Path:
    from lifelong.results import report

    label = (row.get("config") or {}).get("method_spec") or result.method
    entry = report._Entry(result.method, {}, [result], f"{label} (run {row['id']})")
    return report._plot_heatmap(entry, path)


def _tag(name: str) -> str:
    return TAG_CHARACTERS.sub("_", str(name))


def missing(package: str, extra: str, what: str) -> LifelongError:
    """The one-line error for an optional extra that is not installed."""
    return LifelongError(f"{what} needs the {package} package; install it with: pip install 'lifelong[{extra}]'")
