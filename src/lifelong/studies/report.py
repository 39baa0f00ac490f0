"""What order and affinity studies print and write: terminal tables, and a Markdown file with its PNG
figures and the raw numbers (JSON) in a folder.

A study never replaces a file: an explicit folder that already holds any file the study would write is
refused, and a default folder that does gets a numbered sibling.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np

from lifelong import metrics, text
from lifelong.data.task import SCENARIO_NAMES
from lifelong.errors import LifelongError, option
from lifelong.studies import affinity as affinity_module
from lifelong.studies import plots, taxonomy
from lifelong.studies.affinity import Affinity
from lifelong.studies.orders import OrderStudy, label

METRICS = ("acc", "bwt", "fwt")


def _pct(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v * 100:.1f}"


# -- terminal -----------------------------------------------------------------------------------------


def square(M, names: list[str], title: str, scale: float = 100, fmt: str = "{:.1f}") -> str:
    """A T x T matrix (rows: source i, columns: target j), the diagonal as '–'."""
    width = max(7, *(len(n) + 1 for n in names))
    lines = [title, " " * (width + 2) + "".join(f"{n:>{width}}" for n in names)]
    for i, row in enumerate(np.asarray(M, dtype=float)):
        cells = "".join(f"{'–' if not np.isfinite(v) else fmt.format(v * scale):>{width}}" for v in row)
        lines.append(f"{names[i]:<{width + 2}}" + cells)
    return "\n".join(lines)


def spread_table(study: OrderStudy) -> str:
    """Per method and metric: mean, sd, min, max and spread over orders (%)."""
    header = ["method", "metric", "mean", "sd", "min", "max", "spread", "orders"]
    rows = []
    for method in study.methods:
        spread = study.spread(method)
        n = len(study.scores(method, "acc"))
        for k, key in enumerate(METRICS):
            s = spread[key]
            rows.append([method if k == 0 else "", key.upper(), *(_pct(s[f]) for f in header[2:7]), str(n) * (k == 0)])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(f"{x:<{w}}" if j < 2 else f"{x:>{w}}" for j, (x, w) in enumerate(zip(r, widths, strict=True)))
        for r in [header, *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def describe_order_study(study: OrderStudy) -> str:
    runs = len(study.records)
    seeds = f"seeds {','.join(map(str, study.seeds))}" if len(study.seeds) > 1 else f"seed {study.seeds[0]}"
    tasks = ", ".join(f"{k} = {n}" for k, n in enumerate(study.task_names))
    return (
        f"order study: {study.benchmark} · {SCENARIO_NAMES[study.scenario]} · {len(study.task_names)} tasks · "
        f"{len(study.orders)} orders × {len(study.methods)} method(s) × {seeds} = {runs} runs on "
        f"{study.workers} worker(s), {study.wall_s:.1f} s\ntasks: {tasks}"
    )


def order_text(study: OrderStudy, proposal: dict | None = None) -> str:
    """The spread table, each method's best and worst order with their R matrices, the curriculum's rank,
    and the definitions."""
    parts = [describe_order_study(study), "", spread_table(study)]
    for method in study.methods:
        pair = study.best_worst(method)
        if pair is None:
            parts += ["", f"{method}: every run failed ({study.runs(method, study.orders[0])[0]['error']})"]
            continue
        acc = study.scores(method, "acc")
        for what, order in zip(("best", "worst"), pair, strict=True):
            title = f"\n{method}, {what} order {label(order)} (ACC {_pct(acc[order])}): R[i][j] = accuracy (%)"
            parts.append(text.matrix(study.R(method, order), study.names(order), title))
    if study.curriculum is not None:
        parts += ["", curriculum_line(study, proposal)]
    parts += ["", *order_notes(study)]
    failed = study.errors()
    if failed:
        parts.append(
            f"FAILED {len(failed)} of {len(study.records)} runs, e.g. {failed[0]['method']} "
            f"order {label(failed[0]['order'])}: {failed[0]['error']}"
        )
    return "\n".join(parts)


def curriculum_line(study: OrderStudy, proposal: dict | None = None) -> str:
    how = ""
    if proposal:
        how = f" ({proposal['search']} search; J = {proposal['objective'] * 100:.1f} points)"
    ranks = []
    for method in study.methods:
        if study.curriculum in study.scores(method, "acc"):
            r, n = study.rank(method, study.curriculum, "acc")
            rb, _ = study.rank(method, study.curriculum, "bwt")
            ranks.append(f"{method} {r} of {n} by ACC, {rb} of {n} by BWT")
    others = len(study.orders) - 1
    return (
        f"curriculum {label(study.curriculum)}{how} against {others} other orders: "
        + ("; ".join(ranks) or "no finished run")
        + " (rank 1 = best; ties share the better rank)"
    )


def order_notes(study: OrderStudy) -> list[str]:
    return [
        f"scenario: {SCENARIO_NAMES[study.scenario]}; accuracies in % on each task's test set; each order's value "
        "is the mean over seeds; spread = max - min over orders",
        metrics.DEFINITIONS["acc"],
        metrics.DEFINITIONS["bwt"],
        metrics.DEFINITIONS["fwt"],
        "an R matrix's columns are the tasks in the order learned",
    ]


def affinity_text(aff: Affinity, proposal: dict | None = None) -> str:
    T = len(aff.task_names)
    names = aff.task_names
    scratch = "  ".join(f"{n} {v * 100:.1f}" for n, v in zip(names, aff.scratch, strict=True))
    parts = [
        f"affinity study: {T} tasks · {SCENARIO_NAMES[aff.scenario]} · T + T(T-1) = {aff.trainings} trainings of "
        f"one task (plain fine-tuning) · {aff.wall_s:.1f} s ({aff.train_s:.1f} s of training)",
        f"each task alone (scratch, %): {scratch}",
        "",
        square(aff.gain, names, "forward gain[i,j] (points): rows = source i learned first, columns = target j"),
        "",
        square(aff.forgetting, names, "backward loss[i,j] (points): how much source i is forgotten by learning j"),
        "",
        square(aff.ahp, names, "AHP affinity[i,j]: taskonomy's normalisation (each column sums to 1)", 1, "{:.2f}"),
    ]
    if T >= 2:
        tree = taxonomy.cluster(aff.gain * 100, aff.forgetting * 100)
        parts += ["", "taxonomy (average linkage on gain - forgetting, both directions, points):"]
        parts += [f"  {k + 1}. {line}" for k, line in enumerate(taxonomy.merges(tree, names))]
    if proposal:
        parts += ["", proposal_line(proposal, names)]
    parts += [""] + [affinity_module.DEFINITIONS[k] for k in ("gain", "forgetting", "ahp")]
    return "\n".join(parts)


def proposal_line(proposal: dict, names: list[str]) -> str:
    order = proposal["order"]
    path = " → ".join(names[t] for t in order)
    return (
        f"proposed curriculum: {label(order)} ({path}); J = Σ (gain - forgetting) over consecutive pairs = "
        f"{proposal['objective'] * 100:.1f} points ({proposal['search']} search)"
    )


# -- files ---------------------------------------------------------------------------------------------


def folder(out: str | Path, files: list[str], explicit: bool, create: bool = True) -> Path:
    """Where to write ``files``: ``out``, or (when ``out`` was not chosen by the user and already holds one
    of them) its first free numbered sibling. An explicit folder holding one of them is refused.
    ``create=False`` only checks (a command checks its folder before a long study, and writes after)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LifelongError(f"{option('out')} {out} is a file, not a folder; give a folder for the study's report")

    def taken(p: Path) -> str | None:
        return next((f for f in files if (p / f).exists()), None)

    clash = taken(out)
    if clash and explicit:
        raise LifelongError(f"{option('out')} {out} already holds {clash}; give another folder (nothing was replaced)")
    if clash:
        out = next(p for k in itertools.count(2) if not taken(p := out.with_name(f"{out.name}-{k}")))
    if not create:
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LifelongError(
            f"cannot create {out} ({e.strerror or e}); give a writable {option('out')} folder"
        ) from None
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def write_order_report(
    study: OrderStudy,
    out: str | Path,
    explicit: bool = False,
    aff: Affinity | None = None,
    proposal: dict | None = None,
) -> Path:
    """order.md, order.json, order-distribution.png, one best/worst R figure per method (and, with a
    curriculum, the affinity study's files); returns the path of order.md."""
    finished = [m for m in study.methods if study.best_worst(m) is not None]
    files = order_files(study.methods, aff is not None)
    out = folder(out, files, explicit)
    lines = [f"# Task order study: {study.benchmark}", "", "```", describe_order_study(study), "```", ""]
    lines += ["## ACC, BWT and FWT over task orders (%)", "", "```", spread_table(study), "```", ""]
    if study.curriculum is not None:
        lines += [curriculum_line(study, proposal), ""]
    lines += [f"![distribution over orders]({plots.order_distribution(study, out / files[2]).name})", ""]
    for method in finished:
        best, worst = study.best_worst(method)
        lines += [f"## {method}: best order {label(best)}, worst order {label(worst)}", ""]
        for what, order in (("best", best), ("worst", worst)):
            title = f"{what} order {label(order)}: R[i][j] = accuracy (%)"
            lines += ["```", text.matrix(study.R(method, order), study.names(order), title), "```", ""]
        figure = plots.best_worst(study, method, out / f"order-{_slug(method)}-best-worst.png")
        lines += [f"![best and worst R of {method}]({figure.name})", ""]
    lines += ["Definitions:", ""] + [f"- {n}" for n in order_notes(study)]
    if aff is not None:
        lines += ["", "## The affinity study the curriculum comes from", ""]
        lines += _affinity_markdown(aff, out, proposal)
    (out / "order.json").write_text(json.dumps(study.to_dict(), indent=1), encoding="utf-8")
    (out / "order.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "order.md"


def order_files(methods: list[str], curriculum: bool) -> list[str]:
    """The files write_order_report may write."""
    files = ["order.md", "order.json", "order-distribution.png"]
    files += [f"order-{_slug(m)}-best-worst.png" for m in methods]
    return files + (affinity_files() if curriculum else [])


def affinity_files() -> list[str]:
    return ["affinity.json", "affinity-matrices.png", "affinity-dendrogram.png"]


def _affinity_markdown(aff: Affinity, out: Path, proposal: dict | None) -> list[str]:
    heat = plots.affinity_heatmaps(aff, out / "affinity-matrices.png")
    lines = ["```", affinity_text(aff, proposal), "```", "", f"![affinity matrices]({heat.name})", ""]
    if len(aff.task_names) >= 2:
        tree = taxonomy.cluster(aff.gain * 100, aff.forgetting * 100)
        dendro = plots.dendrogram(tree, aff.task_names, out / "affinity-dendrogram.png", "distance (points)")
        lines += [f"![taxonomy]({dendro.name})", ""]
    (out / "affinity.json").write_text(
        json.dumps({**aff.to_dict(), "curriculum": proposal}, indent=1), encoding="utf-8"
    )
    return lines


def write_affinity_report(aff: Affinity, out: str | Path, explicit: bool = False, proposal: dict | None = None) -> Path:
    """affinity.md with the matrices, heatmaps, dendrogram and raw numbers; returns its path."""
    out = folder(out, ["affinity.md", *affinity_files()], explicit)
    lines = [f"# Task affinity: {len(aff.task_names)} tasks", ""] + _affinity_markdown(aff, out, proposal)
    (out / "affinity.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "affinity.md"
