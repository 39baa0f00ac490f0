"""A run as a TensorBoard event file, written by torch.utils.tensorboard (which needs the ``tensorboard``
package: ``pip install 'lifelong[tensorboard]'``).

Scalars become TensorBoard's curves; the R table is Markdown text (the Text tab); the heatmap an image;
the settings a Markdown table and, at close, an HParams summary (the settings against the final
metrics), so that TensorBoard's HParams tab lists several exported runs side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lifelong.errors import LifelongError
from lifelong.results.export import Writer, missing

METRIC_PREFIX = "metrics/"


class TensorBoardWriter(Writer):
    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing("tensorboard", "tensorboard", "exporting to TensorBoard") from None
        try:
            self._writer = SummaryWriter(log_dir=str(log_dir))
        except OSError as e:
            raise LifelongError(f"cannot write to {log_dir} ({e.strerror or e}); give a writable --dir") from None
        self.where = str(log_dir)
        self._params: dict[str, str] = {}
        self._metrics: dict[str, float] = {}

    def params(self, params: dict[str, str]) -> None:
        self._params = dict(params)
        rows = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self._writer.add_text("settings", "| setting | value |\n|---|---|\n" + rows, 0)

    def tags(self, tags: dict[str, str]) -> None:
        self._writer.add_text("source", "\n".join(f"- {k}: {v}" for k, v in tags.items()), 0)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.add_scalar(tag, float(value), int(step))
        if tag.startswith(METRIC_PREFIX):
            self._metrics[tag] = float(value)

    def table(self, name: str, rows: list[str], columns: list[str], values: np.ndarray) -> None:
        lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        lines += [
            f"| {r} | " + " | ".join(f"{v * 100:.1f}" for v in row) + " |" for r, row in zip(rows, values, strict=True)
        ]
        self._writer.add_text(name, "accuracy (%)\n\n" + "\n".join(lines), 0)

    def image(self, name: str, png: Path) -> None:
        from matplotlib.image import imread

        self._writer.add_image(name, imread(png)[..., :3], 0, dataformats="HWC")  # RGB, floats in [0, 1]

    def close(self, failed: bool = False) -> None:
        if not failed:
            from torch.utils.tensorboard.summary import hparams

            # Written into this run's own file (SummaryWriter.add_hparams would open a sub-run).
            for summary in hparams(self._params, self._metrics):
                self._writer.file_writer.add_summary(summary)
        self._writer.close()
