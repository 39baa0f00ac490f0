"""Reports: a Markdown file with tables, and PNG figures beside it.

write_report(results, "report/")          methods x seeds on one or more benchmarks
write_sweep_report(points, "sweep/", "lambda")   a hyper-parameter sweep on the validation split
plot_importance(importances, "imp.png", "EWC importance")

Runs of the same method setting on the same benchmark, scenario and number of tasks that differ only in
their seed are aggregated: mean ± sample standard deviation (ddof=1) over seeds. Runs of one method with
different hyper-parameters (config["method"], or config["train"] apart from seed/device/evaluation
settings) are kept apart and labelled by what differs.

matplotlib is imported inside the functions (``import lifelong`` stays fast) and figures are drawn on
the Agg canvas without pyplot: no window, no global figure state, no change to the user's backend.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifelong import metrics
from lifelong.data.task import SCENARIO_NAMES
from lifelong.result import Result

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

TABLE_METRICS = {"acc": "ACC", "bwt": "BWT", "fwt": "FWT", "forgetting": "Forgetting"}
VIEW_METRICS = {"acc": "ACC", "bwt": "BWT"}  # shown again under each evaluation view
VIEW_ORDER = ("task", "class", "domain")  # the order of the view columns
# Train settings that do not change what is learned: runs differing only in these are seeds of one setting.
NOT_SETTINGS = {"seed", "device", "eval_batch_size", "eval_every_epoch"}


@dataclasses.dataclass
class _Entry:
    """The runs (one per seed) of one method setting on one benchmark, scenario and number of tasks."""

    method: str
    setting: dict[str, Any]
    results: list[Result]
    label: str = ""

    @property
    def seeds(self) -> list:
        return [r.config.get("train", {}).get("seed") for r in self.results]

    def stat(self, key: str, view: str | None = None) -> tuple[float, float]:
        """Mean and sample sd over seeds of metric ``key`` of R (under ``view``); sd is nan for a single run,
        both are nan when the metric means nothing for these runs (BWT of joint training)."""
        fn = getattr(metrics, key)
        matrices = [r.R if view is None else r.views.get(view) for r in self.results if key == "acc" or r.sequential]
        return _mean_sd([fn(R) for R in matrices if R is not None])

    def matrices(self) -> np.ndarray:
        """The R matrices stacked: seeds x (T+1) x T."""
        return np.stack([np.asarray(r.R, dtype=float) for r in self.results])


# -- the main report -------------------------------------------------------------------------------------


def write_report(
    results: Sequence[Result],
    out_dir: str | Path,
    title: str = "Lifelong learning report",
    importance_plots: Sequence[tuple[str, Path]] = (),
) -> Path:
    """Write ``report.md`` and its PNG figures into ``out_dir``; returns the path of report.md.
    ``importance_plots``: (label, PNG path) of regularisation methods' importances (plot_importance)."""
    if not results:
        raise ValueError("write_report needs at least one Result")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {title}",
        "",
        f"{len(results)} runs, reported {now}. Accuracies in %. Where a setting was run with several seeds, "
        "numbers are mean ± sample standard deviation (ddof=1) over the seeds.",
    ]
    for (benchmark, scenario, n_tasks), entries in _group(results).items():
        slug = _slug(f"{benchmark}-{scenario}-{n_tasks}tasks")
        lines += ["", f"## {benchmark}, {scenario}-incremental, {n_tasks} tasks", ""]
        lines += _metrics_table(entries)
        if not all(r.sequential for e in entries for r in e.results):
            lines += ["", "–: not defined for a method that learns all tasks in one stage (joint training)."]
        lines += [
            "",
            "Definitions (R[i, j]: accuracy on task j after learning tasks 1..i; R[0, j]: at initialisation):",
        ]
        lines += [_definition(k) for k in TABLE_METRICS]
        lines += ["", f"![ACC, BWT and FWT per method]({_plot_metric_bars(entries, out / f'{slug}-metrics.png').name})"]
        lines += [
            f"![Each task's accuracy along the stream]({_plot_task_accuracy(entries, out / f'{slug}-tasks.png').name})"
        ]
        if any(r.curves for e in entries for r in e.results):
            path = _plot_epoch_curves(entries, out / f"{slug}-epochs.png")
            lines += ["", "Per-epoch accuracy of every task (drops right after a task switch: the stability gap):"]
            lines += ["", f"![Per-epoch accuracy of every task]({path.name})"]
        for k, entry in enumerate(entries, start=1):
            lines += ["", f"### {entry.label}: accuracy matrix R", ""]
            lines += _r_matrix_section(entry)
            heatmap = _plot_heatmap(entry, out / f"{slug}-{k}-{_slug(entry.label)}-R.png")
            lines += ["", f"![R matrix of {entry.label}]({heatmap.name})"]
    if importance_plots:
        lines += ["", "## Which weights are guarded: importance of each parameter", ""]
        lines += ["Importance Ω accumulated over all tasks, per layer, and per input pixel of the first layer."]
        for label, path in importance_plots:
            lines += ["", f"![importance: {label}]({os.path.relpath(path, out)})"]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def _group(results: Sequence[Result]) -> dict[tuple[str, str, int], list[_Entry]]:
    """Results by (benchmark, scenario, T), then by method setting, in order of first appearance."""
    groups: dict[tuple[str, str, int], dict[tuple[str, str], _Entry]] = {}
    for r in results:
        setting = _setting(r)
        key = (r.benchmark, r.scenario, len(r.task_names))
        entry_key = (r.method, json.dumps(setting, sort_keys=True, default=str))
        entries = groups.setdefault(key, {})
        entries.setdefault(entry_key, _Entry(r.method, setting, [])).results.append(r)
    out = {}
    for key, entries in groups.items():
        out[key] = list(entries.values())
        for entry in out[key]:
            same_method = [e.setting for e in out[key] if e.method == entry.method]
            differing = sorted({k for s in same_method for k in s if any(s.get(k) != o.get(k) for o in same_method)})
            details = ", ".join(f"{k.split('.')[-1]}={entry.setting.get(k)}" for k in differing)
            entry.label = f"{entry.method} ({details})" if details else entry.method
    return out


def _setting(r: Result) -> dict[str, Any]:
    """What distinguishes a method setting, flattened: method hyper-parameters and training settings."""
    out = {f"method.{k}": v for k, v in (r.config.get("method") or {}).items()}
    out |= {f"train.{k}": v for k, v in (r.config.get("train") or {}).items() if k not in NOT_SETTINGS}
    return out


def _metrics_table(entries: list[_Entry]) -> list[str]:
    found = {v for e in entries for r in e.results for v in r.views} if _multi_view(entries) else set()
    views = sorted(found, key=lambda v: (VIEW_ORDER.index(v) if v in VIEW_ORDER else len(VIEW_ORDER), v))
    header = ["method"] + [f"{name} (%)" for name in TABLE_METRICS.values()]
    header += [f"{name} ({SCENARIO_NAMES.get(v, v)}) (%)" for v in views for name in VIEW_METRICS.values()]
    header += ["seeds"]
    rows = []
    for e in entries:
        row = [e.label] + [_pct(*e.stat(k)) for k in TABLE_METRICS]
        row += [_pct(*e.stat(k, view=v)) for v in views for k in VIEW_METRICS]
        row += [f"{len(e.results)} ({', '.join(str(s) for s in e.seeds)})"]
        rows.append(row)
    return _md_table(header, rows)


def _multi_view(entries: list[_Entry]) -> bool:
    """True when some run was evaluated under more than one view (task- and class-IL of one model)."""
    return any(len(r.views) > 1 for e in entries for r in e.results)


def _r_matrix_section(entry: _Entry) -> list[str]:
    R = entry.matrices().mean(axis=0) * 100
    names = _task_names(entry)
    n = len(entry.results)
    lines = [
        "R[i, j] in %: accuracy on task j (column) after learning tasks 1..i (row); 'init' is before any training"
        + (f"; mean over {n} seeds." if n > 1 else "."),
    ]
    if entry.setting:
        lines += ["", "Settings: " + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in entry.setting.items()) + "."]
    lines += [""]
    rows = [[_row_name(i, names)] + [f"{x:.1f}" for x in R[i]] for i in range(R.shape[0])]
    return lines + _md_table(["R"] + names, rows)


def _task_names(entry: _Entry) -> list[str]:
    """The tasks' names when every seed has the same ones, else their positions (seeds may order tasks differently)."""
    first = list(entry.results[0].task_names)
    if all(list(r.task_names) == first for r in entry.results):
        return first
    return [f"task {j + 1}" for j in range(len(first))]


def _row_name(i: int, names: list[str]) -> str:
    return "init" if i == 0 else f"after {names[i - 1]}"


# -- figures of the main report -------------------------------------------------------------------------


def _plot_metric_bars(entries: list[_Entry], path: Path) -> Path:
    fig = _figure(1, 3, width=max(9.0, 1.2 * len(entries) * 3), height=3.8)
    axes = fig.axes
    labels = [e.label for e in entries]
    for ax, key in zip(axes, ("acc", "bwt", "fwt"), strict=True):
        stats = [e.stat(key) for e in entries]
        means = [m * 100 for m, _ in stats]
        sds = [0.0 if math.isnan(s) else s * 100 for _, s in stats]
        x = np.arange(len(entries))
        ax.bar(x, means, yerr=sds, capsize=4, color=[f"C{i}" for i in range(len(entries))])
        ax.axhline(0, color="black", linewidth=0.8)
        for i, m in enumerate(means):
            if math.isnan(m):  # e.g. BWT of joint training: say so instead of an empty slot
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=9)
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylabel(f"{TABLE_METRICS[key]} (%)")
        ax.set_title(metrics.DEFINITIONS[key].rsplit(" (", 1)[0], fontsize=9)  # the formula, without its gloss
    fig.suptitle(
        f"{TABLE_METRICS['acc']}, {TABLE_METRICS['bwt']}, {TABLE_METRICS['fwt']} per method (error bars: sd over seeds)"
    )
    return _save(fig, path)


def _plot_task_accuracy(entries: list[_Entry], path: Path) -> Path:
    """Per method: each task's accuracy after learning 0..T tasks, a star where the task is learned."""
    fig, axes = _panels(len(entries))
    for ax, entry in zip(axes, entries, strict=False):
        Rs = entry.matrices() * 100
        mean, sd = Rs.mean(axis=0), (Rs.std(axis=0, ddof=1) if len(Rs) > 1 else None)
        names = _task_names(entry)
        x = np.arange(mean.shape[0])
        for j, name in enumerate(names):
            ax.plot(x, mean[:, j], marker="o", markersize=3, color=f"C{j}", label=f"task {j + 1}: {name}")
            if entry.results[0].sequential:  # joint training learns every task at once: no single moment
                ax.plot([j + 1], [mean[j + 1, j]], marker="*", markersize=11, color=f"C{j}")
            if sd is not None:
                ax.fill_between(x, mean[:, j] - sd[:, j], mean[:, j] + sd[:, j], color=f"C{j}", alpha=0.2)
        ax.set_xticks(x, ["init"] + [str(i) for i in x[1:]])
        ax.set_xlabel("tasks learned so far")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 101)
        ax.set_title(entry.label + (f" ({len(Rs)} seeds, band = ±sd)" if sd is not None else ""))
        ax.grid(alpha=0.3)
    _legend(axes[0])
    fig.suptitle("Accuracy on each task as the stream goes on (★ = just learned)")
    return _save(fig, path)


def _plot_epoch_curves(entries: list[_Entry], path: Path) -> Path:
    """Per method: every task's accuracy after each epoch (mean over seeds with equally long curves)."""
    with_curves = [e for e in entries if any(r.curves for r in e.results)]
    fig, axes = _panels(len(with_curves))
    for ax, entry in zip(axes, with_curves, strict=False):
        runs = [r for r in entry.results if r.curves]
        runs = [r for r in runs if len(r.curves) == len(runs[0].curves)]
        # Start from the accuracies at initialisation, then one point per epoch.
        acc = np.stack([[r.R[0]] + [c["accuracy"] for c in r.curves] for r in runs]).astype(float) * 100
        mean = acc.mean(axis=0)
        x = np.arange(mean.shape[0])
        names = _task_names(entry)
        for j in range(mean.shape[1]):
            ax.plot(x, mean[:, j], color=f"C{j}", label=f"task {j + 1}: {names[j]}")
            if len(runs) > 1:
                sd = acc[:, :, j].std(axis=0, ddof=1)
                ax.fill_between(x, mean[:, j] - sd, mean[:, j] + sd, color=f"C{j}", alpha=0.2)
        stages = [c["stage"] for c in runs[0].curves]
        for k in range(1, len(stages)):
            if stages[k] != stages[k - 1]:  # a new task starts after epoch point k
                ax.axvline(k + 0.5, color="gray", linestyle=":", linewidth=1)
        ax.set_xlabel("epochs trained (dotted lines: next task starts)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 101)
        ax.set_title(entry.label + (f" (mean of {len(runs)} seeds)" if len(runs) > 1 else ""))
        ax.grid(alpha=0.3)
    _legend(axes[0])
    fig.suptitle("Per-epoch accuracy of every task")
    return _save(fig, path)


def _plot_heatmap(entry: _Entry, path: Path) -> Path:
    R = entry.matrices().mean(axis=0) * 100
    names = _task_names(entry)
    T = R.shape[1]
    fig = _figure(1, 1, width=max(4.5, 0.7 * T + 3), height=max(3.5, 0.55 * (T + 1) + 2))
    ax = fig.axes[0]
    image = ax.imshow(R, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    fontsize = max(5, 10 - T // 3)
    for i in range(R.shape[0]):
        for j in range(T):
            colour = "white" if R[i, j] < 50 else "black"  # readable on viridis' dark and light ends
            ax.text(
                j,
                i,
                f"{R[i, j]:.0f}" if T > 10 else f"{R[i, j]:.1f}",
                ha="center",
                va="center",
                color=colour,
                fontsize=fontsize,
            )
    ax.set_xticks(range(T), names, rotation=30, ha="right")
    ax.set_yticks(range(T + 1), [_row_name(i, names) for i in range(T + 1)])
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after learning")
    n = len(entry.results)
    ax.set_title(f"R matrix: {entry.label}" + (f" (mean of {n} seeds)" if n > 1 else ""))
    return _save(fig, path)


# -- hyper-parameter sweeps -------------------------------------------------------------------------------


def write_sweep_report(points: Sequence[Mapping[str, Any]], out_dir: str | Path, param: str) -> Path:
    """Write ``sweep-<param>.md`` and ``sweep-<param>.png``: validation ACC and BWT against the value.

    ``points``: ``{"value", "acc", "bwt"}`` with optional ``"acc_sd"``, ``"bwt_sd"``; acc and bwt are
    fractions (as Result.acc); optional ``"run_ids"`` are listed. The chosen value is the one with the highest
    validation ACC (the first of equals in the given order, as lifelong.tune.best chooses). Returns the path
    of the Markdown file.
    """
    if not points:
        raise ValueError("write_sweep_report needs at least one point")
    chosen = max(points, key=lambda p: p["acc"])  # the first of equals in the sweep's order, as tune.best()
    numeric = all(isinstance(p["value"], int | float) and not isinstance(p["value"], bool) for p in points)
    points = sorted(points, key=lambda p: p["value"]) if numeric else list(points)
    best = next(i for i, p in enumerate(points) if p is chosen)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = _slug(f"sweep-{param}")

    values = [p["value"] for p in points]
    x = np.asarray(values, dtype=float) if numeric else np.arange(len(points))
    log_x = numeric and all(v > 0 for v in values) and max(values) / min(values) > 10
    fig = _figure(1, 2, width=10, height=3.8)
    for ax, key, name in zip(fig.axes, ("acc", "bwt"), ("validation ACC (%)", "validation BWT (%)"), strict=True):
        y = np.array([p[key] for p in points], dtype=float) * 100
        err = np.nan_to_num(np.array([p.get(f"{key}_sd") or 0.0 for p in points], dtype=float)) * 100
        ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label=name)
        ax.plot(
            [x[best]],
            [y[best]],
            marker="*",
            markersize=16,
            color="C3",
            linestyle="none",
            label=f"chosen: {param} = {_value(values[best])}",
        )
        if log_x:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(x, [str(v) for v in values])
        ax.set_xlabel(param)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Sweep of {param} on the validation split (error bars: sd over seeds)")
    figure = _save(fig, out / f"{slug}.png")

    header = [param, "val ACC (%)", "val BWT (%)", "chosen"]
    with_ids = any(p.get("run_ids") for p in points)  # the runs behind each point, to look them up in the store
    rows = []
    for i, p in enumerate(points):
        mark = "**chosen** (highest validation ACC)" if i == best else ""
        rows.append([_value(p["value"]), _pct(p["acc"], p.get("acc_sd")), _pct(p["bwt"], p.get("bwt_sd")), mark])
        if with_ids:
            rows[-1].append(", ".join(str(run_id) for run_id in p.get("run_ids") or []))
    lines = [
        f"# Sweep of {param}",
        "",
        f"Chosen: **{param} = {_value(values[best])}**, the highest validation ACC "
        f"({_pct(points[best]['acc'], points[best].get('acc_sd'))} %). Accuracies in %, on the validation split.",
        "",
        *_md_table(header + ["runs"] * with_ids, rows),
        "",
        _definition("acc"),
        _definition("bwt"),
        "",
        f"![validation ACC and BWT against {param}]({figure.name})",
    ]
    md = out / f"{slug}.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md


# -- importances of a regularisation method ---------------------------------------------------------------


def plot_importance(importances: Mapping[str, torch.Tensor], path: str | Path, title: str) -> Path:
    """One histogram of importance values per parameter (log counts), and for the first layer's weight the
    importance of each input unit (summed over output units), as an image when the input is square."""
    if not importances:
        raise ValueError("plot_importance needs at least one parameter's importances")
    arrays = {
        name: np.asarray(t.detach().float().cpu() if hasattr(t, "detach") else t, dtype=float)
        for name, t in importances.items()
    }
    first_weight = next((n for n, a in arrays.items() if a.ndim == 2 and n.endswith("weight")), None)
    n_panels = len(arrays) + (first_weight is not None)
    fig, axes = _panels(n_panels, panel_width=4.2, panel_height=3.2)
    for ax, (name, a) in zip(axes, arrays.items(), strict=False):
        values = a[np.isfinite(a)].ravel()
        ax.hist(values, bins=50, color="C0", log=True)
        ax.set_title(f"{name} {tuple(a.shape)}", fontsize=9)
        ax.set_xlabel("importance")
        ax.set_ylabel("count (log)")
    if first_weight is not None:
        ax = axes[len(arrays)]
        per_input = np.nan_to_num(arrays[first_weight]).sum(axis=0)  # (out, in) -> (in,)
        side = math.isqrt(per_input.size)
        if side * side == per_input.size:
            image = ax.imshow(per_input.reshape(side, side), cmap="magma")
            fig.colorbar(image, ax=ax, label="summed importance")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{first_weight}: per input pixel ({side}x{side})", fontsize=9)
        else:
            ax.bar(np.arange(per_input.size), per_input, width=1.0, color="C1")
            ax.set_xlabel("input unit")
            ax.set_ylabel("summed importance")
            ax.set_title(f"{first_weight}: per input unit", fontsize=9)
    fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


# -- helpers ----------------------------------------------------------------------------------------------


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    a = np.asarray(values, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else math.nan)


def _pct(mean: float, sd: float | None = None) -> str:
    """A fraction as a percentage, '85.3 ± 1.2' with an sd, '–' when missing."""
    if mean is None or math.isnan(mean):
        return "–"
    text = f"{mean * 100:.1f}"
    if sd is not None and not math.isnan(sd):
        text += f" ± {sd * 100:.1f}"
    return text


def _definition(key: str) -> str:
    """A Markdown bullet with the metric's formula, named as in the table's header."""
    name, text = TABLE_METRICS[key], metrics.DEFINITIONS[key]
    return f"- {text}" if text.startswith(name) else f"- {name}: {text}"


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header)] + [line(r) for r in rows]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _figure(nrows: int, ncols: int, width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no pyplot: no window, no global state) with a grid of axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(nrows, ncols, squeeze=False)
    return fig


def _panels(n: int, panel_width: float = 5.0, panel_height: float = 3.8) -> tuple[Figure, list]:
    """A figure with n panels, at most 3 per row; unused cells are hidden."""
    ncols = min(3, max(1, n))
    nrows = math.ceil(max(1, n) / ncols)
    fig = _figure(nrows, ncols, width=panel_width * ncols + 1.5, height=panel_height * nrows + 0.6)
    axes = fig.axes
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _legend(ax) -> None:
    ax.legend(fontsize=8, loc="best", framealpha=0.8)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path
