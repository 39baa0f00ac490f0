"""The `lifelong compare` and `lifelong export` sub-commands: they read a results store, select runs
(select.py) and hand them to compare.py or export/. Kept here so that cli.py only registers them.

Why `lifelong export` and not a flag of `lifelong run`: exporting reads what the store already holds, so
one command serves every recorded run (old ones, a sweep's, a run that was killed and later finished)
and the training loop never waits on, or fails because of, TensorBoard or MLflow. After a run,
``lifelong export --group latest --to tensorboard`` exports what it recorded.
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

from lifelong.errors import LifelongError, option, warn

STORE = "lifelong-runs/runs.db"


def add_parsers(sub) -> None:
    """Register `compare` and `export` on the CLI's sub-parsers."""
    compare = sub.add_parser(
        "compare", help="mean ± sd and 95%% CIs over seeds, grouped by any setting; rankings and t-tests"
    )
    _selection(compare)
    compare.add_argument("--by", default="method", help="settings to group by, e.g. method or method,lr (default)")
    compare.add_argument(
        "--metric",
        default="acc",
        help="metric to rank and test by: acc (default), bwt, fwt, forgetting, avg_inc_acc, bwt_gem_code, "
        "fwt_gem_code, or acc@class / acc@task (another evaluation view)",
    )
    compare.add_argument("--alpha", type=float, default=0.05, help="significance level of the tests (default 0.05)")
    compare.add_argument("--out", help="folder for compare.md, compare.csv, tests.csv, compare.png")
    compare.set_defaults(func=cmd_compare)
    export = sub.add_parser("export", help="write recorded runs to TensorBoard or MLflow")
    _selection(export)
    export.add_argument("--to", required=True, choices=["tensorboard", "mlflow"], help="where to write")
    export.add_argument("--dir", help="TensorBoard: root folder, one folder per run (default: beside the store)")
    export.add_argument(
        "--tracking-uri",
        help="MLflow: tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<store folder>/mlflow.db)",
    )
    export.add_argument("--experiment", default="lifelong", help="MLflow: experiment name (default: lifelong)")
    export.set_defaults(func=cmd_export)


def _selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", help="run ids, run-NNNN, latest or ranges 3..8 (default: every run)")
    parser.add_argument("--group", help="the runs of one group (one `lifelong run`), or latest")
    parser.add_argument("--where", action="append", default=[], help="only runs with this setting, e.g. lr=0.1")
    parser.add_argument("--store", default=STORE)


def cmd_compare(args: argparse.Namespace) -> int:
    from lifelong.results import compare
    from lifelong.results.select import select
    from lifelong.results.store import Store

    store = Store(args.store, create=False)
    selection = select(store, args.runs, args.group, args.where)
    c = compare.compare(
        compare.load(store, selection), args.by.split(","), args.metric.strip(), args.alpha, selection.unfinished
    )
    for note in c.notes:
        warn(note)
    print(compare.text(c))
    out = Path(args.out) if args.out else store.home / f"compare-{_stamp()}"
    print(f"\ncomparison: {compare.write(c, out, explicit=bool(args.out))}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lifelong.results import export
    from lifelong.results.select import select
    from lifelong.results.store import Store

    if args.to == "mlflow" and args.dir:
        raise LifelongError(f"{option('dir')} is for TensorBoard; give MLflow a {option('tracking_uri')}")
    if args.to == "tensorboard" and args.tracking_uri:
        raise LifelongError(f"{option('tracking_uri')} is for MLflow; give TensorBoard a {option('dir')}")
    store = Store(args.store, create=False)
    selection = select(store, args.runs, args.group, args.where)
    where = args.dir or args.tracking_uri or export.default_location(args.to, store)
    went = export.export(store, selection.rows, args.to, where, args.experiment)
    for row, place in zip(selection.rows, went, strict=True):
        print(f"run {row['id']} -> {place}")
    if selection.unfinished:
        print(f"left out {len(selection.unfinished)} unfinished runs: {', '.join(map(str, selection.unfinished))}")
    if args.to == "tensorboard":
        print(f"view: tensorboard --logdir {where}")
    elif where.startswith("sqlite:"):
        print(f"view: mlflow ui --backend-store-uri {where}  (the UI needs the full mlflow package)")
    return 0


def _stamp() -> str:
    """A folder name that sorts by time and is unique across parallel commands."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
