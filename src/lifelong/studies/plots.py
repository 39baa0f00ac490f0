"""The figures of order and affinity studies, as PNG files.

As in results/report.py: matplotlib is imported inside the functions (``import lifelong`` stays fast)
and figures are drawn on the Agg canvas without pyplot (no window, no global state, the user's backend
untouched). Accuracies are shown in %.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lifelong.studies.affinity import Affinity
    from lifelong.studies.orders import OrderStudy

METRIC_LABELS = {
    "acc": "ACC (%)",
    "bwt": "BWT (%)  (< 0: forgetting)",
    "fwt": "FWT (%)  (> 0: earlier tasks help)",
}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def order_distribution(study: OrderStudy, path: Path) -> Path:
    """Per metric, one column per method: every order's value (mean over seeds) as a dot over a box; the
    best and worst orders by ACC, and the proposed curriculum, marked."""
    fig = _figure(min(4 + 1.3 * len(study.methods), 12), 3.8)
    axes = fig.subplots(1, 3)
    rng = np.random.default_rng(0)  # the horizontal jitter only
    for ax, key in zip(axes, ("acc", "bwt", "fwt"), strict=True):
        for m, method in enumerate(study.methods):
            scores = study.scores(method, key)
            values = np.array([v for v in scores.values() if np.isfinite(v)]) * 100
            if not len(values):
                continue
            ax.boxplot(values, positions=[m], widths=0.5, showfliers=False)
            ax.scatter(m + rng.uniform(-0.15, 0.15, len(values)), values, s=12, color="C0", alpha=0.6, zorder=3)
            if study.curriculum is not None and study.curriculum in scores:
                ax.scatter(
                    [m], [scores[study.curriculum] * 100], marker="*", s=140, color="C3", zorder=4, label="curriculum"
                )
        ax.set_xticks(range(len(study.methods)), study.methods, rotation=30, ha="right")
        ax.set_ylabel(METRIC_LABELS[key])
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles[:1], labels[:1], loc="best", fontsize=8)
    fig.suptitle(f"{study.benchmark}: {len(study.orders)} task orders, one dot per order (mean over seeds)")
    return _save(fig, path)


def _heatmap(ax, M: np.ndarray, names: list[str], title: str, diverging: bool, fmt: str = "{:.1f}") -> None:
    shown = np.ma.masked_invalid(M)
    finite = M[np.isfinite(M)]
    limit = max(float(np.abs(finite).max()) if len(finite) else 1.0, 1e-9)
    kwargs = {"cmap": "RdBu", "vmin": -limit, "vmax": limit} if diverging else {"cmap": "viridis", "vmin": 0}
    image = ax.imshow(shown, **kwargs)
    for (i, j), v in np.ndenumerate(M):
        if np.isfinite(v):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("target j")
    ax.set_ylabel("source i")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, shrink=0.8)


def affinity_heatmaps(aff: Affinity, path: Path) -> Path:
    """Forward gain, backward loss (points of accuracy) and taskonomy's normalised affinity, side by side."""
    T = len(aff.task_names)
    fig = _figure(min(4 + 3.2 * 3 + 0.25 * T, 14), 3.6 + 0.2 * T)
    axes = fig.subplots(1, 3)
    _heatmap(axes[0], aff.gain * 100, aff.task_names, "forward gain[i,j]: j after i vs j alone", True)
    _heatmap(axes[1], aff.forgetting * 100, aff.task_names, "backward loss[i,j]: i forgotten by j", True)
    _heatmap(axes[2], aff.ahp, aff.task_names, "AHP affinity of source i for target j", False, "{:.2f}")
    return _save(fig, path)


def dendrogram(tree, names: list[str], path: Path, ylabel: str) -> Path:
    """The clustering of the tasks (taxonomy.cluster) as a dendrogram."""
    from scipy.cluster.hierarchy import dendrogram as draw

    fig = _figure(min(3 + 0.6 * len(names), 12), 3.6)
    ax = fig.subplots()
    draw(np.asarray(tree), labels=list(names), ax=ax, color_threshold=0)
    ax.set_ylabel(ylabel)
    ax.set_title("tasks that help each other merge first (average linkage)", fontsize=9)
    return _save(fig, path)


def best_worst(study: OrderStudy, method: str, path: Path) -> Path:
    """The R matrices of the best and the worst order (by ACC) of one method, side by side."""
    best, worst = study.best_worst(method)
    T = len(study.task_names)
    fig = _figure(min(3 + 1.6 * T, 13), 1.6 + 0.55 * T)
    for ax, (what, order) in zip(fig.subplots(1, 2), (("best", best), ("worst", worst)), strict=True):
        R = study.R(method, order) * 100
        names = study.names(order)
        image = ax.imshow(R, cmap="viridis", vmin=0, vmax=100)
        for (i, j), v in np.ndenumerate(R):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="w" if v < 60 else "k")
        ax.set_xticks(range(T), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(T + 1), ["init"] + [f"after {n}" for n in names], fontsize=8)
        acc = study.scores(method, "acc")[order] * 100
        ax.set_title(f"{what} order {','.join(map(str, order))}: ACC {acc:.1f}", fontsize=9)
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="accuracy (%)")
    return _save(fig, path)
