"""The search behind the main job (`lifelong run`): the lecture's noisy → clean example, and a 5-task stream
on which each regulariser, with λ chosen on validation, closes at least half of the ACC gap between
finetune and joint, with far less forgetting.

Everything uses a 3 × 50 MLP and plain SGD, lr 0.1, batch 32 (the lecture's network; the library's defaults).

- The example: 2 tasks, task 1 the images under additive Gaussian noise of sd ``s`` (clipped to [0, 1]),
  task 2 the same images clean (the ``noisy`` builder); finetune and joint. The lecture's slide: after
  task 1, 90 % noisy / 96 % clean; after task 2, 80 % / 97 %; both at once, 89 % / 98 %.
- The stream: 5 permuted tasks. Each method's λ is chosen by `lifelong.tune.sweep` (mean validation ACC
  over ``TUNE_SEEDS``, on 10 % of each task's training data held out; the test sets are never seen), then
  the chosen λ runs on the test sets for ``TEST_SEEDS``. Gap closed = (ACC − ACC_finetune) /
  (ACC_joint − ACC_finetune), with the finetune and joint ACC of the same seeds.

Datasets: ``digits`` (scikit-learn's 8 × 8 digits: 1437 training images) and small MNIST subsets made here
from the four IDX files (``--data-dir``), named ``mnist-<n>-<m>-<side>``: a stratified sample of ``n``
training and ``m`` test images (seed ``SUBSET_SEED``), 2 × 2 average-pooled to 14 × 14 when side is 14,
rounded to bytes. A subset reaches the library through ``benchmarks.dataset`` (replaced in each worker)
under the benchmark names ``*-mnist``, so the runs are the library's own (Experiment, tune.sweep).

Stages (runs go to worker processes with one thread each; results land in benchmarks/results/):

    python benchmarks/main_job_search.py --data-dir ../shared/data/mnist --stage sizes
    python benchmarks/main_job_search.py --data-dir ../shared/data/mnist --stage grid --workers 16
    python benchmarks/main_job_search.py --data-dir ../shared/data/mnist --stage search --workers 16
    python benchmarks/main_job_search.py --data-dir ../shared/data/mnist --stage final --workers 2
    python benchmarks/main_job_search.py --data-dir ../shared/data/mnist --stage timing --threads 2

``grid``: a coarse look at digits and three MNIST subsets (the example over noise and epochs; the stream
with λ in decades, one tuning seed). ``search``: the two best subsets, λ in half decades, 3 tuning seeds,
5 test seeds, and the example over 4 seeds. ``final``: the recommendation alone (``DATA``), reproduced.
``timing``: the recommended main job in one process, as `lifelong run` runs it.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
SUBSET_SEED = 2024
REGULARIZERS = ("ewc", "si", "mas", "l2", "online-ewc", "rwalk", "scp")
DECADES = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)
HALF_DECADES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 1e1, 3e1, 1e2, 3e2, 1e3, 1e4)
VALIDATION = 0.1
TRAIN = {"hidden": [50, 50, 50], "lr": 0.1, "batch_size": 32}

# The recommendation (see the report in benchmarks/results/main_job_search.md).
DATA = "mnist-10000-2000-14"
EXAMPLE = {"noise": [0.4, 0.0], "epochs": 10}
STREAM_EPOCHS = 5
TUNE_SEEDS = (0, 1, 2)
TEST_SEEDS = (0, 1, 2, 3, 4)
EXAMPLE_SEEDS = (0, 1, 2, 3)

# ---- data ------------------------------------------------------------------------------------------


def mnist_subset(data_dir: str, n_train: int, n_test: int, side: int = 28, seed: int = SUBSET_SEED) -> list:
    """A stratified MNIST subset as uint8 arrays: train images, train labels, test images, test labels
    (the recipe of the bundled minimnist, at any size)."""
    from lifelong.data.datasets import minimnist

    arrays = minimnist.subset(data_dir, n_train, n_test, side, seed)
    return [arrays[k] for k in ("train_x", "train_y", "test_x", "test_y")]


def compressed_kb(arrays: list) -> float:
    """The size of the arrays in one ``np.savez_compressed`` file, in KB."""
    buf = io.BytesIO()
    np.savez_compressed(buf, *arrays)
    return len(buf.getvalue()) / 1024


DATA_DIR: str | None = None
_SUBSETS: dict = {}


def subset_dataset(spec: str):
    import torch

    from lifelong.data.datasets import Dataset

    _, n, m, side = spec.split("-")
    tx, ty, vx, vy = mnist_subset(DATA_DIR, int(n), int(m), int(side))
    images = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
    labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return Dataset("mnist", images(tx), labels(ty), images(vx), labels(vy), [str(c) for c in range(10)])


def init_worker(data_dir: str | None, threads: int = 1) -> None:
    """Torch threads; ``benchmarks.dataset`` answers a subset name given as ``data_dir``."""
    global DATA_DIR
    import torch

    from lifelong import benchmarks

    torch.set_num_threads(threads)
    DATA_DIR = data_dir
    if getattr(benchmarks.dataset, "subsets", False):
        return
    original = benchmarks.dataset

    def dataset(name, data_dir=None):
        if data_dir and data_dir.startswith("mnist-"):
            if data_dir not in _SUBSETS:
                _SUBSETS[data_dir] = subset_dataset(data_dir)
            return _SUBSETS[data_dir]
        return original(name, data_dir)

    dataset.subsets = True
    benchmarks.dataset = dataset


def benchmark_flags(data: str, builder: str) -> dict:
    if data == "digits":
        return {"benchmark": f"{builder}-digits"}
    return {"benchmark": f"{builder}-mnist", "data_dir": data}


# ---- jobs: one run each, in a worker ------------------------------------------------------------------


def cfg_of(flags: dict) -> dict:
    from lifelong import config

    return config.resolve(None, {"report": False, **flags})


def run_test(job: dict) -> dict:
    """One run on the test sets."""
    from lifelong.experiment import Experiment

    exp = Experiment(cfg_of(job["flags"]))
    seed, spec = exp.runs[0]
    t0 = time.perf_counter()
    _, result = exp.execute(seed, spec)
    bwt = result.bwt if result.bwt is not None and np.isfinite(result.bwt) else None
    return {
        **job,
        "R": (100 * result.R).round(2).tolist(),
        "task_names": result.task_names,
        "acc": 100 * result.acc,
        "bwt": None if bwt is None or job["method"] == "joint" else 100 * bwt,
        "seconds": time.perf_counter() - t0,
    }


def run_tune(job: dict) -> dict:
    """One point of a validation sweep: lifelong.tune.sweep with a single value (mean over the tune seeds)."""
    from lifelong import tune

    t0 = time.perf_counter()
    (point,) = tune.sweep(cfg_of(job["flags"]), "lam", [job["lam"]], VALIDATION)
    return {**job, "val_acc": 100 * point["acc"], "val_bwt": 100 * point["bwt"], "seconds": time.perf_counter() - t0}


def dispatch(job: dict) -> dict:
    return run_tune(job) if job["kind"] == "tune" else run_test(job)


def run_all(jobs: list[dict], workers: int, data_dir: str | None) -> list[dict]:
    done, t0 = [], time.perf_counter()
    with mp.get_context("spawn").Pool(workers, initializer=init_worker, initargs=(data_dir,)) as pool:
        for i, r in enumerate(pool.imap_unordered(dispatch, jobs)):
            done.append(r)
            if (i + 1) % 20 == 0 or i + 1 == len(jobs):
                print(f"  {i + 1}/{len(jobs)} runs, {time.perf_counter() - t0:.0f} s", flush=True)
    return done


def example_jobs(datas, sds, epochs, seeds) -> list[dict]:
    jobs = []
    for data in datas:
        for sd in sds:
            for ep in epochs:
                for seed in seeds:
                    for m in ("finetune", "joint"):
                        flags = {**benchmark_flags(data, "noisy"), **TRAIN, "tasks": 2, "noise": [sd, 0.0]}
                        flags |= {"epochs": ep, "seed": seed, "method": [m]}
                        key = {"part": "example", "kind": "test", "data": data, "sd": sd, "epochs": ep}
                        jobs.append({**key, "seed": seed, "method": m, "flags": flags})
    return jobs


def stream_flags(data: str, epochs: int) -> dict:
    return {**benchmark_flags(data, "permuted"), **TRAIN, "tasks": 5, "epochs": epochs}


def tune_jobs(streams, methods, lams, seeds) -> list[dict]:
    jobs = []
    for data, ep in streams:
        for m in methods:
            for lam in lams:
                flags = {**stream_flags(data, ep), "method": [m], "seeds": list(seeds)}
                jobs.append({"part": "stream", "kind": "tune", "data": data, "epochs": ep, "method": m, "lam": lam,
                             "flags": flags})  # fmt: skip
    return jobs


def test_jobs(streams, specs, seeds) -> list[dict]:
    """Test runs of method specs: a name, or (name, λ)."""
    jobs = []
    for data, ep in streams:
        for spec in specs:
            m, lam = spec if isinstance(spec, tuple) else (spec, None)
            method = m if lam is None else f"{m}:lam={lam:g}"
            for seed in seeds:
                flags = {**stream_flags(data, ep), "method": [method], "seed": seed}
                jobs.append({"part": "stream", "kind": "test", "data": data, "epochs": ep, "method": m, "lam": lam,
                             "seed": seed, "flags": flags})  # fmt: skip
    return jobs


def chosen(results: list[dict]) -> dict:
    """(data, epochs, method) -> the λ of best mean validation ACC, by lifelong.tune.best."""
    from lifelong import tune

    points = collections.defaultdict(list)
    for r in results:
        if r["kind"] == "tune":
            points[(r["data"], r["epochs"], r["method"])].append({"value": r["lam"], "acc": r["val_acc"]})
    # tune.best breaks ties by the sweep's order: give it the values in increasing order.
    return {k: tune.best(sorted(v, key=lambda p: p["value"]))["value"] for k, v in points.items()}


def tune_then_test(streams, methods, lams, tune_seeds, test_seeds, workers, data_dir, extra=()) -> list[dict]:
    """Validation sweeps (and ``extra`` jobs alongside), then the chosen λ and the baselines on the test sets."""
    done = run_all(tune_jobs(streams, methods, lams, tune_seeds) + list(extra), workers, data_dir)
    best = chosen(done)
    specs = {s: ["finetune", "joint", "independent"] for s in streams}
    for (data, ep, m), lam in best.items():
        specs[(data, ep)].append((m, lam))
    tests = [j for s in streams for j in test_jobs([s], specs[s], test_seeds)]
    return done + run_all(tests, workers, data_dir)


# ---- summaries ----------------------------------------------------------------------------------------


def matrix(R, names, title) -> str:
    rows = [title, " " * 14 + "".join(f"{n:>9}" for n in names)]
    labels = ["init"] + [f"after {n}" for n in names]
    rows += [f"{label:<14}" + "".join(f"{v:9.1f}" for v in row) for label, row in zip(labels, R, strict=True)]
    return "\n".join(rows)


def sd(values) -> float:
    """The sample standard deviation, ignoring nan; nan for fewer than two values."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def summarize(results: list[dict]) -> str:
    out = []
    ex = collections.defaultdict(list)
    for r in results:
        if r["part"] == "example":
            ex[(r["data"], r["sd"], r["epochs"], r["method"])].append(r)
    if ex:
        out.append("EXAMPLE (2 tasks: noisy, then clean); mean over seeds, accuracies in %")
        out.append(
            f"{'data':>20} {'sd':>4} {'ep':>3} | after task 1: noisy clean | after task 2: noisy clean | "
            "drop (min) | joint: noisy clean"
        )
        for key in sorted({k[:3] for k in ex}):
            F = np.array([r["R"] for r in ex[key + ("finetune",)]])
            J = np.array([r["R"] for r in ex[key + ("joint",)]])
            f, j, drop = F.mean(0), J.mean(0), F[:, 1, 0] - F[:, 2, 0]
            out.append(
                f"{key[0]:>20} {key[1]:4.1f} {key[2]:3d} | {f[1, 0]:19.1f} {f[1, 1]:5.1f} | {f[2, 0]:19.1f} "
                f"{f[2, 1]:5.1f} | {drop.mean():4.1f} ({drop.min():4.1f}) | {j[2, 0]:12.1f} {j[2, 1]:5.1f}"
            )
    for data, ep in sorted({(r["data"], r["epochs"]) for r in results if r["part"] == "stream"}):
        rs = [r for r in results if r["part"] == "stream" and (r["data"], r["epochs"]) == (data, ep)]
        out.append(f"\nSTREAM: permuted {data}, 5 tasks, {ep} epochs/task")
        tuned = collections.defaultdict(list)
        for r in rs:
            if r["kind"] == "tune":
                tuned[r["method"]].append(r)
        if tuned:
            out.append("validation ACC / BWT (%) against λ (mean over the tuning seeds):")
        for m, pts in tuned.items():
            pts = sorted(pts, key=lambda p: p["lam"])
            out.append(f"  {m:>10}: " + " ".join(f"{p['lam']:g}:{p['val_acc']:.1f}/{p['val_bwt']:.0f}" for p in pts))
        tests = collections.defaultdict(dict)
        for r in rs:
            if r["kind"] == "test":
                tests[r["method"] if r.get("lam") is None else f"{r['method']}:lam={r['lam']:g}"][r["seed"]] = r
        if "finetune" not in tests or "joint" not in tests:
            continue
        seeds = sorted(tests["finetune"])
        out.append(f"test sets, seeds {','.join(map(str, seeds))}: ACC, BWT mean ± sd; gap closed per seed, mean (min)")
        out.append(f"  {'method':>22} {'ACC':>12} {'BWT':>12} {'gap':>11} | seed 0: ACC   BWT   gap | s/run")
        for name, by_seed in tests.items():
            acc = np.array([by_seed[s]["acc"] for s in seeds])
            bwt = np.array([np.nan if by_seed[s]["bwt"] is None else by_seed[s]["bwt"] for s in seeds])
            ft = np.array([tests["finetune"][s]["acc"] for s in seeds])
            jt = np.array([tests["joint"][s]["acc"] for s in seeds])
            gap = (acc - ft) / (jt - ft)
            b = "n/a" if np.isnan(bwt).all() else f"{np.nanmean(bwt):5.1f}±{sd(bwt):4.1f}"
            b0 = "  n/a" if np.isnan(bwt[0]) else f"{bwt[0]:5.1f}"
            secs = np.mean([by_seed[s]["seconds"] for s in seeds])
            out.append(
                f"  {name:>22} {acc.mean():6.1f}±{sd(acc):4.1f} {b:>12} {gap.mean():5.2f} ({gap.min():4.2f})"
                f" | {acc[0]:12.1f} {b0} {gap[0]:5.2f} | {secs:5.1f}"
            )
    return "\n".join(out)


# ---- the recommended main job, timed --------------------------------------------------------------


def main_job_runs(lams: dict, methods) -> list[tuple[str, dict]]:
    """The recommended main job's runs, in order: (label, run flags)."""
    example = {**benchmark_flags(DATA, "noisy"), **TRAIN, "tasks": 2, **EXAMPLE}
    stream = stream_flags(DATA, STREAM_EPOCHS)
    runs = [(f"example {m}", {**example, "method": [m]}) for m in ("finetune", "joint")]
    runs += [(m, {**stream, "method": [m]}) for m in ("finetune", "joint", "independent")]
    return runs + [(m, {**stream, "method": [f"{m}:lam={lams[m]:g}"]}) for m in methods]


def time_main_job(lams: dict, methods, threads: int, data_dir: str | None) -> None:
    """The recommended main job in one process as `lifelong run` runs it: store, importance plots, report."""
    import tempfile

    from lifelong.experiment import Experiment
    from lifelong.results import Store, write_report

    init_worker(data_dir, threads)
    _SUBSETS[DATA] = subset_dataset(DATA)  # made from the IDX files before the clock; a shipped file loads fast
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store, results = Store(Path(tmp) / "runs.db"), []
        for label, flags in main_job_runs(lams, methods):
            t0 = time.perf_counter()
            exp = Experiment(cfg_of(flags))
            _, result = exp.execute(*exp.runs[0], store, "timing")
            results.append(result)
            print(f"  {label:<22} ACC {100 * result.acc:5.1f}  {time.perf_counter() - t0:5.1f} s", flush=True)
        t0 = time.perf_counter()
        write_report(results[2:], Path(tmp) / "report")
        print(f"  {'report':<22} {'':>9}  {time.perf_counter() - t0:5.1f} s")
    print(f"main job total: {time.perf_counter() - t_all:.1f} s with {threads} threads")


# ---- stages ------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="folder of the four MNIST IDX .gz files")
    p.add_argument("--stage", choices=("sizes", "grid", "search", "final", "timing"), default="final")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the timing stage")
    p.add_argument("--methods", default="ewc,si,mas", help="regularisers of the final and timing stages")
    p.add_argument("--summarize", help="print the summary of a results file and stop")
    args = p.parse_args()
    if args.summarize:
        record = json.loads(Path(args.summarize).read_text())
        print(summarize(record["runs"] if isinstance(record, dict) else record))
        return
    methods = tuple(args.methods.split(","))
    if args.stage == "sizes":
        for n, m, side in ((2000, 1000, 14), (5000, 1000, 14), (10000, 2000, 14), (5000, 1000, 28)):
            print(f"mnist-{n}-{m}-{side}: {compressed_kb(mnist_subset(args.data_dir, n, m, side)):.0f} KB (npz)")
        return
    if args.stage == "timing":
        # λ from the final stage; methods it did not tune from the search stage (same data, grid and seeds)
        search = json.loads((RESULTS / "main_job_search.json").read_text())["runs"]
        lams = {m: lam for (data, ep, m), lam in chosen(search).items() if (data, ep) == (DATA, STREAM_EPOCHS)}
        lams |= json.loads((RESULTS / "main_job_final.json").read_text())["chosen"]
        time_main_job(lams, methods, args.threads, args.data_dir)
        return
    if args.stage == "grid":
        jobs = example_jobs(["digits"], [0.2, 0.3, 0.5, 0.8], [10, 30], [0, 1])
        jobs += example_jobs(
            ["mnist-5000-1000-14", "mnist-5000-1000-28", "mnist-10000-2000-14"],
            [0.4, 0.6, 0.8, 1.0],
            [5, 10, 20],
            [0, 1],
        )
        streams = [("digits", 10), ("digits", 20), ("mnist-2000-1000-14", 10), ("mnist-5000-1000-14", 5),
                   ("mnist-5000-1000-14", 10), ("mnist-10000-2000-14", 5), ("mnist-5000-1000-28", 5)]  # fmt: skip
        # One tuning seed; the baselines on the test set of seed 0 only (a first look, not a result).
        jobs = tune_jobs(streams, REGULARIZERS, DECADES, [0]) + test_jobs(streams, ["finetune", "joint"], [0]) + jobs
        done, name = run_all(jobs, args.workers, args.data_dir), "main_job_grid"
    elif args.stage == "search":
        streams = [("mnist-5000-1000-14", 5), ("mnist-10000-2000-14", 5)]
        data = ["mnist-5000-1000-14", "mnist-10000-2000-14", "mnist-5000-1000-28"]
        extra = example_jobs(data, [0.3, 0.4, 0.5, 0.6], [10, 20], EXAMPLE_SEEDS)
        done = tune_then_test(streams, REGULARIZERS, HALF_DECADES, TUNE_SEEDS, TEST_SEEDS, args.workers,
                              args.data_dir, extra)  # fmt: skip
        name = "main_job_search"
    else:  # final
        extra = example_jobs([DATA], [EXAMPLE["noise"][0]], [EXAMPLE["epochs"]], EXAMPLE_SEEDS)
        done = tune_then_test([(DATA, STREAM_EPOCHS)], methods, HALF_DECADES, TUNE_SEEDS, TEST_SEEDS, args.workers,
                              args.data_dir, extra)  # fmt: skip
        name = "main_job_final"
    RESULTS.mkdir(parents=True, exist_ok=True)
    best = {m: lam for (_, _, m), lam in chosen(done).items()} if args.stage == "final" else None
    for r in done:
        r.pop("flags", None)
    record = {"stage": args.stage, "chosen": best, "runs": done}
    (RESULTS / f"{name}.json").write_text(json.dumps(record, separators=(",", ":")))
    text = summarize(done)
    (RESULTS / f"{name}.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
