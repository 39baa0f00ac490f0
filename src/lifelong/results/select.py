"""Which recorded runs a command reads, and what a run's setting is: shared by `lifelong compare` and
`lifelong export`.

A selection is every run of the store, or the runs named (``7``, ``run-0007``, ``latest``, a range
``3..8``), or a run group (``--group 20261127-101500-ab12`` or ``latest``), narrowed by ``--where
key=value`` filters on the run's settings. Only finished runs have results: a run named by its id that
did not finish is an error (as in `lifelong report`), while one that merely falls inside a group, a range
or the whole store is left out and counted.

A run's settings are its row's config (every option of the run, flat: ``method``, ``lr``, ``lam``,
``hidden``, ``seed``…) with the resolved ``benchmark``, ``scenario`` and ``method`` of its result (the
config's ``scenario`` is None when the benchmark's default was used) and its ``group``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from lifelong.errors import LifelongError, option
from lifelong.results.store import Store


@dataclasses.dataclass
class Selection:
    """The finished runs selected (rows as Store.get returns them, oldest first) and the ids of those
    left out because they did not finish."""

    rows: list[dict[str, Any]]
    unfinished: list[int]


def select(store: Store, refs: Sequence[str] = (), group: str | None = None, where: Sequence[str] = ()) -> Selection:
    """The runs named by ``refs`` (ids, run-NNNN, latest, ranges A..B), else those of ``group``
    ('latest': the most recent group), else every run; then only those matching every ``where``."""
    filters = [parse_where(w) for w in where]
    named: set[int] = set()
    if refs:
        ids = []
        for ref in refs:
            found = _expand(store, ref)
            ids += found
            if ".." not in str(ref):
                named.update(found)
        rows = [store.get(i) for i in dict.fromkeys(ids)]
    else:
        if group is not None and group.strip().lower() == "latest":
            group = store.latest_group()
        rows = store.group_runs(group) if group is not None else store.runs()
    rows = [r for r in rows if all(matches(r, key, value) for key, value in filters)]
    for r in rows:
        if r["id"] in named and r["status"] != "finished":
            why = f" ({r['message']})" if r.get("message") else ""
            raise LifelongError(f"run {r['id']} is {r['status']}{why}, so it has no results; leave it out")
    finished = [r for r in rows if r["status"] == "finished"]
    if not finished:
        what = "the runs selected" if refs or group or filters else store.name
        raise LifelongError(f"no finished runs in {what}; run an experiment first or change the selection")
    return Selection(finished, [r["id"] for r in rows if r["status"] != "finished"])


def settings(row: dict[str, Any]) -> dict[str, Any]:
    """The run's settings, flat: its config, with the resolved benchmark, scenario and method and its group."""
    resolved = {k: row[k] for k in ("benchmark", "scenario", "method") if row.get(k) is not None}
    return {**(row.get("config") or {}), **resolved, "group": row.get("group")}


def value_text(value: Any) -> str:
    """A setting as one short string: 0.1, 10, [400, 400] as '400,400', None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(value_text(v) for v in value)
    return str(value)


def parse_where(text: str) -> tuple[str, str]:
    """'lr=0.1' -> ('lr', '0.1')."""
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise LifelongError(f"{option('where')} {text!r} is not key=value; write e.g. method=ewc or lr=0.1")
    return key.strip().replace("-", "_"), value.strip()


def matches(row: dict[str, Any], key: str, value: str) -> bool:
    """True when the run's setting ``key`` equals ``value`` as value_text writes it (``method=ewc``,
    ``hidden=400,400``, ``scenario=class``), or as a number (``lr=1e-1`` matches 0.1)."""
    have = settings(row).get(key)
    if value_text(have) == value.replace(", ", ","):
        return True
    if isinstance(have, int | float) and not isinstance(have, bool):
        try:
            return float(value) == float(have)
        except ValueError:
            return False
    return False


def check_keys(rows: Sequence[dict[str, Any]], keys: Sequence[str], flag: str) -> None:
    """Refuse a key that no selected run has (a typo such as `--by methd`), naming the keys there are."""
    known = {k for r in rows for k in settings(r)}
    for key in keys:
        if key not in known:
            shown = ", ".join(sorted(known - {"config"})[:40])
            raise LifelongError(f"{option(flag)}: no run selected has a setting {key!r}; settings are: {shown}")


def _expand(store: Store, ref: str) -> list[int]:
    """One reference as run ids: '7', 'run-0007', 'latest', or an inclusive range '3..8' (the ids of that
    range that exist; ids deleted or never made are skipped)."""
    text = str(ref).strip()
    if ".." in text:
        lo, _, hi = text.partition("..")
        if not (lo.strip().isdigit() and hi.strip().isdigit()) or int(lo) > int(hi):
            raise LifelongError(f"{ref!r} is not a range of runs; write it as FIRST..LAST, e.g. 3..8")
        ids = [r["id"] for r in store.runs() if int(lo) <= r["id"] <= int(hi)]
        if not ids:
            raise LifelongError(f"no runs {text} in {store.name}; give ids that exist (see `lifelong show latest`)")
        return ids
    return [store.resolve(text)]
