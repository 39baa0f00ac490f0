"""What a sweep prints: one row per run (its settings that vary, status, ACC and BWT, what this
invocation did with it), the counts, and the `lifelong compare` command that compares its runs."""

from __future__ import annotations

import shlex

from lifelong import metrics
from lifelong.experiment import parse_method
from lifelong.results.select import value_text
from lifelong.sweep.driver import Entry
from lifelong.sweep.schema import Sweep


def setting(entry: Entry, key: str):
    """A varying setting of the entry's run: a grid value, or its method's hyper-parameter as recorded
    (si's default λ too, where only ewc's varies); None when its method has no such setting."""
    if key in entry.job.point.settings:
        return entry.job.point.settings[key]
    recorded = ((entry.row or {}).get("config") or {}).get(key)
    return recorded if recorded is not None else parse_method(entry.job.point.method)[1].get(key)


def varying(sweep: Sweep, entries: list[Entry]) -> list[str]:
    """The sweep's grid keys and hyper-parameters that take more than one value among its runs."""
    return [k for k in sweep.varying() if len({value_text(setting(e, k)) for e in entries}) > 1]


def table(sweep: Sweep, entries: list[Entry]) -> str:
    keys = varying(sweep, entries)
    header = ["run", "config", *keys, "method", "seed", *(["order"] if sweep.orders else []), "status", "ACC", "BWT"]
    header.append("this time")
    rows = []
    for e in entries:
        point, row = e.job.point, e.row or {}
        scores = row.get("metrics") or {}
        order = ["natural" if point.order is None else ",".join(map(str, point.order))] if sweep.orders else []
        rows.append(
            [
                str(row.get("id", "–")),
                e.job.key[:10],
                *("–" if setting(e, k) is None else value_text(setting(e, k)) for k in keys),
                parse_method(point.method)[0],
                str(point.seed),
                *order,
                e.status,
                _percent(scores.get("acc")),
                "n/a" if row.get("status") == "finished" and "bwt" not in scores else _percent(scores.get("bwt")),
                e.this_time,
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    numeric = {"run", "seed", "ACC", "BWT", *keys}
    lines = [
        "  ".join(
            (f"{x:>{w}}" if h in numeric else f"{x:<{w}}") for h, x, w in zip(header, r, widths, strict=True)
        ).rstrip()
        for r in [header, *rows]
    ]
    lines.insert(1, "-" * max(len(line) for line in lines))
    notes = [
        "config: the first digits of the run's config hash (sha256 of its resolved settings, seed and order)",
        metrics.DEFINITIONS["acc"],
        metrics.DEFINITIONS["bwt"],
    ]
    if any(e.row and e.row["status"] == "failed" for e in entries):
        first = next(e for e in entries if e.row and e.row["status"] == "failed")
        notes.append(f"failed: run {first.row['id']}: {first.row.get('message')}")
    return "\n".join([*lines, "", *notes])


def counts(entries: list[Entry]) -> str:
    """'8 runs: 7 finished (5 ran now, 1 resumed, 1 recorded before), 1 failed'."""
    finished = [e for e in entries if e.status == "finished"]
    how = {}
    for e in finished:
        how[e.this_time] = how.get(e.this_time, 0) + 1
    detail = ", ".join(f"{n} {'ran now' if what == 'ran' else what}" for what, n in how.items())
    parts = [f"{len(finished)} finished" + (f" ({detail})" if detail else "")]
    for status in ("failed", "killed", "interrupted", "running", "not run"):
        n = sum(e.status == status for e in entries)
        if n:
            parts.append(f"{n} {status}")
    return f"{len(entries)} run{'s' * (len(entries) != 1)}: " + ", ".join(parts)


def compare_command(sweep: Sweep, entries: list[Entry], store: str) -> str:
    """The `lifelong compare` command that groups the sweep's runs by what varies (seeds are the samples)."""
    by = ["method", *(k for k in varying(sweep, entries) if k != "method")]
    if sweep.orders is not None and len({e.job.point.order for e in entries}) > 1:
        by.append("task_order")
    return f"lifelong compare --group {sweep.group} --by {','.join(by)} --store {shlex.quote(store)}"


def to_json(entries: list[Entry]) -> list[dict]:
    out = []
    for e in entries:
        row = e.row or {}
        out.append(
            {
                "run_id": row.get("id"),
                "config_hash": e.job.key,
                "method_spec": e.job.point.method,
                "seed": e.job.point.seed,
                "task_order": None if e.job.point.order is None else list(e.job.point.order),
                "settings": e.job.point.settings,
                "status": e.status,
                "metrics": row.get("metrics"),
                "message": row.get("message"),
                "this_time": e.this_time,
                "error": (e.done or {}).get("error"),
            }
        )
    return out


def _percent(value) -> str:
    return "–" if value is None else f"{value * 100:.1f}"
