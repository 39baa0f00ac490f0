"""The `lifelong` command line. It only assembles what the library provides: config.py resolves
options, experiment.py runs them, results/ stores and reports them, text.py prints them."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import re
import sys
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

from lifelong import benchmarks, config, methods, metrics, text
from lifelong.data.task import SCENARIO_NAMES
from lifelong.errors import DivergedError, LifelongError, LifelongWarning, cli_names
from lifelong.methods.memory.lamol_tokens import SIZES
from lifelong.result import Result

NEGATIVE_LIST = re.compile(r"^-[0-9.]")  # a value such as -1,0 or -45,45 (not a flag)

# Flags that say how to run or show, not what to run: `lifelong run` with only these is the main job.
OUTPUT_FLAGS = ("quiet", "json", "store", "report")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, where to look) and exit code 2."""

    def error(self, message: str):
        raise LifelongError(f"{message}; see `{self.prog} --help`")


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of option: value lines (flags override it)")
    groups = {
        g: parser.add_argument_group(g + " options") for g in ("experiment", "benchmark", "model", "train", "method")
    }
    for o in config.options():
        extra = {"choices": o.choices} if o.choices and o.convert is str else {}
        if o.convert is config.boolean:  # `--eval-every-epoch` alone means yes; `--report no` also works
            extra = {"nargs": "?", "const": "yes", "metavar": "yes|no"}
        default = f" (default: {o.default})" if o.default is not None and o.group != "method" else ""
        groups[o.group].add_argument(o.flag, dest=o.name, default=None, help=o.help + default, **extra)
    parser.add_argument("--quiet", action="store_true", help="print only the summary table")
    parser.add_argument("--json", action="store_true", help="print the full results as JSON on stdout, nothing else")


def _flags(args: argparse.Namespace) -> dict:
    by_name = {o.name: o for o in config.options()}
    return {k: config.convert(by_name[k], v, "command line") for k, v in vars(args).items() if k in by_name}


class Progress:
    """A one-line progress indicator on stderr, only on a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.label = ""

    def __call__(self, stage: int, n_stages: int, epoch: int, n_epochs: int) -> None:
        if self.enabled:
            done = (stage * n_epochs + epoch + 1) / (n_stages * n_epochs)
            bar = "#" * int(done * 20)
            sys.stderr.write(f"\r{self.label:<28} [{bar:<20}] task {stage + 1}/{n_stages} epoch {epoch + 1}/{n_epochs}")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 80 + "\r")


def _open_store(path: str, create: bool = True):
    """The results store; ``create=False`` for commands that only read (a missing store is then an error,
    and no file or folder is made)."""
    from lifelong.results import Store

    return Store(path, create=create)


def _new_group(prefix: str = "") -> str:
    """An id for the runs of one invocation: sortable by time, unique across parallel invocations."""
    return prefix + time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


def _describe(exp) -> str:
    cfg, stream = exp.cfg, exp.stream(exp.seeds[0])
    opt = f"{cfg['optimizer'].upper()} lr {cfg['lr']}"
    length = f"{cfg['iterations']} iterations" if cfg["iterations"] else f"{cfg['epochs']} epochs"
    model = "MLP " + "-".join(map(str, [stream.input_size, *exp.hidden, stream.n_classes]))
    if stream.vocabulary:  # the memory network or LAMOL's transformer (experiment.build_model)
        m, sentences = exp.model_options, stream.input_shape[0] - 1
        model = f"MemN2N d {m['embedding']}, {m['hops']} hops, {sentences} sentences"
        if m.get("model") == "transformer":
            model = f"transformer d {SIZES['d_model']}, {SIZES['layers']} layers, {sentences} sentences"
    seeds = f"seeds {','.join(map(str, exp.seeds))}" if len(exp.seeds) > 1 else f"seed {exp.seeds[0]}"
    left_out = ""
    if stream.left_out:  # an uneven split: say which classes no task has, rather than drop them silently
        left_out = f" · leaves out class{'es' * (len(stream.left_out) > 1)} {', '.join(stream.left_out)}"
    return (
        f"{stream.name} · {SCENARIO_NAMES[stream.scenario]} · {len(stream)} tasks{left_out} · {model} · "
        f"{opt}, {length}/task, batch {cfg['batch_size']} · {seeds}\n"
        f"methods: {' · '.join(_method_settings(exp, spec) for spec in exp.method_names)}"
    )


def _method_settings(exp, spec: str) -> str:
    """A method with the settings that decide what it does: its strength λ, and any setting given."""
    name, given = exp.specs[spec]
    settings = exp.method(spec).settings()
    shown = {k: v for k, v in settings.items() if k == "lam" or k in given or k in exp.method_options}
    return name + "".join(f" {k}={v:g}" if isinstance(v, float) else f" {k}={v}" for k, v in shown.items())


def cmd_run(args: argparse.Namespace) -> int:
    """One experiment: the defaults, then the config file, then the flags. With no options at all it is
    the main job: the lecture's opening example first, then the same defaults any other run starts from."""
    from lifelong.experiment import CLASS_IL_EXAMPLE, OPENING_EXAMPLE, Experiment

    flags = _flags(args)
    main_job = args.config is None and all(v is None for k, v in flags.items() if k not in OUTPUT_FLAGS)
    cfg = config.resolve(args.config, flags)
    parts = [(None, Experiment(cfg), None)]  # (title, experiment, what it shows) of each part
    if main_job:
        example = Experiment(config.resolve(None, {**flags, **OPENING_EXAMPLE}))
        new_classes = Experiment(config.resolve(None, {**flags, **CLASS_IL_EXAMPLE}))
        parts = [
            (MAIN_JOB_TITLES[0], example, _forgetting_story),
            (MAIN_JOB_TITLES[1], parts[0][1], _gap_story),
            (MAIN_JOB_TITLES[2], new_classes, _new_classes_story),
        ]
    store = _open_store(cfg["store"])
    group = _new_group()
    records: list[Record] = []
    for title, exp, story in parts:
        if not (args.quiet or args.json):
            print(("\n" if records else "") + (f"{title}\n" if title else "") + _describe(exp), flush=True)
        part = _execute_all(exp, store, group, Progress(enabled=not args.json))
        if not args.json:
            _print_runs(exp, part, quiet=args.quiet)
            if story:
                print(story(exp, part))
        records += part
    failed = [rec for rec in records if rec.result is None]
    if args.json:
        out = [rec.to_json() for rec in records]
        json.dump(out if len(out) > 1 else out[0], sys.stdout, indent=1)
        print()
    if cfg["report"] and len(failed) < len(records):
        path = _write_run_report(store, group, records)
        print(f"\nreport: {path}", file=sys.stderr if args.json else sys.stdout)
    if failed:
        what = failed[0].error
        if len(records) > 1:
            what = f"{len(failed)} of {len(records)} runs failed ({failed[0].spec}: {what}); the others are recorded"
        print(f"lifelong: error: {what}", file=sys.stderr)
        return 1
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Go on with a killed or interrupted run from its last checkpoint, in the same record and folder."""
    from lifelong.experiment import of_run, resume_note
    from lifelong.results.store import not_resumable

    store = _open_store(args.store, create=False)
    run_id = store.resolve(args.run)
    row = store.get(run_id)
    why = not_resumable(row)
    if why:
        raise LifelongError(why)
    exp, seed, spec = of_run(row, store.location)  # checks the settings and builds the data before taking the run over
    note = resume_note(exp, seed, spec, store.folder(run_id))
    store.resume(run_id, note)
    if not (args.quiet or args.json):
        print(f"run {run_id}: {spec} (seed {seed}), {note}\n" + _describe(exp), flush=True)
    progress = Progress(enabled=not args.json)
    progress.label = f"{spec} (seed {seed})"
    record = Record(run_id, spec, seed)
    try:
        record.result = exp.execute(seed, spec, store, progress=progress, resume=run_id)[1]
    except DivergedError as e:
        record.error = str(e)
    finally:
        progress.clear()
    if args.json:
        json.dump(record.to_json(), sys.stdout, indent=1)
        print()
    else:
        _print_runs(exp, [record], quiet=args.quiet)
    if record.error:
        print(f"lifelong: error: {record.error}", file=sys.stderr)
        return 1
    return 0


MAIN_JOB_TITLES = (
    "== main job, part 1: the lecture's first example. One MLP learns noisy digits (task 1), then clean digits "
    "(task 2).",
    "== main job, part 2: five tasks, one after another. How much of the gap between fine-tuning (the lower "
    "bound) and joint training (the upper bound) does each method close?",
    "== main job, part 3: adding new classes. Five tasks of two new digits each, and at test time the model "
    "must tell all the digits it has seen apart (class-incremental).",
)


def _finished(exp, records: list[Record]) -> dict[str, Result]:
    return {r.spec: r.result for r in records if r.result is not None and r.seed == exp.seeds[0]}


def _forgetting_story(exp, records: list[Record]) -> str:
    """Part 1 in numbers measured just now: does finetune forget task 1 that joint training keeps?"""
    final = _finished(exp, records)
    if not {"finetune", "joint"} <= set(final):
        return ""
    ft, joint = final["finetune"].R * 100, final["joint"].R * 100
    verdict = "forgotten in part" if ft[2, 0] < ft[1, 0] - 1 else "not forgotten here"
    return (
        f"\n-> finetune: task 1 (noisy) scores {ft[1, 0]:.1f} % after learning it and {ft[2, 0]:.1f} % after "
        f"then learning task 2 (clean): {verdict}. The same network trained on both at once (joint) scores "
        f"{joint[-1, 0]:.1f} % / {joint[-1, 1]:.1f} %."
    )


def _gap_story(exp, records: list[Record]) -> str:
    """Part 2 in numbers measured just now: the share of the finetune → joint ACC gap each method closes."""
    final = _finished(exp, records)
    if not {"finetune", "joint"} <= set(final) or final["joint"].acc <= final["finetune"].acc:
        return ""
    low, high = final["finetune"].acc, final["joint"].acc
    closed = [
        f"{spec} {(r.acc - low) / (high - low) * 100:.0f} %"
        for spec, r in final.items()
        if spec not in ("finetune", "joint")
    ]
    return (
        "\n-> share of the ACC gap between finetune and joint that each method closes, (ACC − ACC_finetune) / "
        f"(ACC_joint − ACC_finetune), seed {exp.seeds[0]}: " + ", ".join(closed)
    )


def _new_classes_story(exp, records: list[Record]) -> str:
    """Part 3 in numbers measured just now: who stays near one task's share of the classes, who does not."""
    final = _finished(exp, records)
    stream = exp.stream(exp.seeds[0])
    share = 1 / len(stream)  # a model that knows only the last task's classes gets about this ACC
    if not final:
        return ""
    keeps = [f"{spec} {r.acc * 100:.0f} %" for spec, r in final.items() if spec != "joint" and r.acc >= 2 * share]
    collapses = [f"{spec} {r.acc * 100:.0f} %" for spec, r in final.items() if spec != "joint" and r.acc < 2 * share]
    lines = [f"\n-> class-incremental ACC, seed {exp.seeds[0]} (one task's share of the classes: {share:.0%})"]
    if collapses:
        lines.append("   near the last task only: " + ", ".join(collapses))
    if keeps:
        lines.append("   keep old classes: " + ", ".join(keeps))
    if "joint" in final:
        lines.append(f"   all data at once (joint): {final['joint'].acc * 100:.0f} %")
    return "\n".join(lines)


@dataclasses.dataclass
class Record:
    """One run of an invocation: its id in the store, method spec, seed, and its result or why it failed."""

    run_id: int | None
    spec: str
    seed: int
    result: Result | None = None
    error: str | None = None

    def to_json(self) -> dict:
        if self.result is None:
            return {
                "run_id": self.run_id,
                "method_spec": self.spec,
                "seed": self.seed,
                "status": "failed",
                "message": self.error,
            }
        return {"run_id": self.run_id, **self.result.to_dict()}


def _execute_all(exp, store, group: str, progress: Progress) -> list[Record]:
    """Every (seed, method) run of ``exp``. A run that diverges is recorded as failed and the others go on:
    one method's bad setting must not take the rest down."""
    if exp.cfg.get("vectorize"):
        return _execute_vectorized(exp, store, group, progress)
    records = []
    for seed, spec in exp.runs:
        progress.label = f"{spec} (seed {seed})"
        try:
            run_id, result = exp.execute(seed, spec, store, group, progress)
            records.append(Record(run_id, spec, seed, result))
        except DivergedError as e:
            records.append(Record(getattr(e, "run_id", None), spec, seed, error=str(e)))
        finally:
            progress.clear()
    return records


def _execute_vectorized(exp, store, group: str, progress: Progress) -> list[Record]:
    """``--vectorize``: the seeds of each method trained at once (lifelong.vectorized), one record per seed;
    a seed that diverges is recorded as failed and the other seeds go on."""
    from lifelong.vectorized.runs import execute_seeds

    records = []
    for spec in exp.method_names:
        progress.label = f"{spec} ({len(exp.seeds)} seeds)"
        try:
            for seed, run_id, result in execute_seeds(exp, spec, store, group, progress):
                done = isinstance(result, Result)
                records.append(Record(run_id, spec, seed, result if done else None, None if done else str(result)))
        finally:
            progress.clear()
    return records


def _print_runs(exp, records: list[Record], quiet: bool) -> None:
    by_method = {spec: [r.result for r in records if r.spec == spec and r.result] for spec in exp.method_names}
    failures = {spec: [r.error for r in records if r.spec == spec and r.error] for spec in exp.method_names}
    if not quiet:
        for spec, results in by_method.items():
            ids = ", ".join(str(r.run_id) for r in records if r.spec == spec)
            if not results:
                print(f"\n{spec} (run {ids}): failed: {failures[spec][0]}")
                continue
            what = "mean over seeds of " if len(results) > 1 else ""
            title = f"\n{spec} (run {ids}): {what}R[i][j] = accuracy (%) on task j after learning task i"
            print(text.matrix(np.mean([r.R for r in results], axis=0), results[0].task_names, title))
        print()
    print(text.summary_table(by_method, failures))


def _write_run_report(store, group: str, records: list[Record]) -> Path:
    finished = [(r.run_id, r.spec, r.result) for r in records if r.result is not None]
    return _report(store, finished, store.home / f"report-{group}")


def _report(store, runs: list[tuple[int, str, Result]], out: Path, explicit: bool = False) -> Path:
    """The Markdown + PNG report of recorded runs, with the importance plots and loss landscapes their
    folders hold.
    A report never replaces another: an --out folder that already holds one is refused, and a default
    folder that exists gets a numbered sibling."""
    from lifelong.experiment import IMPORTANCE_PLOT
    from lifelong.results import write_report

    if out.exists() and not out.is_dir():
        raise LifelongError(f"--out {out} is a file, not a folder; give a folder for the report")
    if (out / "report.md").exists():
        if explicit:
            raise LifelongError(f"--out {out} already holds a report; give another folder (nothing was replaced)")
        out = next(
            p for k in itertools.count(2) if not ((p := out.with_name(f"{out.name}-{k}")) / "report.md").exists()
        )
    first_run = {spec: run_id for run_id, spec, _ in reversed(runs)}  # one importance plot per method: its first seed
    plots = [(f"{spec} (run {i})", store.folder(i) / IMPORTANCE_PLOT) for spec, i in first_run.items()]
    plots = [(label, path) for label, path in plots if path.exists()]
    drawn = [(f"{spec} (run {i})", store.folder(i) / "landscape") for i, spec, _ in runs]  # `lifelong landscape`
    drawn = [(label, folder) for label, folder in drawn if (folder / "landscape.png").exists()]
    try:
        return write_report([r for _, _, r in runs], out, importance_plots=plots, landscapes=drawn)
    except OSError as e:
        raise LifelongError(
            f"cannot write the report to {out} ({e.strerror or e}); give a writable --out folder"
        ) from None


def cmd_tune(args: argparse.Namespace) -> int:
    from lifelong import tune
    from lifelong.experiment import Experiment

    cfg = config.resolve(args.config, _flags(args))
    store = _open_store(cfg["store"])
    group = _new_group("tune-")
    progress = Progress(enabled=not args.quiet)
    values = config.str_list(args.values)
    print(
        f"tuning --{args.param.replace('_', '-')} of {cfg['method'][0]} on {cfg['benchmark']}: validation split "
        f"= {args.val_fraction:.0%} of each task's training data (the test sets are not used)"
    )
    points = tune.sweep(cfg, args.param, values, args.val_fraction, store, group, progress)
    progress.clear()
    chosen = tune.best(points)
    print(f"\n{args.param:>12}  val ACC (%)  val BWT (%)")
    for p in points:
        mark = "  <- best" if p is chosen else ""
        scores = f"{p['acc'] * 100:11.1f}  {p['bwt'] * 100:11.1f}" if math.isfinite(p["acc"]) else "   diverged"
        print(f"{p['value']!s:>12}  {scores}{mark}")
    print(metrics.DEFINITIONS["acc"] + "; " + metrics.DEFINITIONS["bwt"] + "; on the validation split")
    if cfg["report"]:
        from lifelong.results import write_sweep_report

        out = store.home / f"report-{group}"
        path = write_sweep_report(points, out, args.param, chance=points[0]["chance"])
        print(f"sweep report: {path}")
    if args.final:
        exp = Experiment({**cfg, args.param: chosen["value"]})
        results = [exp.execute(seed, name, store, group, progress)[1] for seed, name in exp.runs]
        progress.clear()
        print(f"\nwith {args.param} = {chosen['value']} on the test sets:")
        print(text.summary_table({cfg["method"][0]: results}))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print("benchmarks (builder-dataset):")
    for kind in benchmarks.BUILDERS:
        names = [n for n in benchmarks.NAMES if n.startswith(kind)]
        print(f"  {', '.join(names)}   (default scenario: {benchmarks.DEFAULT_SCENARIO[kind]})")
    print("scenarios: task (task-IL), domain (domain-IL), class (class-IL)")
    print("\nmethods and their hyper-parameters (flag = default: help):")
    for name, cls in methods.METHODS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<12} {doc}")
        why = f" (only: {cls.scenarios_why})" if cls.scenarios_why and len(cls.scenarios) < 3 else ""
        print(f"  {'':<12} scenarios: {', '.join(cls.scenarios)}{why}")
        if cls.known_failures:
            print(f"  {'':<12} expected to fail in: {', '.join(SCENARIO_NAMES[s] for s in cls.known_failures)}")
        for f in cls.hyperparameters():
            flag = "--" + f.name.replace("_", "-")
            print(f"  {'':<12} {flag} = {f.default}: {f.metadata.get('help', '')}")
    print("\nrun options (flag = default):")
    for o in config.options():
        if o.group != "method":
            print(f"  {o.flag:<22} {str(o.default):<22} {o.help}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from lifelong.results.store import describe_progress

    store = _open_store(args.store, create=False)
    run_id = store.resolve(args.run)
    row = store.get(run_id)
    if args.json:
        json.dump(row, sys.stdout, indent=1, default=str)
        print()
        return 0
    print(f"run {run_id}: {row['status']}" + (f" ({row['message']})" if row.get("message") else ""))
    cfg = row.get("config") or {}
    print("config: " + ", ".join(f"{k}={v}" for k, v in cfg.items() if v is not None))
    if row["status"] == "finished":
        result = store.result(run_id)
        print(text.matrix(result.R, result.task_names, "\nR[i][j] = accuracy (%) on task j after task i"))
        print()
        for key, value in result.metrics().items():
            print(f"{key:<14} {value * 100:7.2f}   {metrics.DEFINITIONS[key]}")
        for line in _facts_lines(result.facts) + _capacity_lines(result.capacity, len(result.task_names)):
            print(line)
    elif row.get("progress"):  # running, killed, failed or interrupted: the rows of R it finished
        names = row["progress"]["task_names"]
        print(text.matrix(row["R"], names, "\nR[i][j] = accuracy (%) on task j after task i (rows so far)"))
        print(f"\n{describe_progress(row)}" + ("" if row["status"] == "running" else "; no metrics without all of R"))
    return 0


def _facts_lines(facts: dict) -> list[str]:
    """What the method measured about itself (Method.facts), one line each: its memory, GEM's projections."""
    from lifelong.data.budget import human

    lines = []
    if "memory" in facts:
        m = facts["memory"]
        lines.append(f"memory: {m['samples']} samples ({m['policy']}, capacity {m['capacity']}, {human(m['bytes'])})")
    if "projection_rate" in facts:
        rates = ", ".join(f"{r * 100:.1f}%" for r in facts["projection_rate"])
        lines.append(f"projected: {rates} of each task's steps (their gradient would have raised the memory's loss)")
    if "prune" in facts:  # PackNet
        pruned = ", ".join(f"{p * 100:.0f}%" for p in facts["prune"])
        lines.append(f"pruned: {pruned} of each task's weights (per layer, by magnitude)")
    if "sparsity" in facts:  # CPG
        per_task = [
            f"goal {g * 100:.1f}% reached {a * 100:.1f}%, sparsity {s * 100:.0f}%, +{u} units"
            for g, a, s, u in zip(
                facts["goal"], facts["val_accuracy"], facts["sparsity"], facts["units_grown"], strict=True
            )
        ]
        lines.append("per task (validation): " + "; ".join(per_task))
    if "statistics" in facts:  # FearNet
        st, hc = facts["statistics"], facts["hc"]
        lines.append(
            f"long-term memory: statistics of {st['classes']} classes ({human(st['bytes'])}; their raw examples: "
            f"{human(st['raw_bytes'])}); HC at its fullest: {hc['peak_samples']} examples ({human(hc['peak_bytes'])})"
        )
        sleeps = ", ".join(str(t + 1) for t in facts["sleeps"]) or "none"
        chose = "; ".join(f"after task {b['after_task']}: HC {b['hc']}, mPFC {b['mpfc']}" for b in facts["bla"])
        lines.append(f"sleeps after task {sleeps}" + (f"; the BLA chose {chose}" if chose else ""))
    return lines


def _capacity_lines(records: list[dict], n_tasks: int) -> list[str]:
    """What the network and the method held after each task (Result.capacity), in three lines at most:
    parameters and growth, the free share of the weights (PackNet, CPG), the method's stored state."""
    from lifelong.data.budget import human

    if not records:  # runs recorded before capacity accounting
        return []
    each = "each task" if len(records) == n_tasks else "each training stage"
    added = ", ".join(f"{r['added']:+,}" for r in records)
    lines = [f"capacity: {records[-1]['parameters']:,} parameters after the last task; added in {each}: {added}"]
    if any(r.get("free_fraction") is not None for r in records):
        free = ", ".join("–" if r.get("free_fraction") is None else f"{r['free_fraction'] * 100:.1f}%" for r in records)
        lines.append(f"free weights after {each}: {free}")
    stored = ", ".join(human(r["stored_bytes"]) for r in records)
    lines.append(f"stored state besides the model after {each}: {stored}")
    return lines


def cmd_report(args: argparse.Namespace) -> int:

    store = _open_store(args.store, create=False)
    ids = [store.resolve(ref) for ref in args.runs]
    results = []
    for run_id in ids:
        if store.get(run_id)["status"] != "finished":
            raise LifelongError(f"run {run_id} did not finish, so it has no results to report; leave it out")
        results.append(store.result(run_id))
    runs = [(run_id, r.config.get("method_spec") or r.method, r) for run_id, r in zip(ids, results, strict=True)]
    default = store.home / f"report-runs-{'-'.join(map(str, ids))}"
    print(_report(store, runs, Path(args.out) if args.out else default, explicit=bool(args.out)))
    return 0


def cmd_order(args: argparse.Namespace) -> int:
    """An order study of the stream under several task orders (lifelong.studies.orders); with
    --curriculum, first an affinity study, and the proposed order ranked against the others."""
    from lifelong.studies import curriculum, orders, report

    cfg = config.resolve(args.config, _flags(args))
    if args.out and cfg["report"]:  # a folder that would be refused is refused before the study, not after
        report.folder(args.out, report.order_files(cfg["method"], args.curriculum), explicit=True, create=False)
    aff = proposal = None
    if args.curriculum:
        aff, proposal, study = curriculum.check(cfg, args.orders, args.workers)
    else:
        study = orders.study(cfg, args.orders, args.workers)
    if args.json:  # the whole study on stdout, nothing else
        whole = {"order_study": study.to_dict(), "affinity": aff and aff.to_dict(), "curriculum": proposal}
        print(json.dumps(whole, indent=1))
    elif aff is not None and not args.quiet:
        print(report.affinity_text(aff, proposal) + "\n")
    if not args.json:
        print(report.order_text(study, proposal))
    if cfg["report"]:
        out = Path(args.out) if args.out else Path(cfg["store"]).parent / _new_group("order-")
        path = report.write_order_report(study, out, bool(args.out), aff, proposal)
        print(f"\nreport: {path}", file=sys.stderr if args.json else sys.stdout)
    failed = study.errors()
    if failed:  # as `lifelong run`: the other runs are kept, and the command says so and exits 1
        first = f"{failed[0]['method']} in order {','.join(map(str, failed[0]['order']))}: {failed[0]['error']}"
        print(f"lifelong: error: {len(failed)} of {len(study.records)} runs failed ({first})", file=sys.stderr)
        return 1
    return 0


def cmd_affinity(args: argparse.Namespace) -> int:
    """For every ordered pair of tasks: forward gain and backward loss (lifelong.studies.affinity), the
    AHP normalisation, a taxonomy, and the curriculum those matrices propose."""
    from lifelong.studies import affinity, curriculum, report

    flags = _flags(args)
    cfg = config.resolve(args.config, {**flags, "method": flags.get("method") or ["finetune"]})
    if args.out and cfg["report"]:  # a folder that would be refused is refused before the study, not after
        report.folder(args.out, ["affinity.md", *report.affinity_files()], explicit=True, create=False)
    aff = affinity.study(cfg, args.workers)
    proposal = curriculum.plan(aff.gain, aff.forgetting)
    whole = {**aff.to_dict(), "curriculum": proposal}
    print(json.dumps(whole, indent=1) if args.json else report.affinity_text(aff, proposal))
    if cfg["report"]:
        out = Path(args.out) if args.out else Path(cfg["store"]).parent / _new_group("affinity-")
        path = report.write_affinity_report(aff, out, bool(args.out), proposal)
        print(f"\nreport: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise LifelongError(f"--workers must be a whole number >= 1 (got {text!r})")
    return int(text)


def _add_study_parsers(sub) -> None:
    """`lifelong order` and `lifelong affinity`: every run option, plus the study's own."""
    order = sub.add_parser("order", help="one stream under several task orders: how ACC, BWT, FWT vary")
    order.add_argument(
        "--orders",
        help="all, a number N of random orders, or orders such as '0,1,2;2,1,0' (default: all for up to 4 tasks, "
        "else 20 random)",
    )
    order.add_argument(
        "--curriculum",
        type=config.boolean,
        nargs="?",
        const=True,
        default=False,
        help="propose an order from an affinity study and rank it among the --orders (default: 20 random)",
    )
    affinity = sub.add_parser(
        "affinity", help="transfer between every pair of tasks: gain, forgetting, AHP, a taxonomy, a curriculum"
    )
    studies = [order, affinity]
    for parser, func in zip(studies, (cmd_order, cmd_affinity), strict=True):
        parser.add_argument("--workers", type=_positive_int, help="worker processes (default: the cores available)")
        parser.add_argument("--out", help="folder for the Markdown + PNG report (default: beside the store)")
        _add_options(parser)
        parser.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="lifelong", description="Lifelong (continual) learning experiments.")
    sub = parser.add_subparsers(dest="command", parser_class=OneLineParser)
    run = sub.add_parser("run", help="train and evaluate; with no options, the main job")
    _add_options(run)
    run.set_defaults(func=cmd_run)
    resume = sub.add_parser("resume", help="go on with a killed or interrupted run from its last checkpoint")
    resume.add_argument("run", help="run id, run-NNNN, or latest")
    resume.add_argument("--store", default="lifelong-runs/runs.db")
    resume.add_argument("--quiet", action="store_true", help="print only the summary table")
    resume.add_argument("--json", action="store_true", help="print the run's results as JSON on stdout, nothing else")
    resume.set_defaults(func=cmd_resume)
    tune = sub.add_parser("tune", help="sweep one hyper-parameter, choose it on a validation split")
    tune.add_argument("--param", required=True, help="option to sweep, e.g. lam or lr")
    tune.add_argument("--values", required=True, help="values to try, e.g. 1,10,100,1000")
    tune.add_argument("--val-fraction", type=float, default=0.1, help="share of training data held out")
    tune.add_argument("--final", type=config.boolean, default=True, help="then run the best value on the test sets")
    _add_options(tune)
    tune.set_defaults(func=cmd_tune)
    sub.add_parser("list", help="benchmarks, methods and options with defaults").set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="one recorded run: status, config, R matrix, metrics")
    show.add_argument("run", help="run id, run-NNNN, or latest")
    show.add_argument("--store", default="lifelong-runs/runs.db")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)
    report = sub.add_parser("report", help="Markdown + PNG report of recorded runs")
    report.add_argument("runs", nargs="+", help="run ids (or latest)")
    report.add_argument("--store", default="lifelong-runs/runs.db")
    report.add_argument("--out", help="output folder (default: beside the store)")
    report.set_defaults(func=cmd_report)
    _add_study_parsers(sub)
    from lifelong.results.commands import add_parsers as add_results_parsers  # compare, export (issue 12)

    add_results_parsers(sub)
    from lifelong.sweep.commands import add_parser as add_sweep_parser  # lifelong sweep FILE (issue 12)

    add_sweep_parser(sub)
    from lifelong.landscape.commands import add_parser as add_landscape_parser  # lifelong landscape (issue 13)

    add_landscape_parser(sub)
    # `lifelong serve …` is parsed by lifelong.serve.cli (see _main): listed here for --help only
    sub.add_parser("serve", help="serve a model that keeps learning from feedback (`lifelong serve --help`)")
    return parser


_SHOWN: set[str] = set()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library warning (e.g. an unstable step size) as one line on stderr, without a source line, once
    per command however many runs raise it."""
    text = f"lifelong: warning: {message}" if issubclass(category, LifelongWarning) else f"warning: {message}"
    if text not in _SHOWN:
        _SHOWN.add(text)
        print(text, file=sys.stderr, flush=True)


class _PipeSafeStdout:
    """stdout that a closed pipe (`lifelong show 3 | head`) silences instead of crashing: the rest of the
    output goes to /dev/null and the command finishes its work (a run is still recorded)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()

    def _silence(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())  # also what the interpreter flushes at exit
        os.close(devnull)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    _SHOWN.clear()
    stdout = sys.stdout
    sys.stdout = _PipeSafeStdout(stdout)
    try:
        with cli_names(), warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return _main(argv)
    finally:
        sys.stdout = stdout


def _glue_negative_values(argv: list[str]) -> list[str]:
    """`--task-order -1,0` as `--task-order=-1,0`: argparse reads a value that starts with '-' as a flag
    unless it is a single number, so a list with a negative first item would be "expected one argument"."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and NEGATIVE_LIST.match(token):
            out[-1] += "=" + token
        else:
            out.append(token)
    return out


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        if argv[:1] == ["serve"]:  # imported only here: `lifelong run` never loads FastAPI or SQLAlchemy
            from lifelong.serve.cli import main as serve

            return serve(argv[1:])
        args = parser.parse_args(_glue_negative_values(argv))
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except LifelongError as e:
        print(f"lifelong: error: {e}", file=sys.stderr)
        return 1 if isinstance(e, DivergedError) else 2
    except KeyboardInterrupt:
        print("lifelong: interrupted by the user; a run in progress is kept as 'interrupted'", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
