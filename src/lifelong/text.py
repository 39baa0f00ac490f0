"""Plain-text rendering of results for the terminal: R matrices and metric tables that name their
definitions."""

from __future__ import annotations

import numpy as np

from lifelong import metrics
from lifelong.data.task import SCENARIO_NAMES
from lifelong.result import Result


def matrix(R, task_names: list[str], title: str) -> str:
    """R (fractions) as a table of percentages: row 0 'init', row i 'after <task i>'."""
    R = np.asarray(R) * 100
    width = max(7, *(len(n) + 1 for n in task_names))
    label_width = max(12, *(len(n) + 7 for n in task_names))
    lines = [title, " " * label_width + "".join(f"{n:>{width}}" for n in task_names)]
    for i, row in enumerate(R):
        label = "init" if i == 0 else f"after {task_names[i - 1]}"
        lines.append(f"{label:<{label_width}}" + "".join(f"{v:>{width}.1f}" for v in row))
    return "\n".join(lines)


def _mean_sd(values: list[float], defined: bool = True) -> str:
    if not defined:
        return "n/a"
    v = np.asarray(values) * 100
    return f"{v.mean():.1f}" if len(v) == 1 else f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def summary_table(groups: dict[str, list[Result]], failures: dict[str, list[str]] | None = None) -> str:
    """One row per method: ACC, BWT, FWT (mean ± sd over the seeds that finished) under the stream's
    scenario, plus ACC/BWT under the other view when the run has one (task-IL and class-IL come together).
    ``failures``: each method's failed runs (their messages); a method whose every run failed gets a row
    that says so, and one with some failed seeds counts them in its seeds column."""
    failures = failures or {}
    finished = [rs[0] for rs in groups.values() if rs]
    if not finished:
        return "\n".join(f"{name:<16} failed: {msgs[0]}" for name, msgs in failures.items() if msgs)
    first = finished[0]
    views = [first.scenario] + [v for v in first.views if v != first.scenario]
    header = ["method", "seeds"]
    for v in views:
        tag = "" if v == first.scenario else f" {SCENARIO_NAMES[v]}"
        header += [f"ACC{tag}", f"BWT{tag}"] + (["FWT"] if v == first.scenario else [])
    header.append("train s")
    rows = []
    for name, results in groups.items():
        n_failed = len(failures.get(name, []))
        seeds = str(len(results)) if not n_failed else f"{len(results)} of {len(results) + n_failed}"
        if not results:
            rows.append([name, seeds, *(["FAILED"] + [""] * (len(header) - 3))])
            continue
        row = [name, seeds]
        sequential = results[0].sequential  # joint learns all tasks at once: no BWT or FWT
        for v in views:
            Rs = [r.views[v] for r in results]
            row += [_mean_sd([metrics.acc(R) for R in Rs]), _mean_sd([metrics.bwt(R) for R in Rs], sequential)]
            if v == first.scenario:
                row.append(_mean_sd([metrics.fwt(R) for R in Rs], sequential))
        row.append(f"{np.mean([sum(r.timings.get('train_s', [])) for r in results]):.1f}")
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(f"{x:>{w}}" if j else f"{x:<{w}}" for j, (x, w) in enumerate(zip(r, widths, strict=True))).rstrip()
        for r in [header, *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    notes = [
        f"scenario: {SCENARIO_NAMES[first.scenario]}; accuracies in % on each task's test set; mean ± sd over seeds",
        metrics.DEFINITIONS["acc"],
        metrics.DEFINITIONS["bwt"],
        metrics.DEFINITIONS["fwt"],
    ]
    if not all(rs[0].sequential for rs in groups.values() if rs):
        notes.append("n/a: trained on all tasks in one stage (joint), so no backward or forward transfer")
    for name, messages in failures.items():
        if messages:
            seeds = "every seed" if not groups.get(name) else f"{len(messages)} seed(s)"
            notes.append(f"FAILED {name} ({seeds}): {messages[0]}")
    return "\n".join(lines + [""] + notes)
