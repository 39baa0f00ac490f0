"""LAMOL on bAbI's 20 tasks (issue 9): one causal transformer that answers the current task and writes
pseudo-samples of the earlier ones (Sun, Ho & Lee 2020, arXiv 1909.03329), beside the same network trained
with finetune, with LAMOL's replay of REAL samples (the paper's upper-bound ablation) and jointly.

Every run goes through the command line's own code (runs.py), on the 1k set, domain-IL (one answer
vocabulary, no task identity at test time), tasks 1..20 in order:

- the network: LAMOL's default transformer (``--model transformer`` for finetune and joint; LAMOL builds
  the same one), d 128, 2 blocks, 4 heads, trained from scratch (no GPT-2 here);
- Adam, lr 1e-3, batch 32, 5 epochs per task (joint: 5 epochs over all tasks' data at once, the same
  number of steps). After its 5 epochs finetune answers 43.3 % of task 1 (R[1][1] of the table's run),
  where the memory network of babi_lifelong.py answers 100 % after its 100 epochs;
- LAMOL: λ_LM 0.25, γ 0.2 pseudo-samples per new sample, top-k 20 (the authors' defaults).

Reported: ACC = mean_j R[T,j], BWT = mean_{j<T} (R[T,j] − R[j,j]) (the GEM paper's), task 5's accuracy
after it is learned and after all 20, the training seconds (the cost against finetune), and for LAMOL
the share of its pseudo-samples that parsed, with a few of them as written.

    python benchmarks/babi_lamol.py --data-dir ../shared/data/babi [--seeds 0] [--epochs 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from babi_lifelong import save, sequential_table, task5_panel
from runs import run_all

RESULTS = Path(__file__).parent / "results"
TRAIN = {"benchmark": "babi", "optimizer": "adam", "lr": 1e-3, "batch_size": 32}
# name in the table: (method spec, model); LAMOL builds its own network of the same sizes
METHODS = {
    "finetune": ("finetune", "transformer"),
    "lamol": ("lamol", None),
    "lamol-real": ("lamol:real_replay=true", None),
    "joint": ("joint", "transformer"),
}


def jobs(data_dir: str, seeds: list[int], epochs: int) -> list[tuple]:
    out = []
    for name, (spec, model) in METHODS.items():
        opts = {**TRAIN, "data_dir": data_dir, "epochs": epochs, "method": [spec]}
        if model:
            opts["model"] = model
        out += [(f"lamol/{name}/{s}", opts, s, None) for s in seeds]
    return out


def parse_lines(done: dict, seeds) -> list[str]:
    """The share of LAMOL's pseudo-samples that parsed, before each new task (mean over earlier tasks), and
    a few of them."""
    runs = [done[k] for s in seeds if (k := f"lamol/lamol/{s}") in done and "error" not in done[k]]
    if not runs:
        return ["(no LAMOL run)"]
    history = runs[0]["facts"]["pseudo_samples"]
    written = sum(h["generated"] for h in history)
    parsed = sum(h["parsed"] for h in history)
    dropped: dict[str, int] = {}
    for h in history:
        for why, n in h["dropped"].items():
            dropped[why] = dropped.get(why, 0) + n
    lines = [
        f"LAMOL pseudo-samples (seed {seeds[0]}): {parsed} of {written} parsed ({100 * parsed / max(written, 1):.1f} %)"
        f"; dropped: {', '.join(f'{why} {n}' for why, n in dropped.items()) or 'none'}",
        "parsed % before each new task: "
        + "  ".join(
            f"{d}: {100 * np.mean([h['parse_share'] for h in history if h['during'] == d]):.0f}"
            for d in dict.fromkeys(h["during"] for h in history)
        ),
        "a few, as written before the last task (story oldest first, question, answer):",
    ]
    last = [h for h in history if h["during"] == history[-1]["during"]]
    lines += [f"  [{h['task']}] {h['examples'][0]}" for h in last if h["examples"]][:8]
    return lines


def plot(done: dict, seeds, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    task5_panel(ax, done, seeds, list(METHODS), "lamol", "bAbI task 5, LAMOL's transformer")
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/babi")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="print the table of the results file, run nothing")
    parser.add_argument("--results", default=str(RESULTS / "babi_lamol.json"))
    args = parser.parse_args()
    seeds, path = [int(s) for s in args.seeds.split(",")], Path(args.results)
    started = time.perf_counter()
    if args.table:
        done = json.loads(path.read_text())
    else:
        done = run_all(jobs(args.data_dir, seeds, args.epochs), args.workers, path)
    print(f"\nbAbI 1k, 20 tasks one after another, domain-IL, LAMOL's transformer (accuracy %, seeds {args.seeds}):")
    print(sequential_table(done, seeds, list(METHODS), prefix="lamol"))
    print("\n".join(parse_lines(done, seeds)))
    figure = RESULTS / "babi_lamol.png"
    plot(done, seeds, figure)
    print(f"plot: {figure}\nwall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
