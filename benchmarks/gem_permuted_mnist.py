"""GEM's MNIST-permutations experiment (Lopez-Paz & Ranzato 2017, arXiv 1706.08840, Section 5, Figure 1):
finetune, EWC, GEM and A-GEM on the protocol of the authors' code (github.com/facebookresearch/
GradientEpisodicMemory: run_experiments.sh, data/mnist_permutations.py, main.py, metrics/metrics.py).

Protocol, as their code runs it:
- 20 tasks, each a random pixel permutation of MNIST (the first one too: no unpermuted task); each task
  trains on 1000 examples drawn at random from the 60 000 training images and is tested on all 10 000
  test images under its permutation. Pixels in [0, 1].
- One network, a single shared 10-unit head (domain-incremental): MLP 784-100-100-10, ReLU, Xavier-uniform
  weights and zero biases (their model/common.py; torch's default init is replaced here to match it).
- One pass over each task, batch 10, plain SGD, one learning rate per method (their run_experiments.sh):
  finetune (their "single") lr 0.03; EWC lr 0.1, memory_strength 3, n_memories 10; GEM lr 0.1,
  256 memories per task, memory_strength (margin) 0.5.
- A-GEM (Chaudhry et al. 2019, arXiv 1812.00420) on the same stream: lr 0.1 (their MNIST setting in
  github.com/facebookresearch/agem, replicate_results_iclr19.sh), reference batch 256 (their
  EPS_MEM_BATCH_SIZE), 256 memories per task (GEM's, instead of A-GEM's 25 per class = 250 per task).

EWC mapping. Their penalty is memory_strength · Σ_t Σ_i F_{t,i} (θ_i − θ*_{t,i})², no 1/2, with F_t the
square of the gradient of the mean loss on the task's first batch of 10 examples (n_memories = 10),
added to the loss (an explicit gradient step). Ours (regularization/ewc.py) is lam · Σ_t Σ_i F_{t,i}
(θ_i − θ*_{t,i})², also without 1/2, so with the same Fisher estimator lam = memory_strength = 3:
fisher="batched", fisher_batch=10, fisher_samples=10 (one batch of 10 training examples of the task, drawn
at random: their first batch is a random one too), step="explicit" (the paper's gradient step, not the
library's default proximal step).

Metrics (src/lifelong/metrics.py), R[i, j] the test accuracy on task j after learning task i, R[0] at
random initialisation: ACC = mean_j R[T, j]; BWT = 1/(T−1) Σ_{j<T} (R[T, j] − R[j, j]); FWT = 1/(T−1)
Σ_{j≥2} (R[j−1, j] − R[0, j]), b̄_j = R[0, j] the same network's accuracy at its random initialisation.
These are the paper's definitions (its Section 2). Their code divides both sums by T instead of T−1
(``bwt_gem_code``, ``fwt_gem_code``, also recorded; 19/20 of ours).

Seeds 0-4: a seed fixes the stream (permutations and the 1000 examples per task) and the network's
initialisation; their script fixes the permutations with seed 0 and varies the rest. Runs go to worker
processes with one thread each; every finished run is kept in benchmarks/results/gem_permuted_mnist.json,
so an interrupted benchmark resumes; the table goes to benchmarks/results/gem_permuted_mnist.md.

    python benchmarks/gem_permuted_mnist.py --data-dir ../shared/data/mnist --seeds 0,1,2,3,4 --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

TASKS, SAMPLES_PER_TASK, HIDDEN, BATCH = 20, 1000, [100, 100], 10
# Method name -> (learning rate, the method's settings), from the authors' scripts (module docstring).
METHODS = {
    "finetune": (0.03, {}),
    "ewc": (0.1, {"lam": 3.0, "fisher": "batched", "fisher_batch": 10, "fisher_samples": 10, "step": "explicit"}),
    "gem": (0.1, {"memory_size": 256, "margin": 0.5}),
    "agem": (0.1, {"memory_size": 256, "reference_batch": 256}),
}
# The paper's Figure 1 is a bar chart without printed values; the authors' repository draws it with
# run_experiments.sh and results/plot_results.py. Their code (commit 34c6b8e, unmodified; quadprog 0.1.14,
# torch 2.13 CPU; data/mnist_permutations.py at seed 0 on the same MNIST files) was run here for
# main.py seeds 0-4 with the run_experiments.sh settings, and its saved R matrices scored with
# lifelong.metrics (paper definitions): ACC, BWT, FWT as mean ± sd over the 5 seeds.
AUTHORS_CODE = {
    "finetune": ("0.572 ± 0.005", "-0.236 ± 0.003", "0.004 ± 0.011"),
    "ewc": ("0.603 ± 0.021", "-0.200 ± 0.026", "0.006 ± 0.011"),
    "gem": ("0.824 ± 0.003", "0.028 ± 0.004", "0.003 ± 0.015"),
}
TARGET_GEM_BWT = -0.01
RESULTS = Path(__file__).parent / "results"
JSON_FILE, TABLE_FILE = RESULTS / "gem_permuted_mnist.json", RESULTS / "gem_permuted_mnist.md"


def params(method: str) -> dict:
    lr, hp = METHODS[method]
    return {"lr": lr, **hp}


def xavier_(model) -> None:
    """The authors' initialisation (model/common.py): U(±√(6 / (fan_in + fan_out))) weights, zero biases."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            torch.nn.init.zeros_(m.bias)


def run_one(job: tuple) -> tuple[str, dict]:
    key, method, seed, data_dir = job
    import torch

    import lifelong as ll
    from lifelong import metrics

    # The memory methods may be edited while a benchmark runs: record the version this process imported
    # (each run gets a fresh worker process, so it imports the files as they are when it starts).
    folder = Path(ll.__file__).parent / "methods" / "memory"
    sources = {
        f: hashlib.sha1((folder / f).read_bytes()).hexdigest()[:10]
        for f in ("gem.py", "agem.py", "gradient_memory.py", "projection.py")
    }
    torch.set_num_threads(1)
    lr, hp = METHODS[method]
    stream = ll.benchmarks.permuted(
        "mnist", n_tasks=TASKS, seed=seed, data_dir=data_dir, permute_first=True, samples_per_task=SAMPLES_PER_TASK
    )
    torch.manual_seed(seed)
    model = ll.models.MLP(stream.input_size, HIDDEN, stream.n_classes)
    xavier_(model)
    settings = ll.Settings(epochs=1, batch_size=BATCH, lr=lr, optimizer="sgd", seed=seed)
    t0 = time.perf_counter()
    result = ll.fit(stream, model, ll.methods.create(method, **hp), settings)
    wall = time.perf_counter() - t0
    record = {
        "params": params(method),
        **metrics.summary(result.R),
        "R": result.R.tolist(),
        "wall_s": wall,
        "train_s": sum(result.timings["train_s"]),
        "eval_s": result.timings["eval_s"],
    }
    record["source_sha1"] = sources
    rate = result.facts.get("projection_rate")
    if rate is not None:
        record["projection_rate"] = rate
    memory = result.facts.get("memory")
    if memory is not None:
        record["memory"] = {k: memory[k] for k in ("policy", "capacity", "samples", "bytes")}
    return key, record


def run_all(jobs: list[tuple], workers: int) -> dict:
    done = json.loads(JSON_FILE.read_text()) if JSON_FILE.exists() else {}
    # A run recorded with other settings (an earlier version of this script) is redone.
    done = {k: v for k, v in done.items() if v.get("params") == params(k.split("/")[0])}
    todo = [j for j in jobs if j[0] not in done]
    print(f"{JSON_FILE.name}: {len(todo)} runs to do, {len(jobs) - len(todo)} already done", flush=True)
    if todo:
        with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
            for key, record in pool.imap_unordered(run_one, todo):
                done[key] = record
                JSON_FILE.write_text(json.dumps(done, indent=1))
                print(
                    f"  {key}: ACC {record['acc']:.3f} BWT {record['bwt']:+.3f} FWT {record['fwt']:+.3f} "
                    f"({record['wall_s']:.0f} s)",
                    flush=True,
                )
    return done


def table(done: dict, seeds: list[int]) -> str:
    def pm(values) -> str:
        v = np.asarray(values)
        sd = v.std(ddof=1) if len(v) > 1 else float("nan")
        return f"{v.mean():.3f} ± {sd:.3f}"

    lines = [
        f"GEM paper's MNIST permutations: {TASKS} tasks × {SAMPLES_PER_TASK} training examples, MLP 784-100-100-10 "
        f"(one shared head, domain-IL), one pass, batch {BATCH}, SGD; seeds {','.join(map(str, seeds))}; "
        "mean ± sd over seeds (accuracies as fractions, as in the paper).",
        "",
        "| method | settings | ACC | BWT | FWT | paper (authors' code, run here): ACC / BWT / FWT | seeds "
        "| wall s per run: total (training) | wall s, all seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        runs = [done[k] for s in seeds if (k := f"{method}/{s}") in done]
        if not runs:
            continue
        hp = ", ".join(f"{k}={v:g}" if isinstance(v, float | int) else f"{k}={v}" for k, v in runs[0]["params"].items())
        walls, trains = [r["wall_s"] for r in runs], [r["train_s"] for r in runs]
        paper = " / ".join(AUTHORS_CODE[method]) if method in AUTHORS_CODE else "not in the GEM paper"
        lines.append(
            f"| {method} | {hp} | {pm([r['acc'] for r in runs])} | {pm([r['bwt'] for r in runs])} | "
            f"{pm([r['fwt'] for r in runs])} | {paper} | {len(runs)} | "
            f"{np.mean(walls):.0f} ({np.mean(trains):.0f}) | {np.sum(walls):.0f} |"
        )
    from lifelong import metrics

    lines += [
        "",
        "Paper column: the paper's Figure 1 is a bar chart without values; the column gives the authors' code "
        "(the one that draws it) run here on the same protocol, seeds 0-4, scored with the same definitions.",
        "",
        *(metrics.DEFINITIONS[k] for k in ("acc", "bwt", "fwt")),
    ]
    lines.append("b̄_j = R[0, j]: the same network at its random initialisation.")
    gem = [done[k]["bwt"] for s in seeds if (k := f"gem/{s}") in done]
    if gem:
        verdict = "met" if np.mean(gem) >= TARGET_GEM_BWT else "MISSED"
        lines.append(f"Target GEM BWT ≥ {TARGET_GEM_BWT}: {verdict} (mean {np.mean(gem):+.4f}).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    RESULTS.mkdir(exist_ok=True)
    jobs = [(f"{m}/{s}", m, s, args.data_dir) for s in seeds for m in methods]
    done = run_all(jobs, args.workers)
    text = table(done, seeds)
    TABLE_FILE.write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
