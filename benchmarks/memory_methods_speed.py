"""The memory methods' training time against fine-tuning's on the loop-overhead work (issue 7, "Speed").

The work of benchmarks/loop_overhead.py: permuted MNIST, 5 tasks of 60 000 samples, the 3 x 50 MLP, SGD
lr 0.1, batch 32, one epoch per task, through ``lifelong.fit``; every method with its defaults. The figure
is the wall time of training (the sum of ``Result.timings["train_s"]``, evaluation excluded), the median
over the repeats, and its ratio to fine-tuning's median. The methods run in a different order in every
repeat (rotated), after one untimed warm-up run, so that the noise of a shared machine hits all alike.
Targets: replay, A-GEM and LwF at most 1.5x fine-tuning, GEM at most 2x; iCaRL, DGR and FearNet are
printed without a target. The column ``cpu ratio`` does the same with the process CPU time of training (each
task from ``before_task`` to the end of ``after_task``, as ``train_s``): with one thread it hardly
depends on what else runs on the machine, so it checks the wall-time ratio when the machine is shared.
Rows marked ``(not the paper's)`` use a cheaper setting that changes the algorithm (``--no-extra-rows``
leaves them out); they show what a setting buys, not whether a default passes.

Rows marked ``(floor)`` are fine-tuning plus only the memory gradients the paper's algorithm must compute
each step (A-GEM: g_ref on the reference batch; GEM: every earlier task's g_k on its whole memory), with
no projection and nothing else: no implementation of those papers can be faster than its floor, so the
floor's ratio says whether a target is reachable at the papers' settings at all.

Then GEM's time per task on a stream of 20 permuted tasks (the same work, one run), printed and plotted
to benchmarks/results/gem_time_per_task.png. Every figure goes to benchmarks/results/memory_methods_speed.json.

    python benchmarks/memory_methods_speed.py --data-dir ../shared/data/mnist --threads 1 [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import lifelong as ll

LR, BATCH, SEED = 0.1, 32, 0
# (row name, method name, settings, target ratio or None); the first row is the reference.
ROWS = [
    ("finetune", "finetune", {}, None),
    ("replay", "replay", {}, 1.5),
    ("agem", "agem", {}, 1.5),
    ("lwf", "lwf", {}, 1.5),
    ("gem", "gem", {}, 2.0),
    ("icarl", "icarl", {}, None),
    ("dgr", "dgr", {}, None),
    # On this permuted (domain-IL) work every task reuses the same 10 units, so FearNet's sleeps have no older
    # class to replay: the row prices its mPFC (an autoencoder) and its consolidation, not its pseudo-examples.
    # Its default reconstruction weights (10 000 and 100, tuned under Adam) make SGD at lr 0.1 diverge; the
    # weights change no arithmetic, so the row runs with 1 and 0.1.
    ("fearnet", "fearnet", {"reconstruction": 1.0, "hidden_reconstruction": 0.1}, None),
]
# Cheaper settings that are not the papers' algorithms: printed apart, never judged against a target.
EXTRA_ROWS = [
    ("gem memory_batch=32 (not the paper's)", "gem", {"memory_batch": 32}, None),
    ("agem reference_batch=32 (not the paper's)", "agem", {"reference_batch": 32}, None),
]
RESULTS = Path(__file__).parent / "results"


class AGEMFloor(ll.methods.AGEM):
    """A-GEM's unavoidable arithmetic: g_ref on a reference batch every step, then thrown away."""

    def after_backward(self, model, task) -> None:
        if len(self.memory):
            items = self.memory.sample(min(self.reference_batch, len(self.memory)), self._generator)
            self.memory_gradient(model, items["x"], items["y"], self.units(items["task"]))


class GEMFloor(ll.methods.GEM):
    """GEM's unavoidable arithmetic: each earlier task's g_k on its whole memory every step, no projection."""

    def after_backward(self, model, task) -> None:
        for row, (items, mask) in zip(self._grads, self._blocks, strict=True):
            self.memory_gradient(model, items["x"], items["y"], mask, out=row)


# Floors: no implementation of A-GEM or GEM at the papers' settings can be faster (see the docstring).
FLOOR_ROWS = [
    ("agem: g_ref alone (floor)", AGEMFloor, {}, None),
    ("gem: the g_k alone (floor)", GEMFloor, {}, None),
]


def cpu_per_task(method) -> list[float]:
    """Record the process CPU time of each task's training, from its ``before_task`` to the end of its
    ``after_task`` (the span of fit()'s ``train_s``), by wrapping the two hooks of this one instance."""
    spans: list[float] = []
    before, after = method.before_task, method.after_task

    def before_task(task, model):
        spans.append(-time.process_time())
        before(task, model)

    def after_task(task, model):
        after(task, model)
        spans[-1] += time.process_time()

    method.before_task, method.after_task = before_task, after_task
    return spans


def fit_once(stream, name: str, settings: dict):
    """One fit() of a row: its result, wall time of the whole fit, training CPU time per task, and the
    projection rate per task (GEM, A-GEM)."""
    torch.manual_seed(SEED)
    model = ll.models.MLP(stream.input_size, [50, 50, 50], stream.n_classes)
    method = create(name, settings)
    cpu = cpu_per_task(method)
    t0 = time.perf_counter()
    result = ll.fit(stream, model, method, epochs=1, lr=LR, batch_size=BATCH, seed=SEED)
    wall = time.perf_counter() - t0
    projects = hasattr(method, "projection_rate") and not isinstance(method, (AGEMFloor, GEMFloor))
    rate = method.projection_rate() if projects else None
    return result, wall, cpu, rate


def create(name, settings: dict):
    """A registered method by name, or a benchmark's own class (the floors)."""
    return name(**settings) if isinstance(name, type) else ll.methods.create(name, **settings)


def usable_rows(rows):
    """The rows whose method is registered and accepts the settings (a cheaper option may not exist)."""
    kept = []
    for row in rows:
        try:
            create(row[1], row[2])
        except ll.LifelongError as e:
            print(f"skipped {row[0]}: {e}")
            continue
        kept.append(row)
    return kept


def compare(stream, rows, repeats: int) -> dict:
    """Each row's training times over the repeats, in a rotated order, after an untimed warm-up."""
    fit_once(stream, "finetune", {})  # warm-up: first-call costs (allocator, page faults) land on no row
    times = {row[0]: [] for row in rows}
    cpu_times = {row[0]: [] for row in rows}
    facts = {}
    for r in range(repeats):
        order = rows[r % len(rows) :] + rows[: r % len(rows)]
        for label, name, settings, _ in order:
            try:
                result, wall, cpu, rate = fit_once(stream, name, settings)
            except Exception as e:  # a method still being written must not stop the others
                print(f"{label}: failed ({type(e).__name__}: {e})")
                facts[label] = {"error": f"{type(e).__name__}: {e}"}
                continue
            times[label].append(sum(result.timings["train_s"]))
            cpu_times[label].append(sum(cpu))
            facts[label] = {
                "train_s_per_task": result.timings["train_s"],
                "fit_wall_s": wall,
                "train_cpu_s_per_task": cpu,
                "acc": result.acc,
                "projection_rate": rate,
            }
            print(
                f"  repeat {r + 1}/{repeats} {label:44} {times[label][-1]:7.2f} s  (cpu {sum(cpu):.2f} s)", flush=True
            )
    return {
        label: {"train_s": ts, "train_cpu_s": cpu_times[label], **facts.get(label, {})} for label, ts in times.items()
    }


def table(measured: dict, rows) -> list[dict]:
    base = statistics.median(measured["finetune"]["train_s"])
    base_cpu = statistics.median(measured["finetune"]["train_cpu_s"])
    out = []
    for label, _, _, target in rows:
        ts = measured[label]["train_s"]
        if not ts:
            out.append({"row": label, "median_s": None, "ratio": None, "target": target, "verdict": "FAILED TO RUN"})
            continue
        median, cpu = statistics.median(ts), statistics.median(measured[label]["train_cpu_s"])
        ratio = median / base
        verdict = "" if target is None else ("PASS" if ratio <= target else "FAIL")
        out.append(
            {
                "row": label,
                "median_s": median,
                "ratio": ratio,
                "target": target,
                "verdict": verdict,
                "train_cpu_s": cpu,
                "cpu_ratio": cpu / base_cpu,
            }
        )
    return out


def print_table(lines: list[dict], measured: dict) -> None:
    print(f"\n{'method':44}{'median s':>10}{'ratio':>8}{'target':>8}  verdict   min..max s  cpu ratio  projected")
    for line in lines:
        ts = measured[line["row"]]["train_s"]
        target = f"{line['target']:.1f}x" if line["target"] else ""
        if line["median_s"] is None:
            print(f"{line['row']:44}{'-':>10}{'-':>8}{target:>8}  {line['verdict']}")
            continue
        rate = measured[line["row"]].get("projection_rate")
        projected = "" if rate is None else " ".join(f"{r:.2f}" for r in rate)
        spread = f"{min(ts):.2f}..{max(ts):.2f}"
        print(
            f"{line['row']:44}{line['median_s']:10.2f}{line['ratio']:7.2f}x{target:>8}  {line['verdict']:8}"
            f"{spread:>12}{line['cpu_ratio']:10.2f}x  {projected}"
        )


def gem_per_task(data_dir: str, n_tasks: int, samples: int | None) -> dict:
    """GEM's training time per task on a stream of ``n_tasks`` permuted tasks (one run), and fine-tuning's."""
    stream = ll.benchmarks.permuted("mnist", n_tasks=n_tasks, seed=0, data_dir=data_dir, samples_per_task=samples)
    out = {}
    for name in ("finetune", "gem"):
        result, _, cpu, rate = fit_once(stream, name, {})
        out[name] = {
            "train_s": result.timings["train_s"],
            "train_cpu_s": cpu,
            "projection_rate": rate,
            "acc": result.acc,
        }
    return out


def plot(per_task: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, color in (("gem", "C0"), ("finetune", "C1")):
        cpu, wall = per_task[name]["train_cpu_s"], per_task[name]["train_s"]
        tasks = range(1, len(cpu) + 1)
        ax.plot(tasks, cpu, "o-", color=color, label=f"{name}, CPU time", markersize=4)
        ax.plot(tasks, wall, "x:", color=color, alpha=0.5, label=f"{name}, wall time (shared machine)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("task (earlier tasks in GEM's memory: task - 1, 256 examples each)")
    ax.set_ylabel("training time (s)")
    ax.set_title("GEM's time per task, permuted MNIST, MLP 3x50, batch 32", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--long-tasks", type=int, default=20, help="tasks of GEM's time-per-task run (0: skip it)")
    parser.add_argument("--no-extra-rows", dest="extra_rows", action="store_false", help="skip the cheaper rows")
    parser.add_argument("--methods", nargs="*", help="only these rows (finetune is always run)")
    parser.add_argument("--samples-per-task", type=int, help="fewer training samples per task (a quick check)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = ROWS + FLOOR_ROWS + (EXTRA_ROWS if args.extra_rows else [])
    if args.methods:
        rows = [r for r in rows if r[0] == "finetune" or r[1] in args.methods or r[0].split(":")[0] in args.methods]
    rows = usable_rows(rows)
    print(f"torch {torch.__version__} · {platform.processor() or platform.machine()} · {args.threads} thread(s)")
    samples = args.samples_per_task
    print(f"permuted MNIST, 5 tasks x {samples or 60000} samples, MLP 784-50-50-50-10, SGD lr {LR}, batch {BATCH}")
    print(f"{args.repeats} repeats in rotated order; figure: median of training wall time (sum of train_s)\n")
    stream = ll.benchmarks.permuted("mnist", n_tasks=5, seed=0, data_dir=args.data_dir, samples_per_task=samples)
    measured = compare(stream, rows, args.repeats)
    lines = table(measured, rows)
    print_table(lines, measured)
    report = {
        "work": {
            "stream": "permuted-mnist",
            "tasks": 5,
            "samples_per_task": samples or 60000,
            "model": "MLP 3x50",
            "lr": LR,
            "batch_size": BATCH,
        },
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "rows": lines,
        "measured": measured,
    }
    del stream

    if args.long_tasks:
        print(f"\nGEM's training time per task, {args.long_tasks} permuted tasks (one run):")
        per_task = gem_per_task(args.data_dir, args.long_tasks, samples)
        print(f"{'task':>5}{'gem s':>9}{'gem cpu s':>11}{'finetune s':>12}{'finetune cpu s':>16}{'projected':>11}")
        gem, fine = per_task["gem"], per_task["finetune"]
        for k in range(args.long_tasks):
            print(
                f"{k + 1:5}{gem['train_s'][k]:9.2f}{gem['train_cpu_s'][k]:11.2f}{fine['train_s'][k]:12.2f}"
                f"{fine['train_cpu_s'][k]:16.2f}{gem['projection_rate'][k]:11.2f}"
            )
        for what in ("train_s", "train_cpu_s"):
            a, b = sum(gem[what]), sum(fine[what])
            print(f"total {what}: gem {a:.1f} s, finetune {b:.1f} s ({a / b:.1f}x)")
        plot(per_task, out / "gem_time_per_task.png")
        report["gem_per_task"] = {"tasks": args.long_tasks, **per_task}
        print(f"plot: {out / 'gem_time_per_task.png'}")

    (out / "memory_methods_speed.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"figures: {out / 'memory_methods_speed.json'}")


if __name__ == "__main__":
    main()
