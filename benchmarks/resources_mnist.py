"""Additional neural resources on permuted and split MNIST (task-IL): finetune, EWC, PNN, PackNet and CPG
judged by accuracy and by the parameters they spend (issue 8).

Protocol (ours: the three papers use other networks and data, so there is no published table to match):

- ``permuted``: permuted MNIST, 10 tasks (the first one unpermuted), all 60 000 training images per task;
  ``split``: split MNIST, 5 tasks of 2 classes. Both task-IL: each task owns its output units (one head
  per task, by masking).
- MLP 784-100-100-out, Adam lr 1e-3, batch 128; one epoch per task on permuted MNIST (469 steps), 500
  iterations per task on split MNIST (about 5 epochs of a task's 12 000 images).
- Hyper-parameters: the one setting in ``GRID`` per method is chosen by `lifelong tune`'s procedure:
  one run per value, seed 100, scored by ACC on a validation split (10 % of each task's training data
  held out; the test sets unused); then every seed runs with the chosen value on the test sets.

Reported per method, mean ± sd over seeds: ACC = mean_j R[T,j]; BWT = mean_{j<T} (R[T,j] − R[j,j]) and
FWT = mean_{j≥2} (R[j−1,j] − R[0,j]), the GEM paper's definitions (R[0] = the untrained network); the
parameters after the last task (every parameter the model holds) and the bytes of state kept beside them
(Fisher and anchors, owner masks, picking masks: methods/capacity.py), and the training
time per task (train_s of each task, mean over seeds; runs share the machine with one other worker, so
compare shapes, not single figures). The growth plot draws parameters against tasks; the time plot the
training time per task.

    python benchmarks/resources_mnist.py --data-dir ../shared/data/mnist --seeds 0,1,2,3,4 [--workers 2]
        [--benchmarks permuted,split] [--methods finetune,ewc,pnn,packnet,cpg] [--stage both|tune|table]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from runs import best_value, command, run_all

BENCHMARKS = {
    "permuted": {"benchmark": "permuted-mnist", "tasks": 10, "epochs": 1},
    "split": {"benchmark": "split-mnist", "tasks": 5, "iterations": 500},
}
TRAIN = {"scenario": "task", "hidden": [100, 100], "optimizer": "adam", "lr": 1e-3, "batch_size": 128}
METHODS = ("finetune", "ewc", "pnn", "packnet", "cpg")
# The one setting tuned per method (None: the defaults), and the values tried.
GRID = {
    "finetune": None,
    "ewc": ("lam", [1.0, 10.0, 1e2, 1e3, 1e4, 1e5]),
    "pnn": ("alpha_init", [0.01, 0.1, 1.0]),
    "packnet": ("retrain_epochs", [1, 2, 4]),
    "cpg": ("goal_fraction", [0.97, 0.99, 1.0]),
}
TUNE_SEED, VALIDATION = 100, 0.1
RESULTS = Path(__file__).parent / "results"


def flags(bench: str, method: str, data_dir: str, extra: dict) -> dict:
    """The command line's options for one run of ``method`` on ``bench``."""
    return {**BENCHMARKS[bench], **TRAIN, "data_dir": data_dir, "method": [method], **extra}


def tuning_jobs(benches, methods, data_dir) -> list[tuple]:
    jobs = []
    for b in benches:
        for m in methods:
            if GRID[m]:
                param, values = GRID[m]
                for v in values:
                    jobs.append((f"tune/{b}/{m}/{param}={v}", flags(b, m, data_dir, {param: v}), TUNE_SEED, VALIDATION))
    return jobs


def final_jobs(benches, methods, chosen, seeds, data_dir, untuned_only=False) -> list[tuple]:
    return [
        (f"final/{b}/{m}/{seed}", flags(b, m, data_dir, chosen.get((b, m), {})), seed, None)
        for seed in seeds
        for b in benches
        for m in methods
        if not (untuned_only and GRID[m])
    ]


def choose(done: dict, benches, methods) -> dict:
    """`lifelong tune`'s choice: the best validation ACC, first of equals."""
    chosen = {}
    print(f"validation ACC (%) per value (seed {TUNE_SEED}, {VALIDATION:.0%} of each task's training data held out):")
    for b in benches:
        for m in methods:
            if not GRID[m]:
                continue
            param, values = GRID[m]
            best, tried = best_value(done, f"tune/{b}/{m}", param, values)
            if best is not None:
                chosen[(b, m)] = {param: best}
                print(f"  {b:<9} {m:<9} {tried}  -> {best:g}")
    return chosen


def finals(done: dict, bench: str, method: str, seeds) -> list[dict]:
    return [r for s in seeds if (r := done.get(f"final/{bench}/{method}/{s}")) and "error" not in r]


def mean_sd(values, scale: float = 1.0, digits: int = 2) -> str:
    v = np.asarray(values, dtype=float) * scale
    sd = f"{np.std(v, ddof=1):.{digits}f}" if len(v) > 1 else "–"
    return f"{np.mean(v):.{digits}f} ± {sd}"


def table(done: dict, bench: str, methods, chosen, seeds) -> str:
    lines = [
        "| method | tuned on validation | ACC % | BWT % | FWT % | parameters after the last task | stored kB "
        "| train s / task |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        runs = finals(done, bench, m, seeds)
        tuned = ", ".join(f"{k}={v:g}" for k, v in chosen.get((bench, m), {}).items()) or "–"
        if not runs:
            lines.append(f"| {m} | {tuned} | – | – | – | – | – | – |")
            continue
        params = [r["capacity"][-1]["parameters"] for r in runs]
        per_task = np.mean([np.mean(r["train_s_per_task"]) for r in runs])
        cells = [
            mean_sd([r["acc"] for r in runs], 100),
            mean_sd([r["bwt"] for r in runs], 100),
            mean_sd([r["fwt"] for r in runs], 100),
            f"{np.mean(params):,.0f}" + ("" if len(set(params)) == 1 else f" ({min(params):,}–{max(params):,})"),
            f"{np.mean([r['capacity'][-1]['stored_bytes'] for r in runs]) / 1e3:,.0f}",
            f"{per_task:.1f}",
        ]
        lines.append(f"| {m} | {tuned} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_task(done: dict, bench: str, methods, seeds, field: str) -> dict[str, list[float]]:
    """For each method, the mean over seeds of ``field`` per task: 'parameters' or 'train_s'."""
    out = {}
    for m in methods:
        runs = finals(done, bench, m, seeds)
        if not runs:
            continue
        if field == "parameters":
            rows = [[c["parameters"] for c in r["capacity"]] for r in runs]
        else:
            rows = [r["train_s_per_task"] for r in runs]
        out[m] = np.mean(rows, axis=0).tolist()
    return out


def time_table(times: dict[str, list[float]]) -> str:
    n = max(len(v) for v in times.values())
    lines = ["task  " + "".join(f"{m:>10}" for m in times)]
    for t in range(n):
        lines.append(f"{t + 1:>4}  " + "".join(f"{v[t]:>10.2f}" for v in times.values()))
    return "\n".join(lines)


def plot(bench: str, growth: dict, times: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for m, values in growth.items():
        left.plot(range(1, len(values) + 1), values, marker="o", label=m)
    left.set(xlabel="tasks learned", ylabel="parameters", yscale="log", title=f"{bench} MNIST: growth")
    for m, values in times.items():
        right.plot(range(1, len(values) + 1), values, marker="o", label=m)
    right.set(xlabel="task", ylabel="training time of the task (s)", title=f"{bench} MNIST: time per task")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--results", default=str(RESULTS / "resources_mnist.json"))
    parser.add_argument("--stage", choices=["tune", "both", "table", "commands"], default="both")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    benches, methods = args.benchmarks.split(","), args.methods.split(",")
    unknown = sorted(set(benches) - set(BENCHMARKS)) + sorted(set(methods) - set(METHODS))
    if unknown:
        known = f"benchmarks: {', '.join(BENCHMARKS)}; methods: {', '.join(METHODS)}"
        parser.error(f"unknown {', '.join(unknown)}; {known}")
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.stage == "commands":
        for _, opts, seed, validation in tuning_jobs(benches, methods, args.data_dir):
            print(command({**opts, "seed": seed}) + f"  # scored on a {validation:.0%} validation split")
        return
    if args.stage == "table":
        done = json.loads(path.read_text())
    else:
        first = tuning_jobs(benches, methods, args.data_dir)
        if args.stage == "both":
            first += final_jobs(benches, methods, {}, seeds, args.data_dir, untuned_only=True)
        done = run_all(first, args.workers, path)
    chosen = choose(done, benches, methods)
    if args.stage == "both":
        done = run_all(final_jobs(benches, methods, chosen, seeds, args.data_dir), args.workers, path)
    for b in benches:
        name = BENCHMARKS[b]["benchmark"]
        print(f"\n{name}, task-IL, {len(seeds)} seeds (mean ± sd); BWT and FWT as in the GEM paper:")
        print(table(done, b, methods, chosen, seeds))
        growth, times = per_task(done, b, methods, seeds, "parameters"), per_task(done, b, methods, seeds, "train_s")
        if times:
            print(f"\ntraining time per task (s, mean over seeds), {b}:\n" + time_table(times))
            figure = RESULTS / f"resources_{b}.png"
            plot(b, growth, times, figure)
            print(f"plot: {figure}")


if __name__ == "__main__":
    main()
