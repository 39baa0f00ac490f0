"""Permuted MNIST, 5 tasks, the lecture's 3 x 50 MLP: every regularisation method against fine-tuning.

Protocol: domain-IL (one 10-unit head), task 1 unpermuted, SGD lr 0.1, batch 32, 1 epoch per task.
Each method's λ is chosen from a grid by validation ACC (10 % of each task's training data held out,
seed 100; lifelong.tune), then run on the test sets with seeds 0, 1, 2. Reported: ACC and BWT (GEM
paper definitions), mean ± sd over seeds.

    python benchmarks/permuted_mnist.py --data-dir ../shared/data/mnist [--step explicit]

``--step`` is the regularisers' penalty step (regularization/base.py): ``auto`` (the default: the
closed-form proximal step under plain SGD) or ``explicit`` (the papers' gradient step). Results are kept
per step in benchmarks/results/permuted_mnist-<step>.json; a rerun resumes from them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lifelong import config, metrics, tune
from lifelong.experiment import Experiment

GRID = {
    "finetune": None,
    "l2": [0.01, 0.1, 1.0],
    "ewc": [0.1, 1.0, 10.0],
    "online-ewc": [0.1, 1.0, 10.0],
    "si": [0.01, 0.1, 1.0],
    "mas": [0.01, 0.1, 1.0],
    "rwalk": [0.1, 1.0, 10.0],
    "scp": [0.1, 1.0, 10.0],
}
PROTOCOL = {"benchmark": "permuted-mnist", "tasks": 5, "hidden": [50, 50, 50], "epochs": 1, "lr": 0.1}
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--step", default="auto", choices=("auto", "proximal", "explicit"))
    args = parser.parse_args()
    results_file = RESULTS / f"permuted_mnist-{args.step}.json"
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    done = json.loads(results_file.read_text()) if results_file.exists() else {}
    for method, grid in GRID.items():
        if method in done:
            continue
        step = {"step": args.step} if grid else {}  # finetune has no penalty, so no step
        cfg = config.resolve(None, {**PROTOCOL, **step, "method": [method], "data_dir": args.data_dir, "seed": 100})
        chosen, curve = {}, []
        if grid:
            curve = tune.sweep(cfg, "lam", grid, fraction=0.1)
            chosen = {"lam": tune.best(curve)["value"]}
            print(method, "validation ACC:", {p["value"]: round(p["acc"] * 100, 1) for p in curve}, flush=True)
        exp = Experiment({**cfg, **chosen, "seeds": seeds})
        results = [exp.execute(seed, spec)[1] for seed, spec in exp.runs]
        done[method] = {
            "chosen": chosen,
            "validation": [{"lam": p["value"], "acc": p["acc"]} for p in curve],
            "acc": [r.acc for r in results],
            "bwt": [r.bwt for r in results],
        }
        results_file.write_text(json.dumps(done, indent=1))
        print(method, "test ACC", np.round(np.array(done[method]["acc"]) * 100, 1), flush=True)

    def pm(values):
        v = np.asarray(values) * 100
        return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"

    base_acc, base_bwt = np.mean(done["finetune"]["acc"]), np.mean(done["finetune"]["bwt"])
    print(
        f"\nPermuted MNIST, 5 tasks, MLP 784-50-50-50-10, SGD lr 0.1, batch 32, 1 epoch/task, seeds {args.seeds}, "
        f"penalty step: {args.step}"
    )
    print("| method | λ (validation) | ACC (%) | BWT (%) | beats finetune on ACC and BWT |")
    print("|---|---|---|---|---|")
    for method, d in done.items():
        lam = f"{d['chosen']['lam']:g}" if d["chosen"] else "-"
        beats = "-" if method == "finetune" else str(np.mean(d["acc"]) > base_acc and np.mean(d["bwt"]) > base_bwt)
        print(f"| {method} | {lam} | {pm(d['acc'])} | {pm(d['bwt'])} | {beats} |")
    print(f"\n{metrics.DEFINITIONS['acc']}; {metrics.DEFINITIONS['bwt']}")


if __name__ == "__main__":
    main()
