"""The landscape's report: ``report.md`` with its figures (landscape.png, landscape-lines.png) and every
number (landscape.json) in one folder, in the style of lifelong.results.report; and the same numbers as
terminal text (``summary``).

A report never replaces a file: an explicit folder that already holds one of these files is refused, and
a default folder that does gets a numbered sibling (as `lifelong order` and `lifelong report` do).
"""

from __future__ import annotations

import datetime
import itertools
import json
from pathlib import Path

from lifelong.data.task import SCENARIO_NAMES
from lifelong.errors import LifelongError, option
from lifelong.landscape import plots
from lifelong.landscape.result import Landscape

FILES = ("report.md", "landscape.json", "landscape.png", "landscape-lines.png")
DPI = 100

CLIMB = "climb = max over 0 ≤ t ≤ 1 of L(θ(t)) − L(θ*₁): how far the task's loss rises on the way from θ*₁"
BARRIER = (
    "barrier = max over 0 ≤ t ≤ 1 of L(θ(t)) − ((1 − t) L(θ*₁) + t L(θ_end)): the rise above the straight "
    "interpolation of the ends' losses (Frankle et al. 2020, arXiv 1912.05671; 0: no barrier)"
)


def folder(out: str | Path, explicit: bool, create: bool = True) -> Path:
    """Where the report goes: ``out``, or, when ``out`` was not chosen by the user and already holds one of
    the report's files, its first free numbered sibling; an explicit ``out`` holding one is refused.
    ``create=False`` only checks (the command checks before training, and writes after)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LifelongError(f"{option('out')} {out} is a file, not a folder; give a folder for the report")

    def taken(p: Path) -> str | None:
        return next((f for f in FILES if (p / f).exists()), None)

    clash = taken(out)
    if clash and explicit:
        raise LifelongError(f"{option('out')} {out} already holds {clash}; give another folder (nothing was replaced)")
    if clash:
        out = next(p for k in itertools.count(2) if not taken(p := out.with_name(f"{out.name}-{k}")))
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LifelongError(f"cannot create {out} ({e.strerror or e}); give a writable {option('out')}") from None
    return out


def write(ls: Landscape, out: str | Path, explicit: bool = True) -> Path:
    """Write the report into ``out``; returns the path of report.md. ``explicit``: refuse a folder that
    already holds one of the report's files (else take a numbered sibling)."""
    out = folder(out, explicit)
    (out / "landscape.json").write_text(json.dumps(ls.to_dict(), indent=1) + "\n", encoding="utf-8")
    plots.plane_figure(ls).savefig(out / "landscape.png", dpi=DPI)
    plots.lines_figure(ls).savefig(out / "landscape-lines.png", dpi=DPI)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t1, t2 = ls.task_names
    lines = [
        "# Why forgetting happens: the loss surfaces of two tasks",
        "",
        f"{header(ls)}. Reported {now}.",
        "",
        "## The two tasks' loss over the plane through the three solutions",
        "",
        f"The plane passes through θ*₁ (after task 1, {t1}), θ*₂ after task 2 ({t2}) with fine-tuning, and θ*₂ "
        f"after task 2 with {ls.method}, all from one initialisation and the same batches. Axes: a along θ*₂ "
        f"finetune − θ*₁, b along the part of θ*₂ {ls.method} − θ*₁ orthogonal to it (Gram–Schmidt), in units "
        "of parameter-space distance, so lengths and angles are true. The lines are task 2's training paths, "
        f"θ recorded every {ls.settings['landscape']['every']} steps and projected onto the plane.",
        "",
        "![task 1's and task 2's loss over the plane, and both overlaid with the paths](landscape.png)",
        "",
        *points_table(ls),
        "",
        f"Losses and accuracies on {_samples(ls)} of each task's {ls.settings['landscape']['eval_split']} set; "
        f"accuracies in %. Low-loss region (overlay): loss at most {plots.LOW:g} × the task's loss at its own "
        f"solution (θ*₁ for task 1, the better θ*₂ for task 2): task 1 ≤ {plots.low_loss_threshold(ls, 0):.2f}, "
        f"task 2 ≤ {plots.low_loss_threshold(ls, 1):.2f}; chance (a uniform guess) is {ls.chance_loss[0]:.2f}.",
        "",
        *path_lines(ls),
        "",
        "## Straight lines from θ*₁ (linear mode connectivity)",
        "",
        "Each task's loss at θ(t) = (1 − t) θ*₁ + t θ_end, to θ*₂ finetune, to θ*₂ "
        f"{ls.method} and to the joint solution (both tasks at once; Mirzadeh et al. 2021, arXiv 2010.04495).",
        "",
        "![loss and accuracy along the three lines](landscape-lines.png)",
        "",
        *lines_table(ls),
        "",
        f"- {CLIMB}",
        f"- {BARRIER}",
        "",
        "## Settings and cost",
        "",
        *settings_lines(ls),
    ]
    if ls.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in ls.notes]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def header(ls: Landscape) -> str:
    train = ls.settings["train"]
    length = f"{train['iterations']} iterations" if train["iterations"] else f"{train['epochs']} epochs"
    hyper = "".join(f" {k}={v}" for k, v in ls.method_settings.items() if k == "lam")
    return (
        f"{ls.benchmark} · {SCENARIO_NAMES[ls.scenario]} · tasks {ls.task_names[0]} → {ls.task_names[1]} · "
        f"{ls.method}{hyper} against finetune · {train['optimizer'].upper()} lr {train['lr']}, {length}/task, "
        f"batch {train['batch_size']} · seed {train['seed']} · grid {len(ls.a)} × {len(ls.b)}"
    )


def points_table(ls: Landscape) -> list[str]:
    rows = [["point", "task 1 loss", "task 1 acc", "task 2 loss", "task 2 acc", "(a, b)", "off the plane"]]
    for p in ("task1", "finetune", "method", "joint"):
        a, b = ls.coords[p]
        off = f"{ls.off_plane[p]:.3g}" if p == "joint" else "0 (anchor)"
        rows.append(
            [
                ls.label(p),
                f"{ls.loss[p][0]:.3f}",
                f"{100 * ls.accuracy[p][0]:.1f}",
                f"{ls.loss[p][1]:.3f}",
                f"{100 * ls.accuracy[p][1]:.1f}",
                f"({a:.2f}, {b:.2f})" + (" projected" if p == "joint" else ""),
                off,
            ]
        )
    return _md_table(rows)


def lines_table(ls: Landscape) -> list[str]:
    rows = [["line", "task 1 at the end", "task 1 climb", "task 1 barrier", "task 2 at the end", "task 2 barrier"]]
    for end, line in ls.lines.items():
        rows.append(
            [
                f"θ*₁ → {ls.label(end)}",
                f"{line.at(1, 0):.3f}",
                f"{line.climb(0):.3f}",
                f"{line.barrier(0):.3f}",
                f"{line.at(1, 1):.3f}",
                f"{line.barrier(1):.3f}",
            ]
        )
    return _md_table(rows)


def path_lines(ls: Landscape) -> list[str]:
    out = []
    for run in ("finetune", "method"):
        name = "finetune" if run == "finetune" else ls.method
        length = _length(ls.paths[run])
        out.append(
            f"- {name}: {len(ls.paths[run])} points; its projection is {length:.2f} long; its points lie at most "
            f"{ls.path_off_plane[run]:.3g} from the plane"
        )
    return out


def settings_lines(ls: Landscape) -> list[str]:
    t = ls.timings
    train = ", ".join(f"{k}={v}" for k, v in ls.settings["train"].items())
    own = ", ".join(f"{k}={v}" for k, v in ls.settings["landscape"].items())
    hyper = ", ".join(f"{k}={v}" for k, v in ls.method_settings.items())
    return [
        f"- training: {train}",
        f"- {ls.method}: {hyper or 'defaults'}",
        f"- landscape: {own}",
        f"- seconds: {t['train_s']:.1f} training (finetune, {ls.method}, joint), {t['grid_s']:.1f} the grid, "
        f"{t['lines_s']:.1f} the lines",
        "- every number above is in landscape.json",
    ]


def summary(ls: Landscape) -> str:
    """The numbers as terminal text: the points, the lines, the cost."""
    rows = [["point", "task 1 loss", "acc %", "task 2 loss", "acc %"]]
    for p in ("task1", "finetune", "method", "joint"):
        rows.append(
            [ls.label(p), *(f"{v:.3f}" if k % 2 == 0 else f"{100 * v:.1f}" for k, v in enumerate(_pair(ls, p)))]
        )
    lines = [header(ls), "", *_text_table(rows), ""]
    rows = [["line from θ*₁ to", "task 1 climb", "barrier", "task 2 barrier"]]
    for end, line in ls.lines.items():
        rows.append([ls.label(end), f"{line.climb(0):.3f}", f"{line.barrier(0):.3f}", f"{line.barrier(1):.3f}"])
    lines += [*_text_table(rows), "", CLIMB, BARRIER]
    t = ls.timings
    lines += [f"seconds: training {t['train_s']:.1f}, grid {t['grid_s']:.1f}, lines {t['lines_s']:.1f}"]
    lines += [f"note: {n}" for n in ls.notes]
    return "\n".join(lines)


def _pair(ls: Landscape, p: str) -> list[float]:
    return [ls.loss[p][0], ls.accuracy[p][0], ls.loss[p][1], ls.accuracy[p][1]]


def _samples(ls: Landscape) -> str:
    n = ls.settings["landscape"]["eval_samples"]
    return "all examples" if n is None else f"{n} examples (at most)"


def _length(path) -> float:
    import numpy as np

    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())


def _md_table(rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    return [line(rows[0]), "|" + "---|" * len(rows[0]), *(line(r) for r in rows[1:])]


def _text_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    fmt = [(lambda c, w: f"{c:<{w}}") if k == 0 else (lambda c, w: f"{c:>{w}}") for k in range(len(widths))]
    out = ["  ".join(f(c, w) for f, c, w in zip(fmt, r, widths, strict=True)) for r in rows]
    out.insert(1, "-" * len(out[0]))
    return out
