"""Reports: a Markdown file with tables, and PNG figures beside it.

write_report(results, "report/")          methods x seeds on one or more benchmarks
write_sweep_report(points, "sweep/", "lambda")   a hyper-parameter sweep on the validation split
plot_importance(importances, "imp.png", "EWC importance")
parameter_label("body.1.weight", (50, 64), layer=1)   "layer 1 weights (64 → 50)"

Runs of the same method setting on the same benchmark, scenario and number of tasks that differ only in
their seed are aggregated: mean ± sample standard deviation (ddof=1) over seeds. Runs of one method with
different hyper-parameters (config["method"], or config["train"] apart from seed/device/evaluation
settings) are kept apart and labelled by what differs.

Figures are meant to be read at a glance: at most ~12 inches wide, every bar labelled with its number
("0.0" for a measured zero, "n/a" where a metric is undefined), scales shared where numbers are compared,
error bars only where there are seeds to take an sd over, and a sweep says on its face when its curve is
flat within noise or near chance rather than letting a zoomed axis draw a trend.

matplotlib is imported inside the functions (``import lifelong`` stays fast) and figures are drawn on
the Agg canvas without pyplot: no window, no global figure state, no change to the user's backend.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifelong import metrics
from lifelong.data.budget import human
from lifelong.data.task import SCENARIO_NAMES
from lifelong.result import Result

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

TABLE_METRICS = {"acc": "ACC", "bwt": "BWT", "fwt": "FWT", "forgetting": "Forgetting"}
VIEW_METRICS = {"acc": "ACC", "bwt": "BWT"}  # shown again under each evaluation view
VIEW_ORDER = ("task", "class", "domain")  # the order of the view columns
VIEW_COLOURS = {"task": "C0", "class": "C1", "domain": "C2"}  # one colour per view in every figure
BAR_FIGURE_WIDTH = 11.0  # inches: the metric bars stay this wide however many methods there are
BAR_AXIS_HINTS = {"acc": "", "bwt": "  (< 0: forgetting)", "fwt": "  (> 0: earlier tasks help)"}  # under each axis
# Train settings that do not change what is learned: runs differing only in these are seeds of one setting.
NOT_SETTINGS = {"seed", "device", "eval_batch_size", "eval_every_epoch"}
GRID_ROW_INCHES = 0.9  # height of one row (one task) of a generator's samples
GRID_TITLE_INCHES = 0.5  # room for the grid's title


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
    landscapes: Sequence[tuple[str, Path]] = (),
) -> Path:
    """Write ``report.md`` and its PNG figures into ``out_dir``; returns the path of report.md.
    ``importance_plots``: (label, PNG path) of regularisation methods' importances (plot_importance).
    ``landscapes``: (label, folder) of `lifelong landscape` reports kept in the runs' folders."""
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
        caveats = _caveats(entries, scenario)
        if caveats:
            lines += [""] + [f"- **Expected to fail.** {c}" for c in caveats]
        if not all(r.sequential for e in entries for r in e.results):
            lines += ["", "–: not defined for a method that learns all tasks in one stage (joint training)."]
        lines += [
            "",
            "Definitions (R[i, j]: accuracy on task j after learning tasks 1..i; R[0, j]: at initialisation):",
        ]
        lines += [_definition(k) for k in TABLE_METRICS]
        views = " and ".join(SCENARIO_NAMES.get(v, v) for v in _views(entries)) if _multi_view(entries) else ""
        bars = _plot_metric_bars(entries, out / f"{slug}-metrics.png")
        lines += ["", f"![ACC, BWT and FWT per method{' evaluated ' + views if views else ''}]({bars.name})"]
        lines += [
            f"![Each task's accuracy along the stream]({_plot_task_accuracy(entries, out / f'{slug}-tasks.png').name})"
        ]
        if any(r.curves for e in entries for r in e.results):
            path = _plot_epoch_curves(entries, out / f"{slug}-epochs.png")
            lines += ["", "Per-epoch accuracy of every task (drops right after a task switch: the stability gap):"]
            lines += ["", f"![Per-epoch accuracy of every task]({path.name})"]
        lines += _memory_section(entries) + _capacity_section(entries, out, slug)
        lines += (
            _projection_section(entries) + _generated_section(entries, out, slug) + _pseudo_samples_section(entries)
        )
        lines += _fearnet_section(entries, out, slug)
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
    if landscapes:
        lines += ["", "## Why forgetting happens, drawn: the loss landscape (`lifelong landscape`)"]
        for label, folder in landscapes:
            link = os.path.relpath(folder, out)
            lines += [
                "",
                f"{label}: [its report]({link}/report.md)",
                "",
                f"![loss landscape: {label}]({link}/landscape.png)",
            ]
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


def _caveats(entries: list[_Entry], scenario: str) -> list[str]:
    """The one-line warnings the methods give for this scenario (the same lines `lifelong run` prints)."""
    from lifelong import methods

    found = (methods.METHODS[e.method].caveat(scenario) for e in entries if e.method in methods.METHODS)
    return list(dict.fromkeys(c for c in found if c))


def _setting(r: Result) -> dict[str, Any]:
    """What distinguishes a method setting, flattened: method hyper-parameters and training settings."""
    out = {f"method.{k}": v for k, v in (r.config.get("method") or {}).items()}
    out |= {f"train.{k}": v for k, v in (r.config.get("train") or {}).items() if k not in NOT_SETTINGS}
    return out


def _metrics_table(entries: list[_Entry]) -> list[str]:
    views = _views(entries) if _multi_view(entries) else []
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


def _views(entries: list[_Entry]) -> list[str]:
    """Every evaluation view of these runs, in VIEW_ORDER (then by name)."""
    found = {v for e in entries for r in e.results for v in r.views}
    return sorted(found, key=lambda v: (VIEW_ORDER.index(v) if v in VIEW_ORDER else len(VIEW_ORDER), v))


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


# -- what the methods keep and measured (Method.facts) ---------------------------------------------------


def _memory_section(entries: list[_Entry]) -> list[str]:
    """What each method keeps besides the model it trains, and what that costs in bytes: the price of
    replay, GEM or iCaRL is their memory, and that of LwF or DGR a model copy or a generator."""
    rows = []
    for e in entries:
        kept = [_kept(r.facts) for r in e.results]
        for kind in dict.fromkeys(k for found in kept for k in found):
            runs = [found[kind] for found in kept if kind in found]
            first = runs[0]
            count = first.get("count")
            what = {
                "memory": "examples (episodic memory)",
                "models": f"{count} model cop{'y' if count == 1 else 'ies'}",
                "generator": f"a generator ({first.get('parameters', 0):,} parameters)",
                "statistics": f"class statistics ({first.get('classes')} classes: mean and covariance of a "
                f"{first.get('latent')}-d code)",
                "hc": "recent examples (FearNet's HC, at its fullest)",
            }[kind]
            samples, size = (
                _mean_sd([x[key] for x in runs if x.get(key) is not None])[0] for key in ("samples", "bytes")
            )
            policy, capacity = first.get("policy", "–"), str(first.get("capacity", "–"))
            stored = "–" if math.isnan(samples) else f"{samples:.1f}".removesuffix(".0")
            rows.append([e.label, what, policy, capacity, stored, "–" if math.isnan(size) else human(size)])
    if not rows:
        return []
    return [
        "",
        "### Memory: what each method keeps",
        "",
        "What each method keeps besides the model it trains, at the end of the run (mean over seeds), and its "
        "size (1 KB = 1024 bytes). An episodic memory's bytes are its preallocated tensors (inputs, labels, "
        "task ids) at full capacity, however many samples it holds.",
        "",
        *_md_table(["method", "what is kept", "policy", "capacity", "samples stored", "bytes"], rows),
    ]


def _kept(facts: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """What a run's facts say it keeps, by kind: ``memory`` (Method.facts of replay, GEM...), copies of earlier
    models (LwF: {"stored_models": n, "bytes": b}), a generator (DGR: {"generator": {"parameters", "bytes"}})."""
    kept = {}
    if "memory" in facts:
        kept["memory"] = facts["memory"]
    if "stored_models" in facts:
        kept["models"] = {"count": facts["stored_models"], "bytes": facts.get("bytes")}
    if "generator" in facts:
        kept["generator"] = facts["generator"]
    if "statistics" in facts:  # FearNet: the long-term memory, and the HC at its fullest
        kept["statistics"] = {**facts["statistics"], "samples": None}
        kept["hc"] = {"samples": facts["hc"]["peak_samples"], "bytes": facts["hc"]["peak_bytes"]}
    return kept


def _capacity_section(entries: list[_Entry], out: Path, slug: str) -> list[str]:
    """Parameters and stored state against tasks (Result.capacity, issue 8): what each method spends for
    what it remembers. PNN grows a column per task, PackNet and CPG fill a fixed network (free share),
    regularisers and memories keep state besides the model. Runs recorded before this have no records."""
    counted = [(e, [r.capacity for r in e.results if r.capacity]) for e in entries]
    counted = [(e, runs) for e, runs in counted if runs]
    if not counted:
        return []
    rows = []
    for e, runs in counted:
        last = [run[-1] for run in runs]
        params, params_sd = _mean_sd([r["parameters"] for r in last])
        added = (_mean_sd([r["added"] for r in stage])[0] for stage in zip(*runs, strict=False))
        free = _mean_sd([r["free_fraction"] for r in last if r.get("free_fraction") is not None])[0]
        stored = _mean_sd([r["stored_bytes"] for r in last])[0]
        spread = f" ± {params_sd:,.0f}" if params_sd > 0 else ""  # nan (one seed) and 0 both print nothing
        rows.append(
            [e.label, f"{params:,.0f}{spread}", ", ".join(f"{a:+,.0f}" for a in added), _pct(free), human(stored)]
        )
    figure = _save(_capacity_figure(counted), out / f"{slug}-capacity.png")
    header = ["method", "parameters after the last task", "added in each task", "free (%)", "stored state"]
    return [
        "",
        "### Capacity: parameters and stored state",
        "",
        "Parameters of the network after the last task and those added while each task was learned (growth); "
        "the share of the weights no task owns yet (methods that give weights to tasks); the bytes the method "
        "keeps besides the network (importances and anchors, memories, model copies) after the last task. "
        "Mean over seeds.",
        "",
        *_md_table(header, rows),
        "",
        f"![capacity: parameters against tasks]({figure.name})",
    ]


def _capacity_figure(counted: list[tuple[_Entry, list[list[dict]]]]) -> Figure:
    """Two panels, one line per method setting (mean over seeds): the network's parameters against the
    tasks learned, from the network before training (0), and the method's stored bytes after each task."""
    fig = _figure(1, 2, width=10.0, height=3.6)
    grow, keep = fig.axes
    most = max(r["stored_bytes"] for _, runs in counted for run in runs for r in run)
    unit, scale = ("MB", 2**20) if most >= 2**20 else ("KB", 2**10)
    for k, (e, runs) in enumerate(counted):
        stages = list(zip(*runs, strict=False))  # per stage, one record per seed
        tasks = [0] + [stage[0]["tasks"] for stage in stages]
        start = [_mean_sd([run[0]["parameters"] - run[0]["added"] for run in runs])[0]]
        params = start + [_mean_sd([r["parameters"] for r in stage])[0] for stage in stages]
        stored = [_mean_sd([r["stored_bytes"] for r in stage])[0] / scale for stage in stages]
        # Methods often hold the same counts: hollow markers of different shapes keep overlapping lines visible.
        style = {"marker": "os^Dv<>ph*"[k % 10], "markersize": 6, "fillstyle": "none", "color": f"C{k % 10}"}
        grow.plot(tasks, params, label=e.label, **style)
        keep.plot(tasks[1:], stored, label=e.label, **style)
    grow.set_title("capacity: parameters against tasks", fontsize=10)
    grow.set_ylabel("parameters of the network")
    grow.set_ylim(bottom=0)
    keep.set_title("stored state besides the network", fontsize=10)
    keep.set_ylabel(f"{unit} (1 {unit} = {scale} bytes)")
    keep.set_ylim(bottom=0)
    for ax in (grow, keep):
        ax.set_xlabel("tasks learned")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    _legend(grow)
    return fig


def _projection_section(entries: list[_Entry]) -> list[str]:
    """GEM's and A-GEM's projection rate per task: how often the memory actually changed the step, the
    measure of how much the current task conflicts with the earlier ones."""
    rated = [e for e in entries if any("projection_rate" in r.facts for r in e.results)]
    if not rated:
        return []
    names = _task_names(rated[0])
    rows = []
    for e in rated:
        rates = [r.facts["projection_rate"] for r in e.results if "projection_rate" in r.facts]
        per_task = itertools.zip_longest(*rates)  # one tuple per task, over seeds
        cells = [_pct(*_mean_sd([x for x in seeds if x is not None])) for seeds in per_task]
        rows.append([e.label] + (cells + ["–"] * len(names))[: len(names)])
    return [
        "",
        "### Gradient projection",
        "",
        "% of the training steps of each task whose gradient was projected because it would have raised the loss "
        "on the memory of earlier tasks (GEM: any one earlier task's loss; A-GEM: their average); the first task "
        "has no memory to protect.",
        "",
        *_md_table(["method"] + names, rows),
    ]


def _generated_section(entries: list[_Entry], out: Path, slug: str) -> list[str]:
    """For generative replay, a grid of the generator's samples after each task (its first seed): DGR
    remembers only as well as these samples resemble the earlier tasks' data (Shin et al. 2017)."""
    lines = []
    for k, e in enumerate(entries, start=1):
        run = next((r for r in e.results if "generated" in r.facts), None)
        if run is None:
            continue
        rows = [_row_name(i, _task_names(e)) for i in range(1, len(run.facts["generated"]["after_task"]) + 1)]
        title = f"{e.label}: samples drawn by the generator after each task"
        figure = _generated_figure(run.facts["generated"], rows, title)
        path = _save(figure, out / f"{slug}-{k}-{_slug(e.label)}-generated.png")
        seed = run.config.get("train", {}).get("seed")
        lines += ["", f"### {e.label}: generated samples", ""]
        lines += [f"One row per task learned: what the generator drew after that task (seed {seed})."]
        lines += ["", f"![Samples generated by {e.label} after each task]({path.name})"]
    return lines


def _pseudo_samples_section(entries: list[_Entry]) -> list[str]:
    """For LAMOL, what its language model wrote of each earlier task before each new one (its first seed):
    how many pseudo-samples, the share that parsed back into story, question and answer (the rest were
    dropped, with why), and a few of them as text: what the model "remembers" (Sun, Ho & Lee 2020)."""
    lines = []
    for e in entries:
        run = next((r for r in e.results if "pseudo_samples" in r.facts), None)
        if run is None:
            continue
        history = run.facts["pseudo_samples"]
        rows = [
            [
                h["during"],
                h["task"],
                str(h["generated"]),
                str(h["parsed"]),
                f"{100 * h['parse_share']:.1f}",
                ", ".join(f"{why} {n}" for why, n in h["dropped"].items()) or "–",
            ]
            for h in history
        ]
        seed = run.config.get("train", {}).get("seed")
        lines += ["", f"### {e.label}: pseudo-samples", ""]
        lines += [f"Before each new task the model wrote samples of each earlier one (seed {seed}); only those that "]
        lines += ["parse back into a story, a question and an answer are replayed.", ""]
        lines += _md_table(["before", "of task", "written", "parsed", "parsed %", "dropped"], rows)
        shown = [(h["during"], h["task"], text) for h in history for text in h["examples"][:2]]
        if shown:
            lines += [
                "",
                "A few of them, as written (the story, oldest sentence first, then the question and its answer):",
                "",
            ]
            lines += ["```", *(f"[{task}, before {during}] {text}" for during, task, text in shown[:12]), "```"]
    return lines


def _fearnet_section(entries: list[_Entry], out: Path, slug: str) -> list[str]:
    """For FearNet (its first seed): what its two memories hold, how often the BLA sent the test inputs to
    each, and a grid of pseudo-examples decoded from each class's statistics: what the mPFC "remembers"
    of a class it keeps no example of (Kemker & Kanan 2018)."""
    lines = []
    for k, e in enumerate(entries, start=1):
        run = next((r for r in e.results if "pseudo_examples" in r.facts and "statistics" in r.facts), None)
        if run is None:
            continue
        stats, held, seed = run.facts["statistics"], run.facts["hc"], run.config.get("train", {}).get("seed")
        sleeps = ", ".join(str(t + 1) for t in run.facts["sleeps"]) or "none"
        lines += ["", f"### {e.label}: FearNet's memories", ""]
        lines += [
            f"Long-term memory (mPFC): the statistics of {stats['classes']} classes, {human(stats['bytes'])}, where "
            f"their {stats['examples']:,} training examples would take {human(stats['raw_bytes'])}; the HC held at "
            f"most {held['peak_samples']:,} recent examples ({human(held['peak_bytes'])}); sleeps after task "
            f"{sleeps} (seed {seed})."
        ]
        if run.facts["bla"]:
            lines += ["", "Which memory answered the test inputs of the tasks learned so far (the BLA's ψ rule), "]
            lines += ["and how often it was the memory that holds the input's class:", ""]
            rows = [
                [str(b["after_task"]), f"{b['hc']:,}", f"{b['mpfc']:,}", _pct(b["right"] / max(b["hc"] + b["mpfc"], 1))]
                for b in run.facts["bla"]
            ]
            lines += _md_table(["after task", "HC answered", "mPFC answered", "right memory (%)"], rows)
        shown = run.facts["pseudo_examples"]
        if shown["images"]:
            generated = {"input_shape": shown["input_shape"], "after_task": shown["images"]}
            names = [f"class {c}" for c in shown["classes"]]
            title = f"{e.label}: pseudo-examples decoded from each class's statistics"
            figure = _generated_figure(generated, names, title)
            path = _save(figure, out / f"{slug}-{k}-{_slug(e.label)}-pseudo-examples.png")
            lines += ["", f"![Pseudo-examples of each class decoded by {e.label}]({path.name})"]
    return lines


def _generated_figure(generated: Mapping[str, Any], row_names: list[str], title: str) -> Figure:
    """One row of images per task, the samples side by side, grey levels 0..255 as stored."""
    n = max(len(images) for images in generated["after_task"])
    rows = [_strip(images, generated["input_shape"], n) for images in generated["after_task"]]
    height = GRID_TITLE_INCHES + GRID_ROW_INCHES * len(rows)
    fig = _figure(len(rows), 1, width=min(12.0, 1.8 + 0.8 * n), height=height)
    for ax, image, name in zip(fig.axes, rows, row_names, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


def _strip(images: Sequence[Sequence[int]], input_shape: Sequence[int], n: int, gap: int = 2) -> np.ndarray:
    """``n`` slots of flat images (ints 0..255) side by side as one picture, grey between and in empty slots.
    ``input_shape`` as the model sees an input: (C, H, W) with C 1 or 3, (H, W), or flat (drawn square when
    its length is a square number, else as a line)."""
    shape = [int(d) for d in input_shape]
    channels_first = len(shape) == 3 and shape[0] in (1, 3)
    if channels_first:
        h, w, c = shape[1], shape[2], shape[0]
    elif len(shape) == 2:
        h, w, c = shape[0], shape[1], 1
    else:
        size = math.prod(shape)
        side = math.isqrt(size)
        h, w, c = (side, side, 1) if side * side == size else (1, size, 1)
    strip = np.full((h, max(1, n * (w + gap) - gap), c), 128, dtype=np.uint8)
    for i, flat in enumerate(images):
        image = np.asarray(flat, dtype=np.uint8).reshape(shape)
        image = np.moveaxis(image, 0, -1) if channels_first else image.reshape(h, w, c)  # channels last
        strip[:, i * (w + gap) : i * (w + gap) + w] = image
    return strip[..., 0] if c == 1 else strip


# -- figures of the main report -------------------------------------------------------------------------


def _plot_metric_bars(entries: list[_Entry], path: Path) -> Path:
    return _save(_metric_bars_figure(entries), path)


def _metric_bars_figure(entries: list[_Entry]) -> Figure:
    """ACC, BWT and FWT side by side, one row of horizontal bars per method setting, read like the table.

    ACC is drawn on 0–100 and BWT and FWT on one symmetric scale, so that bar lengths compare across methods
    and across the two transfer metrics. Every bar carries its number: a measured 0.0 reads "0.0" and a metric
    that is undefined (BWT of joint training) reads "n/a". Error bars (±1 sd) only where a setting has ≥ 2
    seeds. Runs evaluated under several views (task- and class-IL of one model) get one bar per view for
    ACC and BWT, as the table's view columns; FWT is the stream's own scenario, as in the table.
    """
    views = _views(entries) if _multi_view(entries) else [None]
    scenario = entries[0].results[0].scenario
    n_bars = len(entries) * len(views)
    fig = _figure(1, 3, width=BAR_FIGURE_WIDTH, height=1.5 + 0.2 * len(entries) + 0.22 * n_bars, sharey=True)
    height = 0.8 / len(views)  # the bars of one method fill 80% of its row

    def slot(i: int, k: int) -> float:  # y of method i's k-th view (first method on top)
        return i + (k - (len(views) - 1) / 2) * height

    own = views.index(scenario) if scenario in views else 0  # the view that FWT (on R itself) belongs to
    cells = {}  # (metric, view) -> [(mean, sd) per entry], in %
    for key in ("acc", "bwt", "fwt"):
        for k, view in enumerate(views):
            if key == "fwt" and len(views) > 1 and k != own:
                continue
            stats = [e.stat(key, view=None if key == "fwt" else view) for e in entries]
            cells[key, k] = [(m * 100, s * 100) for m, s in stats]
    # One scale for both transfer metrics, symmetric about 0, 10 points at least, in whole tens, 100 at most.
    extent = [abs(m) + _finite(s) for (key, _), col in cells.items() if key != "acc" for m, s in col]
    limit = max(10.0, math.ceil(max((x for x in extent if math.isfinite(x)), default=0) * 1.1 / 10) * 10)
    limit = min(limit, 100.0)  # BWT and FWT of accuracies lie in [-100, 100]
    bounds = {"acc": (0.0, 100.0), "bwt": (-limit, limit), "fwt": (-limit, limit)}

    any_sd = False
    for ax, key in zip(fig.axes, ("acc", "bwt", "fwt"), strict=True):
        lo, hi = bounds[key]
        for (cell_key, k), col in cells.items():
            if cell_key != key:
                continue
            y = np.array([slot(i, k if len(views) > 1 else 0) for i in range(len(entries))])
            means = np.array([m for m, _ in col])
            sds = np.array([s for _, s in col])
            colour = VIEW_COLOURS.get(views[k], "C0")
            ax.barh(y, np.nan_to_num(means), height=height * 0.9, color=colour)
            has_sd = np.isfinite(sds) & np.isfinite(means)  # only settings with >= 2 seeds have an sd
            if has_sd.any():
                any_sd = True
                ax.errorbar(means[has_sd], y[has_sd], xerr=sds[has_sd], fmt="none", ecolor="black", capsize=3)
            for yi, m, s in zip(y, means, sds, strict=True):
                _bar_label(ax, yi, m, s, key, hi)
        ax.set_xlim(lo, hi)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.grid(axis="x", alpha=0.3)
        view = f", {SCENARIO_NAMES.get(scenario, scenario)}" if key == "fwt" and len(views) > 1 else ""
        ax.set_xlabel(f"{TABLE_METRICS[key]} (%){view}{BAR_AXIS_HINTS[key]}")
        ax.set_title(metrics.DEFINITIONS[key].rsplit(" (", 1)[0], fontsize=9)  # the formula, without its gloss
    first = fig.axes[0]
    first.set_yticks(range(len(entries)), [e.label for e in entries])
    first.set_ylim(len(entries) - 0.5, -0.5)  # first method on top, as in the table
    title = f"ACC, BWT and FWT per method ({SCENARIO_NAMES.get(scenario, scenario)} stream)"
    if any_sd:
        title += "; error bars: ±1 sd over seeds"
    fig.suptitle(title)
    if len(views) > 1:
        from matplotlib.patches import Patch

        handles = [Patch(color=VIEW_COLOURS.get(v, "C0"), label=SCENARIO_NAMES.get(v, v)) for v in views]
        fig.legend(handles=handles, loc="outside upper right", ncols=len(views), fontsize=9, title="evaluated as")
    return fig


def _bar_label(ax, y: float, mean: float, sd: float, key: str, hi: float) -> None:
    """The bar's number beside it: ACC past the bar's end (inside it when the bar is long), BWT and FWT on
    the other side of 0 from the bar, so that labels never run off a symmetric axis; 'n/a' when undefined."""
    if math.isnan(mean):
        ax.text(hi * 0.02, y, "n/a", ha="left", va="center", fontsize=8, color="dimgray", style="italic")
        return
    text = _number(mean) + (f" ± {sd:.1f}" if math.isfinite(sd) else "")
    reach = abs(mean) + _finite(sd)  # where the bar and its error bar end
    pad = hi * 0.02
    if key == "acc":
        if reach < hi * 0.72:
            ax.text(reach + pad, y, text, ha="left", va="center", fontsize=8)
        else:  # no room past the end: inside the bar, left of its error bar
            ax.text(mean - _finite(sd) - pad, y, text, ha="right", va="center", fontsize=8, color="white")
        return
    beyond = max(0.0, _finite(sd) - abs(mean)) + pad  # clear of an error bar that crosses 0
    if mean > 0:
        ax.text(-beyond, y, text, ha="right", va="center", fontsize=8)
    else:
        ax.text(beyond, y, text, ha="left", va="center", fontsize=8)


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


def write_sweep_report(
    points: Sequence[Mapping[str, Any]], out_dir: str | Path, param: str, chance: float | None = None
) -> Path:
    """Write ``sweep-<param>.md`` and ``sweep-<param>.png``: validation ACC and BWT against the value.

    ``points``: ``{"value", "acc", "bwt"}`` with optional ``"acc_sd"``, ``"bwt_sd"``; acc and bwt are
    fractions (as Result.acc); optional ``"run_ids"`` are listed. The chosen value is the one with the highest
    validation ACC (the first of equals in the given order, as lifelong.tune.best chooses; a diverged value,
    ACC nan, is never chosen). ``chance``: the accuracy of guessing (a fraction, e.g. 0.1 for 10 classes),
    when known; the report then says whether every value stayed near it. A curve whose spread across values
    is within noise (_sweep_notes) is called flat, on the figure and in the Markdown, so that a sweep of
    near-identical accuracies is not read as a trend. Returns the path of the Markdown file.
    """
    if not points:
        raise ValueError("write_sweep_report needs at least one point")
    finite = [p for p in points if math.isfinite(p["acc"])] or list(points)
    chosen = max(finite, key=lambda p: p["acc"])  # the first of equals in the sweep's order, as tune.best()
    numeric = all(isinstance(p["value"], int | float) and not isinstance(p["value"], bool) for p in points)
    points = sorted(points, key=lambda p: p["value"]) if numeric else list(points)
    best = next(i for i, p in enumerate(points) if p is chosen)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = _slug(f"sweep-{param}")
    notes = _sweep_notes(points, chance)
    figure = _save(_sweep_figure(points, param, best, numeric, notes, chance), out / f"{slug}.png")

    values = [p["value"] for p in points]
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
    ]
    caveats = [note for key in ("chance", "acc", "bwt") for note in notes.get(key, [])]
    if caveats:
        lines += ["", "Read with care:", ""] + [f"- {note[0].upper()}{note[1:]}." for note in caveats]
        if notes.get("acc") or notes.get("chance"):
            lines += ["", f"The chosen {param} is therefore no evidence that it is better than the other values."]
    lines += [
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


FLAT_POINTS = 2.0  # a spread across values below this many points (or below the seeds' sd) is no trend
NEAR_CHANCE_POINTS = 5.0  # every value within this many points above chance: the model learned little
MIN_SPAN_POINTS = 10.0  # a sweep's y axis spans at least this much, so that noise is not zoomed into a trend


def _sweep_notes(points: Sequence[Mapping[str, Any]], chance: float | None = None) -> dict[str, list[str]]:
    """What a sweep's curves cannot show, as sentences: {"acc": [...], "bwt": [...], "chance": [...]}.

    A curve is flat within noise when its spread across values (max - min of the means) is under
    FLAT_POINTS or under the largest sd over seeds of any value (then re-running the seeds could reorder
    the values). Accuracies are near chance when every value's ACC is within NEAR_CHANCE_POINTS of
    ``chance`` (a fraction).
    """
    out: dict[str, list[str]] = {}
    for key, name in (("acc", "validation ACC"), ("bwt", "validation BWT")):
        y = np.array([p[key] for p in points], dtype=float) * 100
        y = y[np.isfinite(y)]
        if y.size < 2:
            continue
        spread = float(y.max() - y.min())
        sds = [float(p[f"{key}_sd"]) * 100 for p in points if p.get(f"{key}_sd") is not None]
        noise = max((s for s in sds if math.isfinite(s)), default=0.0)
        if spread < max(FLAT_POINTS, noise):
            why = (
                f"less than the seeds' sd, up to {noise:.1f} points"
                if noise >= FLAT_POINTS
                else f"less than {FLAT_POINTS:g} points"
            )
            out[key] = [f"the {name} curve is flat within noise: {spread:.1f} points across values ({why})"]
    if chance is not None:
        acc = np.array([p["acc"] for p in points], dtype=float) * 100
        acc = acc[np.isfinite(acc)]
        if acc.size and acc.max() <= chance * 100 + NEAR_CHANCE_POINTS:
            out["chance"] = [
                f"validation ACC is near chance ({chance * 100:.1f} %) for every value (at most {acc.max():.1f} %):"
                " the model learned little at any of them"
            ]
    return out


def _sweep_figure(
    points: list, param: str, best: int, numeric: bool, notes: dict[str, list[str]], chance: float | None
) -> Figure:
    import textwrap

    values = [p["value"] for p in points]
    x = np.asarray(values, dtype=float) if numeric else np.arange(len(points), dtype=float)
    log_x = numeric and all(v > 0 for v in values) and max(values) / min(values) > 10
    fig = _figure(1, 2, width=10, height=4.2)
    any_sd = False
    panels = (("acc", "validation ACC (%)", (0.0, 100.0)), ("bwt", "validation BWT (%)", (-100.0, 100.0)))
    for ax, (key, name, bounds) in zip(fig.axes, panels, strict=True):
        y = np.array([p[key] for p in points], dtype=float) * 100
        sd = np.array([np.nan if p.get(f"{key}_sd") is None else p[f"{key}_sd"] for p in points], dtype=float) * 100
        has_sd = np.isfinite(sd) & np.isfinite(y)  # error bars only where there were >= 2 seeds
        ax.plot(x, y, marker="o", color="C0")
        if has_sd.any():
            any_sd = True
            ax.errorbar(x[has_sd], y[has_sd], yerr=sd[has_sd], fmt="none", ecolor="C0", capsize=4)
        ax.plot(
            [x[best]],
            [y[best]],
            marker="*",
            markersize=16,
            color="C3",
            linestyle="none",
            label=f"chosen: {param} = {_value(values[best])}",
        )
        reach = np.concatenate([y - np.nan_to_num(sd), y + np.nan_to_num(sd)])
        if key == "acc" and "chance" in notes:
            reach = np.append(reach, chance * 100)
        lo, hi = _span(reach[np.isfinite(reach)], bounds)
        ax.set_ylim(lo, hi)
        if key == "acc" and chance is not None and lo <= chance * 100 <= hi:
            ax.axhline(chance * 100, color="gray", linestyle="--", linewidth=1, label=f"chance ({chance * 100:g} %)")
        if log_x:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(x, [str(v) for v in values])
        ax.set_xlabel(param)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        said = notes.get(key, []) + (notes.get("chance", []) if key == "acc" else [])
        if said:  # on the panel itself: whoever sees only the PNG must not read noise as a trend
            text = "\n".join(textwrap.fill(s[0].upper() + s[1:], 62) for s in said)
            ax.set_title(text, fontsize=8, color="C3", loc="left")
    fig.suptitle(f"Sweep of {param} on the validation split" + ("; error bars: ±1 sd over seeds" if any_sd else ""))
    # One legend under both panels: inside them it would cover the point it names.
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
    return fig


def _span(values: np.ndarray, bounds: tuple[float, float]) -> tuple[float, float]:
    """y limits around ``values`` at least MIN_SPAN_POINTS tall (centred on them, shifted to stay within
    ``bounds``), with a margin."""
    if values.size == 0:
        return bounds
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < MIN_SPAN_POINTS:
        mid = (lo + hi) / 2
        lo, hi = mid - MIN_SPAN_POINTS / 2, mid + MIN_SPAN_POINTS / 2
        shift = max(0.0, bounds[0] - lo) - max(0.0, hi - bounds[1])
        lo, hi = lo + shift, hi + shift
    margin = 0.05 * (hi - lo)
    return max(bounds[0] - margin, lo - margin), min(bounds[1] + margin, hi + margin)


# -- importances of a regularisation method ---------------------------------------------------------------


def plot_importance(importances: Mapping[str, torch.Tensor], path: str | Path, title: str) -> Path:
    """One histogram of importance values per parameter (log counts where some bin is crowded), and for the
    first layer's weight the importance of each input unit (summed over output units), as an image when the
    input is square.
    Panels are titled in words (parameter_label): "layer 1 weights (64 → 50)", "output layer bias (10)"."""
    if not importances:
        raise ValueError("plot_importance needs at least one parameter's importances")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(_importance_figure(importances, title), path)


def _importance_figure(importances: Mapping[str, torch.Tensor], title: str) -> Figure:
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    arrays = {
        name: np.asarray(t.detach().float().cpu() if hasattr(t, "detach") else t, dtype=float)
        for name, t in importances.items()
    }
    labels = parameter_labels({name: a.shape for name, a in arrays.items()})
    first_weight = next((n for n, a in arrays.items() if a.ndim == 2 and n.endswith("weight")), None)
    n_panels = len(arrays) + (first_weight is not None)
    fig, axes = _panels(n_panels)
    for ax, (name, a) in zip(axes, arrays.items(), strict=False):
        values = a[np.isfinite(a)].ravel()
        # About two values per bin for small tensors (a bias of 10), at most 50 bins; log counts only where
        # some bin is crowded (a weight matrix's long tail), plain whole counts for a bias.
        counts, _, _ = ax.hist(values, bins=int(min(50, max(5, values.size // 2))), color="C0")
        log = counts.max(initial=0) >= 20
        if log:
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.7)  # a count of 1 stays visible on the log axis
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 10, 100 rather than 10^0
            ax.yaxis.set_minor_formatter(NullFormatter())
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        stats = f"mean {values.mean():.3g}, max {values.max():.3g}" if values.size else "no finite values"
        ax.set_title(f"{labels[name]}\n{stats}", fontsize=9)
        ax.set_xlabel("importance")
        ax.set_ylabel("count (log)" if log else "count")
    if first_weight is not None:
        ax = axes[len(arrays)]
        per_input = np.nan_to_num(arrays[first_weight]).sum(axis=0)  # (out, in) -> (in,)
        units = arrays[first_weight].shape[0]
        where = labels[first_weight].split(" (")[0]  # "layer 1 weights"
        side = math.isqrt(per_input.size)
        if side * side == per_input.size:
            image = ax.imshow(per_input.reshape(side, side), cmap="magma")
            fig.colorbar(image, ax=ax, label="summed importance")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{where}: per input pixel ({side}×{side}),\nsummed over its {units} units", fontsize=9)
        else:
            ax.bar(np.arange(per_input.size), per_input, width=1.0, color="C1")
            ax.set_xlabel("input unit")
            ax.set_ylabel("summed importance")
            ax.set_title(f"{where}: per input unit,\nsummed over its {units} units", fontsize=9)
    fig.suptitle(title)
    return fig


OUTPUT_MODULES = {"head", "classifier", "output", "out", "fc_out"}  # module names read as "output layer"


def parameter_label(name: str, shape: Sequence[int], layer: int | None = None) -> str:
    """A parameter in words: ``parameter_label("head.bias", (10,))`` is "output layer bias (10)".

    ``name`` is as in ``model.named_parameters()``. A module named ``head`` (lifelong.models.MLP's output
    layer; also ``classifier``...) is the output layer; ``layer`` numbers any other module ("layer 1"), and
    without it the module keeps its own name ("body.1 weights"). Torch stores a Linear weight as
    (out, in), so its size reads "in → out"; a convolution's adds its kernel; anything else shows its shape.
    """
    module, _, kind = name.rpartition(".")
    what = {"weight": "weights", "bias": "bias"}.get(kind, kind)
    if module.rpartition(".")[2] in OUTPUT_MODULES:
        where = "output layer"
    elif layer is not None:
        where = f"layer {layer}"
    else:
        where = module
    dims = [int(d) for d in shape]
    if kind == "weight" and len(dims) >= 2:
        size = f"{dims[1]} → {dims[0]}" + (f", {'×'.join(map(str, dims[2:]))} kernel" if len(dims) > 2 else "")
    else:
        size = "×".join(map(str, dims)) or "scalar"
    return f"{where} {what} ({size})".strip()


def parameter_labels(shapes: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """parameter_label for every parameter of a model, its modules numbered layer 1, 2... in the order given
    (named_parameters' order: input to output); the output layer is not numbered. For lifelong.models.MLP:
    body.1 is layer 1, body.3 layer 2, ..., head the output layer."""
    modules = [name.rpartition(".")[0] for name in shapes]
    numbered = [m for m in dict.fromkeys(modules) if m.rpartition(".")[2] not in OUTPUT_MODULES]
    layer = {m: k for k, m in enumerate(numbered, start=1)}
    return {
        name: parameter_label(name, shape, layer.get(m))
        for (name, shape), m in zip(shapes.items(), modules, strict=True)
    }


# -- helpers ----------------------------------------------------------------------------------------------


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    a = np.asarray(values, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else math.nan)


def _number(x: float) -> str:
    """x to one decimal as a figure prints it: a true minus sign, and 0.0 (never -0.0) for what rounds to 0."""
    text = f"{x:.1f}"
    return "0.0" if text == "-0.0" else text.replace("-", "\N{MINUS SIGN}")


def _finite(x: float) -> float:
    """x, or 0 where it is nan (an sd of a single run)."""
    return x if math.isfinite(x) else 0.0


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


def _figure(nrows: int, ncols: int, width: float, height: float, **subplots: Any) -> Figure:
    """A figure on the Agg canvas (no pyplot: no window, no global state) with a grid of axes;
    ``subplots``: passed to Figure.subplots (sharey=True...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(nrows, ncols, squeeze=False, **subplots)
    return fig


def _panels(n: int, panel_width: float = 3.6, panel_height: float = 3.0) -> tuple[Figure, list]:
    """A figure with n panels, at most 3 per row and rows filled evenly (4 panels: 2 x 2), so that it stays
    under 12 inches wide; unused cells are hidden."""
    nrows = math.ceil(max(1, n) / 3)
    ncols = math.ceil(max(1, n) / nrows)
    fig = _figure(nrows, ncols, width=panel_width * ncols + 1.0, height=panel_height * nrows + 0.6)
    axes = fig.axes
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _legend(ax) -> None:
    ax.legend(fontsize=8, loc="best", framealpha=0.8)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path
