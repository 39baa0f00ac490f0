"""The landscape's figures, drawn on the Agg canvas without pyplot (as lifelong.results.report: no window,
no global figure state, matplotlib imported inside the functions).

``plane_figure``: the lecture's two panels, task 1's and task 2's loss over the plane (darker = lower loss,
one logarithmic colour scale for both), then both overlaid: each task's low-loss region filled (task 1 blue,
task 2 orange; loss at most 1.5 times its loss at its own solution), with both training paths of task 2
projected and the three anchors marked, each labelled with task 1's loss there. ``lines_figure``: each
task's loss and accuracy along the three straight lines from θ*_1 (Mirzadeh et al. 2021, arXiv 2010.04495).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lifelong.landscape.result import Landscape

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLOURS = {"task1": "black", "finetune": "#d62728", "method": "#2ca02c", "joint": "#9467bd"}
MARKERS = {"task1": "o", "finetune": "s", "method": "^"}
TASK_COLOURS = ("#1f77b4", "#ff7f0e")  # task 1 blue, task 2 orange (the overlay's regions)
LEVELS = 14  # filled contour levels per panel
LOW = 1.5  # a task's low-loss region: loss at most this times its loss at its own solution
SHORT = {"task1": "θ*₁", "finetune": "θ*₂ finetune", "method": "θ*₂ {method}"}


def low_loss_threshold(ls: Landscape, task: int) -> float:
    """A task's low-loss region (the overlay): loss at most ``LOW`` times its loss at its own solution, θ*_1
    for task 1 and the lower of the two θ*_2 for task 2."""
    own = ls.loss["task1"][0] if task == 0 else min(ls.loss["finetune"][1], ls.loss["method"][1])
    return float(LOW * own)


def plane_figure(ls: Landscape) -> Figure:
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

    ratio = float(np.ptp(ls.b) / max(np.ptp(ls.a), 1e-12))
    fig = _figure(1, 3, 15.0, float(np.clip(4.3 * ratio + 1.6, 3.4, 6.5)))
    axes = fig.axes
    aa, bb = np.meshgrid(ls.a, ls.b)
    finite = ls.grid_loss[np.isfinite(ls.grid_loss)]
    low = max(float(finite.min()), 1e-4)
    high = max(float(np.quantile(finite, 0.9)), 2 * low)  # the farthest corners would wash out the valleys
    levels = np.geomspace(low, high, LEVELS + 1)
    norm = LogNorm(low, high)
    for j, ax in enumerate(axes[:2]):
        surface = np.clip(ls.grid_loss[j], low, None)
        filled = ax.contourf(aa, bb, surface, levels, norm=norm, cmap="viridis", extend="max")
        ax.set_title(f"task {j + 1} ({ls.task_names[j]}): loss", fontsize=10)
    colorbar = fig.colorbar(filled, ax=axes[1], shrink=0.9, pad=0.02)
    colorbar.ax.yaxis.set_major_locator(FixedLocator(levels[::2]))
    colorbar.ax.yaxis.set_minor_locator(NullLocator())
    colorbar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
    colorbar.ax.tick_params(labelsize=7)
    colorbar.set_label("loss (darker = lower)", fontsize=8)
    overlay = axes[2]
    for j in range(2):
        threshold = low_loss_threshold(ls, j)
        overlay.contourf(aa, bb, ls.grid_loss[j], [-np.inf, threshold], colors=[TASK_COLOURS[j]], alpha=0.3)
        overlay.contour(aa, bb, ls.grid_loss[j], [threshold], colors=[TASK_COLOURS[j]], linewidths=1.5)
        overlay.plot([], [], color=TASK_COLOURS[j], lw=6, alpha=0.45, label=f"task {j + 1}: loss ≤ {threshold:.2f}")
    overlay.set_title(f"both: where each task's loss is ≤ {LOW:g} × its best", fontsize=10)
    for ax in axes:
        _paths_and_points(ax, ls, on_dark=ax is not overlay)
        ax.set_aspect("equal")
        ax.set_xlim(ls.a[0], ls.a[-1])
        ax.set_ylim(ls.b[0], ls.b[-1])
        ax.set_xlabel("a: along θ*₂ finetune − θ*₁", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel(f"b: towards θ*₂ {ls.method}", fontsize=9)
    overlay.legend(fontsize=7, loc="best", framealpha=0.85)
    lam = ls.method_settings.get("lam")
    method = f"{ls.method} (λ {lam:g})" if isinstance(lam, int | float) else ls.method
    seed = ls.settings["train"]["seed"]
    fig.suptitle(
        f"{ls.benchmark}, {ls.task_names[0]} → {ls.task_names[1]}: task 2 learned by finetune and by {method}, "
        f"on the plane through θ*₁ and both θ*₂ (seed {seed})",
        fontsize=10,
    )
    return fig


def _paths_and_points(ax, ls: Landscape, on_dark: bool) -> None:
    for run in ("finetune", "method"):
        path = ls.paths[run]
        name = "finetune" if run == "finetune" else ls.method
        label = None if on_dark else f"task 2's path, {name}"
        ax.plot(path[:, 0], path[:, 1], color=COLOURS[run], lw=1.6, label=label)
    middle = (ls.a[0] + ls.a[-1]) / 2
    for point, marker in MARKERS.items():
        x, y = ls.coords[point]
        ax.plot(x, y, marker, color=COLOURS[point], ms=8, mec="white", mew=1.2)
        right = x > middle  # labels of points on the right half go to their left, inside the panel
        ax.annotate(
            f"{SHORT[point].format(method=ls.method)}\nL₁ = {ls.loss[point][0]:.2f}",
            (x, y),
            textcoords="offset points",
            xytext=(-7 if right else 7, 6),
            ha="right" if right else "left",
            fontsize=8,
            color="white" if on_dark else "black",
            fontweight="bold",
        )


def lines_figure(ls: Landscape) -> Figure:
    fig = _figure(1, 2, 12.0, 4.2)
    loss_ax, acc_ax = fig.axes
    for end, line in ls.lines.items():
        for j in range(len(line.loss)):
            style = {"color": COLOURS[end], "ls": "-" if j == 0 else "--", "lw": 1.6}
            label = f"θ*₁ → {ls.label(end)}: task {j + 1}"
            loss_ax.plot(line.t, line.loss[j], label=label, **style)
            acc_ax.plot(line.t, 100 * line.acc[j], **style)
    for ax in (loss_ax, acc_ax):
        for t in (0, 1):
            ax.axvline(t, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("t: θ(t) = (1 − t) θ*₁ + t θ_end", fontsize=9)
        ax.tick_params(labelsize=8)
    loss_ax.set_yscale("log")
    loss_ax.set_ylabel("loss (log scale)", fontsize=9)
    acc_ax.set_ylabel("accuracy (%)", fontsize=9)
    loss_ax.set_title("loss along straight lines from θ*₁ (solid: task 1, dashed: task 2)", fontsize=10)
    acc_ax.set_title("accuracy along the same lines", fontsize=10)
    loss_ax.legend(fontsize=7, loc="best", framealpha=0.85)
    return fig


def _figure(nrows: int, ncols: int, width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(nrows, ncols, squeeze=False)
    return fig
