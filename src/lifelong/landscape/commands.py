"""The `lifelong landscape` sub-command; cli.py only registers it (add_parser).

With no options it draws the lecture's two-task example: noisy-minimnist, task 1 noisy digits (sd 0.4),
task 2 the same digits clean, 10 epochs a task (the main job's part 1), EWC at its default λ (10) against
fine-tuning. Every `lifelong run` option works (benchmark, model, training, the method's hyper-parameters,
given as --lam 100 or --method ewc:lam=100); the landscape's own are --grid, --eval-samples, --eval-split,
--every, --border and --out. (--samples and --margin are taken: MAS's and SCP's, and GEM's hyper-parameters.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from lifelong import config
from lifelong.errors import LifelongError, option

# The lecture's first example (lifelong.experiment.OPENING_EXAMPLE), with EWC as the method drawn. The
# noise applies only to a noisy benchmark, and the epochs only when neither epochs nor iterations are given.
# EWC's λ is its default, 10: `lifelong tune` on this stream's validation split (λ 0.3 to 100, seeds 0-2)
# found validation ACC flat within 0.2 points from λ 1 to 100 (best 3: 84.1 %; 10: 84.0 %, BWT -0.1), and
# at λ 10 task 1's loss at θ*_2 stays within 1.5 × its loss at θ*_1 for seeds 0-3 while fine-tuning's
# leaves that region in each (README: "Why forgetting happens, drawn").
EXAMPLE = {"benchmark": "noisy-minimnist", "tasks": 2, "noise": [0.4, 0.0], "epochs": 10, "method": ["ewc"]}


def add_parser(sub) -> None:
    from lifelong.cli import _add_options

    parser = sub.add_parser(
        "landscape",
        help="draw two tasks' loss surfaces and the paths finetune and a method take (the lecture's)",
        description="Defaults: the lecture's two-task example, --benchmark noisy-minimnist --tasks 2 --noise 0.4,0 "
        "--epochs 10 --method ewc (λ 10, its default); any other option as `lifelong run` takes it.",
    )
    parser.add_argument("--grid", type=_whole(2), default=41, help="grid points per side (default: 41)")
    parser.add_argument(
        "--eval-samples",
        type=_whole(1),
        default=1000,
        help="examples of each task the losses are evaluated on (default: 1000)",
    )
    parser.add_argument("--eval-split", default="test", help="test or train: the set they come from (default: test)")
    parser.add_argument(
        "--every", type=_whole(1), help="record θ every this many steps (default: at most 200 points a path)"
    )
    parser.add_argument(
        "--border", type=float, default=0.25, help="the grid's border, a share of the drawn points' extent (0.25)"
    )
    parser.add_argument("--out", help="folder for the report (default: beside the store; refused if it holds one)")
    _add_options(parser)
    parser.set_defaults(func=cmd_landscape)


def cmd_landscape(args: argparse.Namespace) -> int:
    from lifelong.cli import _flags, _new_group, _open_store
    from lifelong.experiment import Experiment, build_model
    from lifelong.landscape import report
    from lifelong.landscape.run import draw
    from lifelong.train import Settings

    flags = _flags(args)
    cfg = config.resolve(args.config, {**flags, **_defaults(args.config, flags)})  # defaults: only what is not given
    _refuse(cfg, flags)
    explicit_store = flags.get("store") is not None
    if args.out and cfg["report"]:  # a folder that would be refused is refused before training, not after
        report.folder(args.out, explicit=True, create=False)
    exp = Experiment(cfg)  # checks the benchmark, model, settings and method; builds the data
    seed = exp.seeds[0]
    spec = exp.method_names[0]
    stream = exp.stream(seed)
    store = _open_store(cfg["store"]) if explicit_store else None  # recorded only when asked
    chatty = not args.quiet and not args.json and sys.stderr.isatty()

    def say(message: str) -> None:
        if chatty:
            print(f"landscape: {message}", file=sys.stderr, flush=True)

    torch.manual_seed(seed)  # the initialisation, as `lifelong run` draws it
    model = build_model(stream, cfg)
    # One intra-op thread, as the sweep's workers: these networks are too small for more to help, and on a
    # busy machine more threads wait on each other (minutes instead of seconds on 2 shared cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ls = draw(
            stream,
            exp.method(spec),
            model=model,
            grid=args.grid,
            eval_samples=args.eval_samples,
            every=args.every,
            eval_split=args.eval_split,
            border=args.border,
            settings=Settings(**{**exp.train_options, "seed": seed}),
            progress=say,
        )
    finally:
        torch.set_num_threads(threads)
    out = Path(args.out) if args.out else Path(cfg["store"]).parent / _new_group("landscape-")
    if store is not None:
        group = _new_group("landscape-")
        ids = _record(store, exp, seed, spec, group, ls)
        print(f"recorded runs {', '.join(f'{k} {v}' for k, v in ids.items())} in {store.name} (group {group})")
        if not args.out:
            out = store.folder(ids[ls.method]) / "landscape"
    if args.json:
        print(json.dumps(ls.to_dict()))
    else:
        print(report.summary(ls))
    if cfg["report"]:
        path = report.write(ls, out, explicit=bool(args.out))
        print(f"report: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _defaults(config_file: str | None, flags: dict) -> dict:
    """The lecture's example, under whatever the config file or the flags say."""
    in_file = config.read_config_file(config_file) if config_file else {}
    given = {k for k, v in flags.items() if v is not None} | set(in_file)
    out = {k: v for k, v in EXAMPLE.items() if k not in given and k not in ("noise", "epochs")}
    benchmark = flags.get("benchmark") or in_file.get("benchmark", EXAMPLE["benchmark"])
    two = flags.get("tasks") or in_file.get("tasks", 2)
    if "noise" not in given and str(benchmark).startswith("noisy") and str(two) == "2":
        out["noise"] = EXAMPLE["noise"]
    if not given & {"epochs", "iterations"}:
        out["epochs"] = EXAMPLE["epochs"]
    return out


def _refuse(cfg: dict, flags: dict) -> None:
    if len(cfg["method"]) != 1:
        raise LifelongError(
            f"the landscape draws one method against finetune (got {', '.join(cfg['method'])}); give one "
            f"{option('method')}, e.g. ewc:lam=10"
        )
    if cfg.get("seeds") and len(cfg["seeds"]) > 1:
        raise LifelongError(f"the landscape is drawn for one seed; give {option('seed')} instead of {option('seeds')}")
    if cfg.get("vectorize"):
        raise LifelongError(f"{option('vectorize')} applies to `lifelong run` only; run this without it")


def _record(store, exp, seed: int, spec: str, group: str, ls) -> dict[str, int]:
    """The three trainings as runs of the store (one group), each with the config `lifelong show` reads."""
    base = {
        "benchmark": exp.cfg["benchmark"],
        **exp.benchmark_options,
        **exp.model_options,
        **exp.train_options,
        "seed": seed,
        "validation_fraction": None,
    }
    method = exp.method(spec)
    runs = {
        "finetune": ({"method": "finetune", "method_spec": "finetune"}, ls.results["finetune"]),
        ls.method: ({"method": method.name, "method_spec": spec, **method.settings()}, ls.results["method"]),
        "joint": ({"method": "joint", "method_spec": "joint"}, ls.results["joint"]),
    }
    ids = {}
    for name, (own, result) in runs.items():
        run_config = {**base, **own}
        run_id = store.start(run_config, seed, group)
        result.config = {**run_config, **result.config}
        store.finish(run_id, result)
        ids[name] = run_id
    return ids


def _whole(low: int):
    def convert(text: str) -> int:
        if not str(text).isdigit() or int(text) < low:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {low} (got {text!r})")
        return int(text)

    convert.__name__ = "whole number"
    return convert
