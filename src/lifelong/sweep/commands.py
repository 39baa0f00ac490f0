"""The `lifelong sweep FILE` sub-command; cli.py only registers it (add_parser)."""

from __future__ import annotations

import argparse
import json
import sys

from lifelong.errors import LifelongError, option
from lifelong.results.postgres import shown

STORE = "lifelong-runs/runs.db"


def add_parser(sub) -> None:
    sweep = sub.add_parser(
        "sweep", help="grid or random search over methods, settings, seeds, orders, benchmarks; resumable"
    )
    sweep.add_argument("file", help="the sweep's YAML file (README: Sweeps)")
    sweep.add_argument("--executor", default="local", help="local (a process pool here, default) or ray")
    sweep.add_argument(
        "--workers", type=int, help="local: worker processes; ray: CPUs of a Ray started here (default: the cores)"
    )
    sweep.add_argument(
        "--address", help="ray: auto (the cluster `ray start --head` started) or HOST:PORT (default: start Ray here)"
    )
    sweep.add_argument("--store", default=STORE, help=f"results database (default: {STORE})")
    sweep.add_argument(
        "--dry-run", action="store_true", help="plan and check every run, show what is recorded; run nothing"
    )
    sweep.add_argument(
        "--json", action="store_true", help="print every run of the sweep as JSON on stdout, nothing else"
    )
    sweep.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from lifelong.studies import pool
    from lifelong.sweep import driver, executors, schema, summary
    from lifelong.sweep.plan import plan

    if args.executor not in executors.EXECUTORS:
        raise LifelongError(f"{option('executor')} {args.executor!r} is not one of: {', '.join(executors.EXECUTORS)}")
    if args.address is not None and args.executor != "ray":
        raise LifelongError(f"{option('address')} is for the ray executor; add {option('executor')} ray")
    workers = pool.check_workers(args.workers) if args.workers is not None else None
    if args.executor == "ray" and not args.dry_run:
        executors.import_ray()  # a missing Ray is said before the data is built
    sweep = schema.load(args.file)
    jobs = plan(sweep)
    if not args.json:
        how = f"executor {args.executor}"
        if args.executor == "local":
            how += f", {_count(min(workers or pool.default_workers(), len(jobs)), 'worker')}"
        elif args.address:
            how += f" at {args.address}"
        else:
            how += f", started here with {_count(workers or pool.default_workers(), 'CPU')}"
        configurations = len({(j.point.method, json.dumps(j.point.settings, sort_keys=True)) for j in jobs})
        n_orders = len(jobs) // (configurations * len(sweep.seeds))
        orders = f" × {_count(n_orders, 'order')}" if sweep.orders is not None else ""
        print(
            f"sweep {sweep.name}: {_count(len(jobs), 'run')} ({_count(configurations, 'configuration')}{orders} × "
            f"{_count(len(sweep.seeds), 'seed')}); group {sweep.group}; store {shown(args.store)}; {how}",
            flush=True,
        )

    def done(k: int, n: int) -> None:
        if sys.stderr.isatty() and not args.json:
            sys.stderr.write(f"\rsweep {sweep.name}: {k} of {n} runs done" + ("\n" if k == n else ""))
            sys.stderr.flush()

    entries = driver.run(sweep, args.store, args.executor, workers, args.address, done, args.dry_run, jobs)
    if args.json:
        json.dump(summary.to_json(entries), sys.stdout, indent=1)
        print()
    else:
        print(summary.table(sweep, entries))
        print("\n" + summary.counts(entries))
        print(f"compare them: {summary.compare_command(sweep, entries, shown(args.store))}")
    errors = [e for e in entries if e.status == "failed" or (e.done or {}).get("error")]
    if errors:
        first = errors[0]
        why = (first.done or {}).get("error") or (first.row or {}).get("message")
        print(
            f"lifelong: error: {len(errors)} of {len(entries)} runs failed ({first.job.point.method}: {why})",
            file=sys.stderr,
        )
        return 1
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"
