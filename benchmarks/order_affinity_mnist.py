"""Task order and task affinity on MNIST (issue 10): permuted, rotated and split MNIST; the affinity
matrices (plain fine-tuning, T² trainings), the curriculum they propose, and an order study of finetune
and one method of each family (regularisation: EWC; memory: replay; additional resources: PackNet) on
the curriculum and on 20 random other orders, with the curriculum's rank among them.

Protocol (ours, for the README):

- permuted MNIST (task 1 unpermuted), rotated MNIST (angles evenly spread over 0-180°), split MNIST (2
  classes per task), 5 tasks each, 10 000 training images per task (all of a split task's), the full
  test sets. Scenario: task-IL by default (every family applies: PackNet needs the task's identity);
  ``--scenario domain`` runs permuted and rotated in domain-IL without PackNet (split MNIST stays task-IL).
- MLP 784-100-100-out, Adam lr 1e-3, batch 128, 300 iterations per task (about 4 epochs of 10 000).
- Methods at the settings resources_mnist.py chose on validation splits (task-IL, Adam 1e-3): EWC λ 10 on
  permuted and rotated, 1000 on split; replay's default memory (1 000 samples, reservoir); PackNet's
  defaults. Seed 0 for the streams, the initialisation and the random orders.
- Affinity: forward gain[i,j] = after[i,j] − scratch[j]; backward loss[i,j] = scratch[i] − retained[i,j]
  (studies/affinity.py); the curriculum maximises Σ (gain − forgetting) over consecutive pairs, exact
  over the 120 orders of 5 tasks (studies/curriculum.py).
- Order study: the curriculum + 20 random other orders per method; ACC/BWT/FWT spread over orders, the
  best and worst orders with their R matrices, the curriculum's rank by ACC and by BWT.

Cost: per benchmark 25 trainings of a task for the affinity study and 4 methods × 21 orders × 5 tasks =
420 for the order study (PackNet retrains after each task), in ``--workers`` processes.

Results: benchmarks/results/order_affinity_mnist.json (every record, resumable: a benchmark already done
with the same settings is not run again), order_affinity_mnist.txt (what was printed, for every benchmark
done so far), and one report folder per benchmark (order.md with its PNGs: the distribution per method,
best/worst R, the affinity heatmaps and the dendrogram).

    python benchmarks/order_affinity_mnist.py --data-dir ../shared/data/mnist [--workers 2]
        [--benchmarks permuted,rotated,split] [--methods finetune,ewc,replay,packnet] [--orders 20]
    python benchmarks/order_affinity_mnist.py --data-dir ../shared/data/mnist --quick   # smoke test, < 1 min
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings
from pathlib import Path

import torch

from lifelong import config, methods
from lifelong.studies import curriculum, report

BENCHMARKS = {
    "permuted": {"benchmark": "permuted-mnist", "samples_per_task": 10_000},
    "rotated": {"benchmark": "rotated-mnist", "samples_per_task": 10_000},
    "split": {"benchmark": "split-mnist", "scenario": "task"},
}
TRAIN = {"tasks": 5, "hidden": [100, 100], "optimizer": "adam", "lr": 1e-3, "batch_size": 128, "iterations": 300}
METHODS = {  # one per family, at the settings chosen on validation by resources_mnist.py (task-IL)
    "finetune": {},
    "ewc": {"permuted": "ewc:lam=10", "rotated": "ewc:lam=10", "split": "ewc:lam=1000"},
    "replay": {},
    "packnet": {},
}
QUICK = {"tasks": 3, "samples_per_task": 300, "iterations": 20, "hidden": [32]}
RESULTS = Path(__file__).parent / "results"


class Tee(io.TextIOBase):
    """stdout, also kept in a string for the .txt file."""

    def __init__(self):
        self.kept = io.StringIO()

    def write(self, text: str) -> int:
        sys.__stdout__.write(text)
        sys.__stdout__.flush()
        return self.kept.write(text)


def specs(bench: str, names: list[str], scenario: str) -> list[str]:
    out = []
    for name in names:
        if scenario not in methods.get(name).scenarios:
            print(f"{bench}: {name} is left out: it does not run in the {scenario}-incremental scenario")
            continue
        out.append(METHODS.get(name, {}).get(bench, name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--benchmarks", default="permuted,rotated,split")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--orders", default="20", help="random orders besides the curriculum")
    parser.add_argument("--scenario", default="task", choices=("task", "domain"))
    parser.add_argument("--quick", action="store_true", help="tiny settings; results go to /tmp, not results/")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = Path("/tmp/order_affinity_mnist-quick") if args.quick else RESULTS
    results.mkdir(parents=True, exist_ok=True)
    path = results / "order_affinity_mnist.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    tee = Tee()
    with contextlib.redirect_stdout(tee), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the methods' caveats (e.g. EWC's step) would repeat per benchmark
        for bench in args.benchmarks.split(","):
            scenario = BENCHMARKS[bench].get("scenario", args.scenario)
            flags = {**TRAIN, **BENCHMARKS[bench], "scenario": scenario, "data_dir": args.data_dir, "seed": 0}
            flags["method"] = specs(bench, args.methods.split(","), scenario)
            if args.quick:
                flags.update(QUICK)
            key = f"{bench}/{scenario}"
            if key in done and done[key]["flags"] == flags and done[key]["orders"] == args.orders:
                print(f"\n== {key}: done already (see {path.name})")
                continue
            what = f"{flags['benchmark']}, {scenario}-IL, {flags['tasks']} tasks, methods {', '.join(flags['method'])}"
            start = len(tee.kept.getvalue())
            print(f"\n== {key}: {what}, curriculum + {args.orders} random orders, {args.workers} workers")
            cfg = config.resolve(None, flags)
            aff, proposal, study = curriculum.check(cfg, args.orders, args.workers)
            print(report.affinity_text(aff, proposal) + "\n")
            print(report.order_text(study, proposal))
            folder = report.write_order_report(study, results / f"order_affinity_mnist-{bench}", False, aff, proposal)
            print(f"report: {folder}")
            section = tee.kept.getvalue()[start:]
            done[key] = {
                "printed": section,
                "flags": flags,
                "orders": args.orders,
                "affinity": aff.to_dict(),
                "curriculum": proposal,
                "study": study.to_dict(),
            }
            path.write_text(json.dumps(done, indent=1))
    # every benchmark done so far, in the order they were first run: a later run of one does not lose the others
    (results / "order_affinity_mnist.txt").write_text("".join(r.get("printed", "") for r in done.values()))


if __name__ == "__main__":
    main()
