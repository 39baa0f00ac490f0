"""`lifelong compare`: recorded runs grouped by any of their settings, each group's metrics over its
seeds (mean ± sd and the 95 % t interval), the groups ranked, and every pair tested.

    runs = compare.load(store, select(store, group="latest"))
    c = compare.compare(runs, by=["method", "lr"], metric="acc")
    print(compare.text(c)); compare.write(c, "cmp/")     # compare.md, compare.csv, tests.csv, compare.png

Groups are the distinct values of the ``by`` settings (select.settings: ``method``, ``lr``, ``lam``,
``benchmark``, ``scenario``, ``group``...); the runs of a group are its seeds. Every metric of
lifelong.metrics is summarised (ACC, BWT, FWT, forgetting, average incremental accuracy, and the GEM
code's BWT_T, FWT_T), plus ACC and BWT under each other evaluation view a run has (task-IL and class-IL
of one model). A metric a run does not define (BWT of joint training) is left out of that group's sample.

The ranking orders the groups by the mean of one metric (``metric``, ACC by default; lower is better only
for forgetting). Each pair of groups is tested on that metric: the paired t-test on the seed-by-seed
differences when both groups ran exactly the same seeds (once each), else Welch's t-test; two-sided; the
p-values of all pairs are adjusted together by Holm's method (stats.py says why these). A group whose
runs differ in a setting other than the ``by`` keys and the seed (``ewc`` at two λ's under ``--by
method``) is compared as one sample, and a note says which settings differ, so that it can be split.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lifelong import metrics
from lifelong.data.task import SCENARIO_NAMES
from lifelong.errors import LifelongError, option
from lifelong.result import Result
from lifelong.results import stats
from lifelong.results.select import Selection, check_keys, settings, value_text
from lifelong.results.store import Store

# Metric key -> the name tables print. Definitions: metrics.DEFINITIONS (views: _definition).
NAMES = {
    "acc": "ACC",
    "bwt": "BWT",
    "fwt": "FWT",
    "forgetting": "Forgetting",
    "avg_inc_acc": "AIA",
    "bwt_gem_code": "BWT_T",
    "fwt_gem_code": "FWT_T",
}
LOWER_IS_BETTER = {"forgetting"}
VIEW_KEYS = ("acc", "bwt")  # scored again under each other evaluation view, as `lifelong run` prints them
PLOTTED = ("acc", "bwt", "fwt")
# Settings that do not change what is learned, or that name a run rather than set it: runs of one group may
# differ in these without a note.
NOT_SETTINGS = {"seed", "group", "method_spec", "device", "eval_batch_size", "eval_every_epoch", "data_dir"}
FILES = ("compare.md", "compare.csv", "tests.csv", "compare.png")


@dataclasses.dataclass
class Group:
    """The runs that share the values of the ``by`` settings; ``scores``: metric -> one value per run
    (nan where the run does not define it)."""

    values: tuple[str, ...]
    rows: list[dict[str, Any]]
    scores: dict[str, list[float]]

    @property
    def seeds(self) -> list:
        return [r["seed"] for r in self.rows]


@dataclasses.dataclass
class Pair:
    """The test of groups[a] against groups[b] (a ranked above b) on the ranking metric."""

    a: int
    b: int
    test: stats.TTest
    n: tuple[int, int]
    p_holm: float = math.nan


@dataclasses.dataclass
class Comparison:
    by: list[str]
    metric: str  # the ranking metric
    alpha: float
    groups: list[Group]  # best first by the ranking metric
    metrics: list[str]  # every metric some run defines, in table order
    pairs: list[Pair]
    notes: list[str]  # what a reader must know before trusting the numbers (mixed settings, repeated seeds)
    left_out: list[int] = dataclasses.field(default_factory=list)  # unfinished runs of the selection

    def summary(self, group: Group, metric: str) -> stats.Summary:
        return stats.describe(group.scores.get(metric, []))

    def label(self, group: Group) -> str:
        """'ewc' for one ``by`` key; 'method=ewc, lr=0.1' for several."""
        if len(self.by) == 1:
            return group.values[0]
        return ", ".join(f"{k}={v}" for k, v in zip(self.by, group.values, strict=True))

    @property
    def n_runs(self) -> int:
        return sum(len(g.rows) for g in self.groups)


def load(store: Store, selection: Selection) -> list[tuple[dict[str, Any], Result]]:
    """The selected runs with their Results (R and every evaluation view)."""
    return [(row, store.result(row["id"])) for row in selection.rows]


def compare(
    runs: Sequence[tuple[dict[str, Any], Result]],
    by: Sequence[str] = ("method",),
    metric: str = "acc",
    alpha: float = 0.05,
    left_out: Sequence[int] = (),
) -> Comparison:
    """Group ``runs`` (store rows with their Results) by the settings ``by``, rank the groups by ``metric``
    and test every pair on it (see the module's docstring)."""
    by = [k.strip().replace("-", "_") for k in by if k.strip()]
    if not by:
        raise LifelongError(f"{option('by')} needs one or more settings, e.g. method or method,lr")
    if not 0 < alpha < 1:
        raise LifelongError(f"{option('alpha')} must lie between 0 and 1 (got {alpha})")
    check_keys([row for row, _ in runs], by, "by")
    groups: dict[tuple[str, ...], Group] = {}
    for row, result in runs:
        values = tuple(value_text(settings(row).get(k)) for k in by)
        group = groups.setdefault(values, Group(values, [], {}))
        group.rows.append(row)
        scored = scores(result)
        for key in set(group.scores) | set(scored):
            group.scores.setdefault(key, [math.nan] * (len(group.rows) - 1)).append(scored.get(key, math.nan))
    found = {k for g in groups.values() for k, v in g.scores.items() if np.isfinite(v).any()}
    order = _metric_order(found)
    for g in groups.values():  # a group none of whose runs defines a metric (BWT of joint) still has a row
        for key in order:
            g.scores.setdefault(key, [math.nan] * len(g.rows))
    if metric not in order:
        raise LifelongError(
            f"{option('metric')} {metric!r} is not a metric of these runs; choose one of {', '.join(order)}"
        )
    ranked = sorted(groups.values(), key=lambda g: _rank_key(g, metric))
    c = Comparison(by, metric, alpha, ranked, order, [], [], list(left_out))
    c.pairs = _pairs(c)
    c.notes = _notes(c)
    return c


def scores(result: Result) -> dict[str, float]:
    """Every metric of one run: metrics.summary of R (only ACC for joint training, which has no order),
    plus ACC and BWT under each evaluation view other than the stream's own ('acc@class')."""
    out = dict(result.metrics())
    for view, R in result.views.items():
        if view != result.scenario:
            out[f"acc@{view}"] = metrics.acc(R)
            if result.sequential:
                out[f"bwt@{view}"] = metrics.bwt(R)
    return out


def name(key: str) -> str:
    """The name a table prints: 'ACC', 'BWT class-IL'."""
    base, _, view = key.partition("@")
    return NAMES[base] + (f" {SCENARIO_NAMES.get(view, view)}" if view else "")


def definition(key: str) -> str:
    base, _, view = key.partition("@")
    if not view:
        text = metrics.DEFINITIONS[base]
        return text if text.startswith(NAMES[base]) else f"{NAMES[base]}: {text}"
    return f"{name(key)}: {NAMES[base]} of R evaluated {SCENARIO_NAMES.get(view, view)} (the same model)"


def higher_is_better(key: str) -> bool:
    return key.partition("@")[0] not in LOWER_IS_BETTER


# -- what compare computes --------------------------------------------------------------------------------


def _metric_order(found: set[str]) -> list[str]:
    views = sorted({k.partition("@")[2] for k in found if "@" in k})
    return [k for k in NAMES if k in found] + [f"{b}@{v}" for v in views for b in VIEW_KEYS if f"{b}@{v}" in found]


def _rank_key(group: Group, metric: str) -> tuple[bool, float]:
    mean = stats.describe(group.scores.get(metric, [])).mean
    if math.isnan(mean):
        return (True, 0.0)  # groups that do not define the metric come last, in their order of appearance
    return (False, -mean if higher_is_better(metric) else mean)


def _pairs(c: Comparison) -> list[Pair]:
    """Every pair of groups tested on the ranking metric, then Holm's adjustment over all of them."""
    pairs = []
    for i, a in enumerate(c.groups):
        for j in range(i + 1, len(c.groups)):
            b = c.groups[j]
            sa, sb = a.scores.get(c.metric, []), b.scores.get(c.metric, [])
            n = (int(np.isfinite(sa).sum()), int(np.isfinite(sb).sum()))
            if _same_seeds(a, b):
                ordered = sorted(b.seeds)
                test = stats.paired(_by_seed(a, sa, ordered), _by_seed(b, sb, ordered))
            else:
                test = stats.welch(sa, sb)
            pairs.append(Pair(i, j, test, n))
    for pair, p in zip(pairs, stats.holm([p.test.p for p in pairs]), strict=True):
        pair.p_holm = p
    return pairs


def _same_seeds(a: Group, b: Group) -> bool:
    """True when both groups ran exactly the same seeds, each once: then the seeds pair up."""
    return len(set(a.seeds)) == len(a.seeds) == len(b.seeds) and set(a.seeds) == set(b.seeds)


def _by_seed(group: Group, values: list[float], seeds: list) -> list[float]:
    at = dict(zip(group.seeds, values, strict=True))
    return [at[s] for s in seeds]


def _notes(c: Comparison) -> list[str]:
    notes = []
    for g in c.groups:
        differing = {}
        for key in sorted({k for r in g.rows for k in settings(r)} - set(c.by) - NOT_SETTINGS):
            seen = list(dict.fromkeys(value_text(settings(r).get(key)) for r in g.rows))
            if len(seen) > 1:
                differing[key] = seen
        if differing:
            what = "; ".join(f"{k} ({', '.join(v)})" for k, v in differing.items())
            example = ",".join([*c.by, next(iter(differing))])
            notes.append(
                f"{c.label(g)} mixes runs that differ in {what}: they are summarised as one sample; add the "
                f"setting to the grouping ({option('by')}: {example}) or narrow the selection with {option('where')}"
            )
        repeated = sorted({s for s in g.seeds if g.seeds.count(s) > 1}, key=str)
        if repeated and not differing:  # seeds that repeat because settings differ: the note above says it
            notes.append(
                f"{c.label(g)} has seed {', '.join(map(str, repeated))} more than once: repeated runs of one seed "
                "are not independent samples (its tests use Welch's, not the paired test)"
            )
    return notes


# -- what compare prints and writes ---------------------------------------------------------------------

UNITS = (
    "accuracies in %; mean ± sd: the sample sd (n − 1) over seeds; 95 % CI: the mean's two-sided interval "
    "from Student's t with n − 1 degrees of freedom"
)


def streams(c: Comparison) -> str:
    """What the runs were trained on: 'split-synthetic, task-IL, 3 tasks', or each of them when they differ
    (R is scored in each stream's own scenario)."""
    seen = {
        f"{r.get('benchmark')}, {SCENARIO_NAMES.get(r.get('scenario'), r.get('scenario'))}, "
        f"{len((r.get('R') or [[]])[0])} tasks"
        for g in c.groups
        for r in g.rows
    }
    return "; ".join(sorted(seen))


def method_text(c: Comparison) -> str:
    """How the groups were tested, in one sentence (printed and written with the tests)."""
    m = len([p for p in c.pairs if math.isfinite(p.test.p)])
    return (
        f"each pair tested on {name(c.metric)}: the paired t-test on the seed-by-seed differences where both "
        "groups ran the same seeds, else Welch's t-test (unequal variances, Welch 1947); two-sided; p adjusted "
        f"for the {m} test{'s' * (m != 1)} together by Holm's step-down method (Holm 1979); "
        f"significant: adjusted p < {c.alpha:g}"
    )


def ranking_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """rank, the by keys, n, mean ± sd and CI of the ranking metric, and whom it beats significantly."""
    header = ["rank", *c.by, "n", f"{name(c.metric)} mean ± sd", "95 % CI", f"better than (Holm p < {c.alpha:g})"]
    rows = []
    for i, g in enumerate(c.groups):
        s = c.summary(g, c.metric)
        beats = [c.label(c.groups[p.b]) for p in c.pairs if p.a == i and p.p_holm < c.alpha]
        rows.append([str(i + 1), *g.values, str(s.n), _mean_sd(s), _ci(s), ", ".join(beats) or "–"])
    return header, rows


def metric_rows(c: Comparison, key: str) -> tuple[list[str], list[list[str]]]:
    header = [*c.by, "n", "seeds", "mean ± sd", "95 % CI"]
    rows = []
    for g in c.groups:
        s = c.summary(g, key)
        seeds = [str(seed) for seed, v in zip(g.seeds, g.scores.get(key, []), strict=True) if math.isfinite(v)]
        rows.append([*g.values, str(s.n), ",".join(seeds) or "–", _mean_sd(s), _ci(s)])
    return header, rows


def pair_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["pair", "test", "n", f"diff of {name(c.metric)}", "t", "df", "p", "p (Holm)", ""]
    rows = []
    for p in c.pairs:
        t = p.test
        pair = f"{c.label(c.groups[p.a])} vs {c.label(c.groups[p.b])}"
        significant = "*" if p.p_holm < c.alpha else ""
        if t.why:
            rows.append([pair, t.kind, f"{p.n[0]},{p.n[1]}", _signed(t.diff), "–", "–", "–", "–", f"no test: {t.why}"])
            continue
        df = f"{t.df:.0f}" if t.kind == "paired" else f"{t.df:.2f}"
        rows.append(
            [pair, t.kind, f"{p.n[0]},{p.n[1]}", _signed(t.diff), f"{t.t:.3f}", df, _p(t.p), _p(p.p_holm), significant]
        )
    return header, rows


def text(c: Comparison) -> str:
    """The terminal form: one table per metric, the ranking, the tests, the notes."""
    seeds = sorted({s for g in c.groups for s in g.seeds}, key=str)
    head = (
        f"compare: {c.n_runs} run{'s' * (c.n_runs != 1)} in {len(c.groups)} group{'s' * (len(c.groups) != 1)} "
        f"by {','.join(c.by)}; "
        f"seeds {','.join(map(str, seeds))}"
    )
    if c.left_out:
        head += f"; left out {len(c.left_out)} unfinished run{'s' * (len(c.left_out) > 1)}"
    lines = [head, f"runs of {streams(c)}", UNITS]
    for key in c.metrics:
        lines += ["", definition(key), *_columns(*metric_rows(c, key))]
    lines += ["", f"ranking by {name(c.metric)} ({'higher' if higher_is_better(c.metric) else 'lower'} is better):"]
    lines += _columns(*ranking_rows(c))
    if c.pairs:
        lines += ["", method_text(c), *_columns(*pair_rows(c))]
    if c.notes:
        lines += [""] + [f"note: {n}" for n in c.notes]
    return "\n".join(lines)


def write(c: Comparison, out: str | Path, explicit: bool = False) -> Path:
    """compare.md, compare.csv (one row per group and metric), tests.csv and compare.png in ``out``;
    returns the path of compare.md. An explicit folder that holds one of these files is refused; a default
    one gets a numbered sibling (nothing is ever replaced)."""
    from lifelong.results import report
    from lifelong.studies.report import folder

    out = folder(out, list(FILES), explicit)
    md = [f"# Comparison of {c.n_runs} runs by {', '.join(c.by)}", "", f"Runs of {streams(c)}; {UNITS}."]
    if c.left_out:
        md += ["", f"Left out (did not finish): runs {', '.join(map(str, c.left_out))}."]
    md += ["", f"## Ranking by {name(c.metric)}", "", *report._md_table(*ranking_rows(c))]
    if c.pairs:
        md += ["", method_text(c) + ".", "", *report._md_table(*pair_rows(c))]
    md += ["", "## Every metric", ""]
    for key in c.metrics:
        md += [f"**{definition(key)}**", "", *report._md_table(*metric_rows(c, key)), ""]
    md += [f"![mean and 95 % CI per group]({_plot(c, out / 'compare.png').name})"]
    if c.notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in c.notes]
    (out / "compare.csv").write_text(_summary_csv(c), encoding="utf-8")
    (out / "tests.csv").write_text(_tests_csv(c), encoding="utf-8")
    path = out / "compare.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def _summary_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*c.by, "rank", "metric", "name", "n", "seeds", "mean_pct", "sd_pct", "ci95_low_pct", "ci95_high_pct"])
    for rank, g in enumerate(c.groups, start=1):
        for key in c.metrics:
            s = c.summary(g, key)
            seeds = [str(seed) for seed, v in zip(g.seeds, g.scores.get(key, []), strict=True) if math.isfinite(v)]
            numbers = [_num(x * 100) for x in (s.mean, s.sd, s.low, s.high)]
            w.writerow([*g.values, rank, key, name(key), s.n, " ".join(seeds), *numbers])
    return buf.getvalue()


def _tests_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["a", "b", "metric", "test", "n_a", "n_b", "diff_pct", "t", "df", "p", "p_holm", "significant", "why"])
    for p in c.pairs:
        t = p.test
        w.writerow(
            [c.label(c.groups[p.a]), c.label(c.groups[p.b]), c.metric, t.kind, *p.n, _num(t.diff * 100), _num(t.t)]
            + [_num(t.df), _num(t.p), _num(p.p_holm), str(p.p_holm < c.alpha).lower(), t.why]
        )
    return buf.getvalue()


def _plot(c: Comparison, path: Path) -> Path:
    """ACC, BWT and FWT (and the ranking metric): per group, the mean with its 95 % CI as a bar, and every
    seed's value as a dot; groups in ranking order, best on top."""
    from lifelong.results import report

    keys = [k for k in PLOTTED if k in c.metrics] + ([c.metric] if c.metric not in PLOTTED else [])
    fig = report._figure(1, len(keys), width=min(12.0, 1.5 + 3.4 * len(keys)), height=1.6 + 0.4 * len(c.groups))
    for ax, key in zip(fig.axes, keys, strict=True):
        for y, g in enumerate(c.groups):
            s = c.summary(g, key)
            seeds = np.asarray(g.scores.get(key, []), dtype=float) * 100
            ax.scatter(seeds, np.full(len(seeds), y), s=12, color="gray", alpha=0.7, zorder=2)
            if s.n == 0:
                ax.text(0.02, y, "n/a", transform=ax.get_yaxis_transform(), va="center", fontsize=8, color="dimgray")
                continue
            if s.n > 1:
                xerr = [[(s.mean - s.low) * 100], [(s.high - s.mean) * 100]]
                ax.errorbar([s.mean * 100], [y], xerr=xerr, fmt="none", ecolor="C0", capsize=4, zorder=3)
            ax.plot([s.mean * 100], [y], "|", color="C0", markersize=14, markeredgewidth=2.5, zorder=4)
            end = max(s.high if s.n > 1 else s.mean, np.nanmax(seeds) / 100)  # right of the bar and the dots
            ax.annotate(f"{s.mean * 100:.1f}", (end * 100, y), xytext=(5, 0), textcoords="offset points", va="center")
        ax.set_yticks(range(len(c.groups)), [c.label(g) for g in c.groups])
        ax.set_ylim(len(c.groups) - 0.5, -0.5)
        if key.startswith("acc"):
            ax.set_xlim(0, 108)  # room for the label of a mean near 100
        else:
            ax.margins(x=0.15)
        if key != "acc":  # transfer metrics: the sign is what matters
            ax.axvline(0, color="black", linewidth=0.6)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(f"{name(key)} (%)")
        ax.set_title(definition(key).rsplit(" (", 1)[0], fontsize=9)  # the formula, without its gloss
    fig.suptitle("Mean (tick, with its value) and 95 % CI (bar, Student t) over seeds; gray dots: single seeds")
    return report._save(fig, path)


def _columns(header: list[str], rows: list[list[str]]) -> list[str]:
    """A plain-text table: the first columns (names) left-aligned, the numbers right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    numeric = [all(map(_numeric, col)) and any(x != "–" for x in col) for col in zip(*rows, strict=True)]
    lines = []
    for cells in [header, *rows]:
        parts = [f"{x:>{w}}" if numeric[j] else f"{x:<{w}}" for j, (x, w) in enumerate(zip(cells, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return lines


def _numeric(cell: str) -> bool:
    return cell.replace(".", "").replace("−", "").replace("-", "").replace("+", "").strip().isdigit() or cell == "–"


def _mean_sd(s: stats.Summary) -> str:
    if s.n == 0:
        return "n/a"
    return f"{s.mean * 100:.2f}" + (f" ± {s.sd * 100:.2f}" if s.n > 1 else "")


def _ci(s: stats.Summary) -> str:
    return f"[{s.low * 100:.2f}, {s.high * 100:.2f}]" if s.n > 1 else "–"


def _signed(x: float) -> str:
    return "–" if math.isnan(x) else f"{x * 100:+.2f}"


def _p(p: float) -> str:
    return "–" if math.isnan(p) else (f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}")


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.10g}"
