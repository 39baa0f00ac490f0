"""Split MNIST for the memory family against van de Ven & Tolias 2019 ("Three scenarios for continual
learning", arXiv 1904.07734, Table 4) and Hsu et al. 2018 ("Re-evaluating continual learning scenarios",
arXiv 1810.12488: GEM and naive rehearsal).

Every run goes through the same code as the command line (config.resolve → Experiment.execute), and
the tuning stage is `lifelong tune`'s: one value per run on a validation split (10 % of each task's
training data held out, the test sets unused), seed 100, the value with the best validation ACC wins.
The equivalent commands are printed (``--stage commands``).

Protocols (5 tasks of 2 classes; MLP 784-400-400; task-IL = one head per task by masking, domain-IL = one
2-unit head, class-IL = 10 units, every unit seen so far active):

- van de Ven & Tolias: Adam lr 1e-3, batch 128, 2000 iterations per task — offline (``cumulative``:
  all data seen so far, their upper bound), ``lwf``, ``dgr``, ``dgr`` with ``distill`` (DGR+distill),
  ``icarl`` with 2000 exemplars (class-IL only, as in their table), and ``finetune`` (their "None").
- FearNet (Kemker & Kanan 2018, arXiv 1711.10563; class-IL only, the scenario it is built for) under the
  same schedule: a sleep every second task, its default (its sleeps train the mPFC, the steps in between
  its BLA), so that the HC and the BLA answer for the tasks since the last sleep. ``fearnet-sleep1`` (a
  check, run only when named) sleeps after every task, so that the mPFC alone answers; the weight of the
  mPFC's input reconstruction is chosen on validation there, and ``fearnet`` keeps it.
- Hsu et al.: 4 epochs per task, batch 128, SGD lr 0.01 for GEM — ``gem-hsu`` is their GEM: 1100 examples in
  all split over the tasks seen (``memory_policy=task-balanced``) and trained on besides the projection
  (``replay``), as their code does (agents/exp_replay.py: their GEM derives from their naive rehearsal);
  ``gem`` is the paper's GEM under the same training (a ring of 1100 / 5 = 220 per task, no rehearsal);
  naive rehearsal = ``replay`` with Adam lr 1e-3 and a 1100-example memory.

Checks of what else differs in Hsu et al.'s code (run only when named in ``--methods``), each adding one
difference to the one before: ``gem-hsu-steps`` their number of steps (batches of 64 new + 64 stored
examples: their loader mixes the new data with as many stored ones into batches of 128, so an epoch has
twice the steps); ``gem-hsu-code`` two constraints per task (HsuGEM below); ``gem-hsu-input`` their input
standardisation (Standardized below). HsuGEM and HsuGEMStandardized are registered by this script only.

Reported: final average test accuracy ACC = mean_j R[T,j] (%), mean ± sd over seeds, in the stream's
own scenario. Runs go to worker processes (one thread each); every finished run is kept in
benchmarks/results/split_mnist_memory*.json, so an interrupted benchmark resumes where it stopped.

    python benchmarks/split_mnist_memory.py --data-dir ../shared/data/mnist --seeds 0,1,2,3,4 \
        [--stage tune|both|table|commands] [--workers 2] [--cuda-methods dgr,dgr+distill --cuda-workers 4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from runs import best_value, command, run_all

from lifelong import methods
from lifelong.methods.memory.gem import GEM

# Published means (%), task / domain / class-IL. van de Ven & Tolias 2019 Table 4 (20 seeds); GEM and
# naive rehearsal from Hsu et al. 2018 (Table 2).
PAPER = {
    "offline": (99.66, 98.42, 97.94),
    "lwf": (99.57, 71.50, 23.85),
    "dgr": (99.50, 95.72, 90.79),
    "dgr+distill": (99.61, 96.83, 91.79),
    "icarl": (None, None, 94.57),
    "gem": (98.42, 96.16, 92.20),
    "gem-hsu": (98.42, 96.16, 92.20),
    "gem-hsu-steps": (98.42, 96.16, 92.20),
    "gem-hsu-code": (98.42, 96.16, 92.20),
    "gem-hsu-input": (98.42, 96.16, 92.20),
    "replay": (99.40, 95.16, 90.78),
    "finetune": (87.19, 59.21, 19.90),  # van de Ven & Tolias's "None" (fine-tuning), Table 4
    "fearnet": (None, None, None),  # Kemker & Kanan 2018 report CIFAR-100, CUB-200 and AudioSet, not MNIST
    "fearnet-sleep1": (None, None, None),
}
SCENARIOS = ("task", "domain", "class")
VAN_DE_VEN = {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "iterations": 2000}
HSU = {"batch_size": 128, "epochs": 4}
PROTOCOL = {
    "finetune": ("finetune", VAN_DE_VEN, {}),
    "offline": ("cumulative", VAN_DE_VEN, {}),
    "lwf": ("lwf", VAN_DE_VEN, {}),
    "dgr": ("dgr", VAN_DE_VEN, {}),
    "dgr+distill": ("dgr", VAN_DE_VEN, {"distill": True}),
    "icarl": ("icarl", VAN_DE_VEN, {"memory_size": 2000}),
    "gem": ("gem", {**HSU, "optimizer": "sgd", "lr": 0.01}, {"memory_size": 220}),
    "gem-hsu": (
        "gem",
        {**HSU, "optimizer": "sgd", "lr": 0.01},
        {"memory_size": 1100, "memory_policy": "task-balanced", "replay": True},
    ),
    "replay": ("replay", {**HSU, "optimizer": "adam", "lr": 1e-3}, {"memory_size": 1100}),
    # FearNet (Kemker & Kanan 2018) trains under van de Ven & Tolias's schedule: its sleeps train the mPFC
    # and the steps in between its BLA. Its defaults: a sleep every second task (so that the HC and the BLA
    # answer for the tasks since the last sleep), a 64-d latent.
    "fearnet": ("fearnet", VAN_DE_VEN, {"sleep_every": 2}),
    # A check: a sleep after every task, so that the mPFC alone answers; the input reconstruction's weight
    # is chosen on validation here, and fearnet keeps it.
    "fearnet-sleep1": ("fearnet", VAN_DE_VEN, {"sleep_every": 1}),
    # A check, not a protocol of theirs: their loader mixes the new data with as many stored examples into
    # batches of 128, so an epoch has twice the steps of the new data alone. Batches of 64 new examples
    # (+ 64 stored, from ``replay``) give the same number of steps of the same 128-example make-up.
    "gem-hsu-steps": (
        "gem",
        {**HSU, "batch_size": 64, "optimizer": "sgd", "lr": 0.01},
        {"memory_size": 1100, "memory_policy": "task-balanced", "replay": True},
    ),
    # A second check: ``gem-hsu-steps`` with each task's stored share split into two constraints (HsuGEM).
    "gem-hsu-code": (
        "gem-hsu-code",
        {**HSU, "batch_size": 64, "optimizer": "sgd", "lr": 0.01},
        {"memory_size": 1100, "memory_policy": "task-balanced", "replay": True},
    ),
    # The third: ``gem-hsu-code`` on inputs standardised as theirs (HsuGEMStandardized).
    "gem-hsu-input": (
        "gem-hsu-input",
        {**HSU, "batch_size": 64, "optimizer": "sgd", "lr": 0.01},
        {"memory_size": 1100, "memory_policy": "task-balanced", "replay": True},
    ),
}
# Checks of the GEM gap run only when named (--methods gem-hsu-steps,gem-hsu-code,gem-hsu-input).
CHECKS = ("gem-hsu-steps", "gem-hsu-code", "gem-hsu-input", "fearnet-sleep1")
# The one setting tuned per method on the validation split (None: the protocol fixes everything).
GRID = {
    "offline": None,
    "lwf": ("temperature", [1.0, 2.0, 4.0]),
    "dgr": None,
    "dgr+distill": None,  # T = 2 as van de Ven & Tolias; DGR's runs are the costliest (a VAE trains too)
    "icarl": None,
    "gem": ("margin", [0.0, 0.5, 1.0]),
    "gem-hsu": ("margin", [0.0, 0.5, 1.0]),
    "gem-hsu-steps": ("margin", [0.0, 0.5, 1.0]),
    "gem-hsu-code": ("margin", [0.0, 0.5, 1.0]),
    "gem-hsu-input": ("margin", [0.0, 0.5, 1.0]),
    "replay": None,
    "finetune": None,
    # The weight of the mPFC's input reconstruction decides how faithful its pseudo-examples are.
    "fearnet": None,  # keeps the weight chosen under fearnet-sleep1 (10 000, FearNet's default)
    "fearnet-sleep1": ("reconstruction", [100.0, 1000.0, 10000.0, 100000.0]),
}
TUNE_SEED, VALIDATION = 100, 0.1


class HsuGEM(GEM):
    """A check, not a method of the library: GEM with two constraints per earlier task, as Hsu et al.'s code
    ends up with. Their GEM.learn_batch updates the memory after calling their rehearsal's learn_batch,
    which updates it too, so the task counter advances by two per task and each task keeps two random
    samples of 1100 / (2 · tasks seen) examples, one constraint each. Here each task's share (task-balanced,
    1100 / tasks seen) is split at random into two halves, drawn anew each task. Registered by this script
    only (module level, so that the spawned workers, which import this script, have it too)."""

    name = "gem-hsu-code"

    def before_task(self, task, model) -> None:
        super().before_task(task, model)
        halves = []
        for items, mask in self._blocks:
            order = torch.randperm(len(items["y"]), generator=self._generator).to(items["y"].device)
            halves += [({k: v[part] for k, v in items.items()}, mask) for part in order.tensor_split(2)]
        self._blocks = halves
        self._grads = torch.empty(len(halves), self.layout.size, device=self._grads.device)


class Standardized(torch.nn.Module):
    """Hsu et al.'s input normalisation (their dataloaders/base.py): (x − 0.1) / 0.2752, the statistics of
    MNIST zero-padded to 32 × 32. Their images are padded first; here they stay 28 × 28, so their 240
    constant padding inputs (a second bias of the first layer) are missing."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - 0.1) / 0.2752)


class HsuGEMStandardized(HsuGEM):
    """The third check: HsuGEM on inputs normalised as theirs (ours are pixels in [0, 1])."""

    name = "gem-hsu-input"

    def prepare(self, model, stream):
        return super().prepare(Standardized(model), stream)


for check in (HsuGEM, HsuGEMStandardized):
    methods.METHODS[check.name] = check
RESULTS = Path(__file__).parent / "results"


def flags(scenario: str, method: str, data_dir: str, devices: dict, extra: dict) -> dict:
    """The command line's options for one run of ``method`` (a PROTOCOL key) in ``scenario``."""
    name, train, settings = PROTOCOL[method]
    device = devices.get(method, "cpu")
    return {
        "benchmark": "split-mnist",
        "tasks": 5,
        "scenario": scenario,
        "hidden": [400, 400],
        "data_dir": data_dir,
        "device": device,
        "method": [name],
        **train,
        **settings,
        **extra,
    }


def pairs(scenarios, methods) -> list[tuple[str, str]]:
    """(scenario, method) pairs to run: iCaRL only in class-IL, as in van de Ven & Tolias' table, and FearNet
    only there too (built for class-IL; its one Gaussian per output unit cannot serve domain-IL)."""
    class_only = ("icarl", "fearnet", "fearnet-sleep1")
    return [(s, m) for s in scenarios for m in methods if not (m in class_only and s != "class")]


def tuning_jobs(scenarios, methods, data_dir, devices) -> list[tuple]:
    jobs = []
    for s, m in pairs(scenarios, methods):
        if GRID[m]:
            param, values = GRID[m]
            opts = [flags(s, m, data_dir, devices, {param: v}) for v in values]
            jobs += [(f"tune/{s}/{m}/{param}={v}", o, TUNE_SEED, VALIDATION) for v, o in zip(values, opts, strict=True)]
    return jobs


def final_jobs(scenarios, methods, chosen, seeds, data_dir, devices, untuned_only=False) -> list[tuple]:
    return [
        (f"final/{s}/{m}/{seed}", flags(s, m, data_dir, devices, chosen.get((s, m), {})), seed, None)
        for seed in seeds
        for s, m in pairs(scenarios, methods)
        if not (untuned_only and GRID[m])
    ]


def choose(done: dict, scenarios, methods) -> dict:
    """`lifelong tune`'s choice for each tuned (scenario, method): the best validation ACC, first of equals."""
    chosen = {}
    print(f"validation ACC (%) per value (seed {TUNE_SEED}, {VALIDATION:.0%} of each task's training data held out):")
    for s, m in pairs(scenarios, methods):
        if not GRID[m]:
            continue
        param, values = GRID[m]
        best, tried = best_value(done, f"tune/{s}/{m}", param, values)
        if best is not None:
            chosen[(s, m)] = {param: best}
            print(f"  {s}-IL {m:<12} {tried}  -> {best:g}")
    return chosen


def table(done: dict, scenarios, methods, chosen, seeds) -> str:
    lines = [
        "| method | tuned on validation | " + " | ".join(f"{s}-IL ours | {s}-IL paper" for s in scenarios) + " |",
        "|---|---|" + "---|---|" * len(scenarios),
    ]
    for m in methods:
        cells, tuned_values = [], []
        for s in scenarios:
            accs = [done[k]["acc"] * 100 for seed in seeds if (k := f"final/{s}/{m}/{seed}") in done]
            paper = PAPER[m][SCENARIOS.index(s)]
            if (s, m) in chosen:
                tuned_values.append(f"{s}: " + ", ".join(f"{k}={v:g}" for k, v in chosen[(s, m)].items()))
            if not accs:
                cells += ["–", "–" if paper is None else f"{paper:.2f}"]
                continue
            sd = np.std(accs, ddof=1) if len(accs) > 1 else float("nan")
            diff = "" if paper is None else f" ({np.mean(accs) - paper:+.1f})"
            cells += [f"{np.mean(accs):.2f} ± {sd:.2f}{diff}", "–" if paper is None else f"{paper:.2f}"]
        lines.append(f"| {m} | {'; '.join(tuned_values) or '–'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cuda-methods", default="", help="methods to run on the GPU, e.g. dgr,dgr+distill")
    parser.add_argument("--cuda-workers", type=int, default=4, help="processes sharing the GPU")
    parser.add_argument("--results", default=str(RESULTS / "split_mnist_memory.json"))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--methods", default=",".join(m for m in PROTOCOL if m not in CHECKS))
    parser.add_argument("--stage", choices=["tune", "both", "commands", "table"], default="both")
    parser.add_argument("--smoke", action="store_true", help="20 iterations per task: checks the script, not the paper")
    args = parser.parse_args()
    path = Path(args.results).with_stem(Path(args.results).stem + "_smoke") if args.smoke else Path(args.results)
    devices = {m: "cuda" for m in args.cuda_methods.split(",") if m}
    if args.smoke:
        for _, train, _ in PROTOCOL.values():
            train.update(iterations=20)
    seeds = [int(s) for s in args.seeds.split(",")]
    scenarios, methods = args.scenarios.split(","), args.methods.split(",")
    unknown = sorted(set(methods) - set(PROTOCOL)) + sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown {', '.join(unknown)}; methods: {', '.join(PROTOCOL)}; scenarios: {', '.join(SCENARIOS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.stage == "commands":
        for s, m in pairs(scenarios, methods):
            if GRID[m]:
                param, values = GRID[m]
                opts = flags(s, m, args.data_dir, {}, {"seed": TUNE_SEED})
                print(command(opts, "tune") + f" --param {param} --values {','.join(map(str, values))}")
        return
    where = (scenarios, methods)
    if args.stage == "table":
        done = json.loads(path.read_text())
    else:
        # The tuning runs and the final runs of methods with nothing to tune share one pool of workers.
        first = tuning_jobs(*where, args.data_dir, devices)
        if args.stage == "both":
            first += final_jobs(*where, {}, seeds, args.data_dir, devices, untuned_only=True)
        done = run_all(first, args.workers, path, args.cuda_workers)
    chosen = choose(done, *where)
    if args.stage == "both":
        done = run_all(final_jobs(*where, chosen, seeds, args.data_dir, devices), args.workers, path, args.cuda_workers)
    print(
        "\nSplit MNIST, final average test accuracy ACC = mean_j R[T,j] (%), mean ± sd over seeds "
        "(ours − paper in brackets):"
    )
    print(table(done, *where, chosen, seeds))


if __name__ == "__main__":
    main()
