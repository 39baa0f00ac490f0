"""A run as an MLflow run, through MlflowClient (``pip install 'lifelong[mlflow]'``: mlflow-skinny, plus
SQLAlchemy and Alembic for a local ``sqlite:///`` tracking store; a full ``mlflow`` install works too).

Settings become params, the source tags, scalars metrics (sent in batches at close), the R table a CSV
artifact ``R.csv`` (fractions, full precision) and the heatmap a PNG artifact ``R.png``. An experiment
that does not exist yet is created; for a local SQLite store its artifacts go to ``mlartifacts/`` beside
the database (MLflow's own default would be ./mlruns under whatever folder the command runs in).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lifelong.errors import LifelongError, option
from lifelong.results.export import Writer, missing

BATCH = 1000  # MLflow's log_batch takes at most 1000 metrics (and 100 params) per call
PARAM_BATCH = 100


class MlflowWriter(Writer):
    def __init__(self, tracking_uri: str, experiment: str, run_name: str):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing("mlflow", "mlflow", "exporting to MLflow") from None
        self.uri = tracking_uri
        self._metrics: list = []
        with self._mlflow():
            self._client = MlflowClient(tracking_uri=tracking_uri)
            found = self._client.get_experiment_by_name(experiment)
            if found is not None:
                experiment_id = found.experiment_id
            else:
                experiment_id = self._client.create_experiment(experiment, artifact_location=_artifacts(tracking_uri))
            self._run = self._client.create_run(experiment_id, run_name=run_name).info.run_id
        self.where = f"{tracking_uri} experiment {experiment!r} run {self._run}"

    def params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        with self._mlflow():
            for start in range(0, len(items), PARAM_BATCH):
                self._client.log_batch(self._run, params=items[start : start + PARAM_BATCH])

    def tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        with self._mlflow():
            self._client.log_batch(self._run, tags=[RunTag(k, v) for k, v in tags.items()])

    def scalar(self, tag: str, value: float, step: int) -> None:
        from mlflow.entities import Metric

        self._metrics.append(Metric(tag, float(value), int(time.time() * 1000), int(step)))

    def table(self, name: str, rows: list[str], columns: list[str], values: np.ndarray) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["", *columns])
        w.writerows([r, *(repr(float(v)) for v in row)] for r, row in zip(rows, values, strict=True))
        with self._mlflow():
            self._client.log_text(self._run, buf.getvalue(), f"{name}.csv")

    def image(self, name: str, png: Path) -> None:
        with self._mlflow():
            if png.name != f"{name}.png":
                png = png.rename(png.with_name(f"{name}.png"))
            self._client.log_artifact(self._run, str(png))

    def close(self, failed: bool = False) -> None:
        with self._mlflow():
            for start in range(0, len(self._metrics), BATCH):
                self._client.log_batch(self._run, metrics=self._metrics[start : start + BATCH])
            self._client.set_terminated(self._run, "FAILED" if failed else "FINISHED")

    @contextlib.contextmanager
    def _mlflow(self) -> Iterator[None]:
        """MLflow's own errors as one line; its INFO logs (database migrations) and its libraries'
        deprecation warnings kept off the user's terminal."""
        from mlflow.exceptions import MlflowException

        loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
        levels = [lg.level for lg in loggers]
        try:
            for lg in loggers:
                lg.setLevel(logging.WARNING)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                yield
        except ModuleNotFoundError as e:  # e.g. alembic, for a sqlite:/// store with mlflow-skinny alone
            raise LifelongError(
                f"MLflow's store at {self.uri} needs the {e.name} package; install it with: "
                "pip install 'lifelong[mlflow]'"
            ) from None
        except MlflowException as e:
            first = str(e.message).strip().splitlines()[0] if str(e.message).strip() else type(e).__name__
            raise LifelongError(f"MLflow at {self.uri} failed: {first}; check {option('tracking_uri')}") from None
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _artifacts(tracking_uri: str) -> str | None:
    """For a local SQLite store, a folder beside the database; else the tracking server decides."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    return (database.resolve().parent / "mlartifacts").as_uri()
