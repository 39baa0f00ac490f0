"""`lifelong compare`: its statistics against hand computations (closed forms of Student's t for 2 and 4
degrees of freedom, so that no number is checked against the code that made it), grouping by several
settings, the CSV and Markdown it writes, the run selection, and the command end to end on real runs."""

import csv
import math
import re

import numpy as np
import pytest

from lifelong import LifelongError, Result
from lifelong.cli import main
from lifelong.results import Store, compare, stats
from lifelong.results.select import select

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T_975_DF2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))  # solves 1 − t/√(2 + t²) = 0.05: the df = 2 quantile


def p_df2(t: float) -> float:
    """Two-sided p of Student's t with 2 df, from its closed-form CDF F(t) = 1/2 + t / (2√(2 + t²))."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def p_df4(t: float) -> float:
    """Two-sided p with 4 df: F(t) = 1/2 + (3/8) u (1 − t² / (12 (1 + t²/4))), u = t / √(1 + t²/4)."""
    u = abs(t) / math.sqrt(1 + t * t / 4)
    return 1 - 0.75 * u * (1 - t * t / (12 * (1 + t * t / 4)))


def sample_sd(xs) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def two_task_result(method: str, acc: float, bwt: float = -0.1, fwt: float = 0.02) -> Result:
    """A 2-task run whose ACC, BWT and FWT are the numbers given: R[2,0] − R[1,0] = bwt, R[1,1] − R[0,1]
    = fwt, (R[2,0] + R[2,1]) / 2 = acc."""
    R = np.array([[0.1, 0.1], [0.9, 0.1 + fwt], [0.9 + bwt, 2 * acc - 0.9 - bwt]])
    return Result(method, "split-synthetic", "domain", ["a", "b"], R, {"domain": R})


def record(store: Store, method: str, seed: int, acc: float, **settings) -> int:
    config = {"method": method, "method_spec": method, "lr": 0.1, "seed": seed, **settings}
    run_id = store.start(config, seed, group="g1")
    store.finish(run_id, two_task_result(method, acc))
    return run_id


A = [0.80, 0.84, 0.86]  # ACC of method "a" over seeds 0, 1, 2
B = [0.78, 0.79, 0.83]  # method "b", the same seeds
C = [0.50, 0.52, 0.51]  # method "c", seeds 3, 4, 5 (Welch against the others)


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "r.db")
    for seed, (a, b) in enumerate(zip(A, B, strict=True)):
        record(store, "a", seed, a)
        record(store, "b", seed, b)
    for seed, c in zip((3, 4, 5), C, strict=True):
        record(store, "c", seed, c)
    return store


def comparison(store: Store, **kwargs) -> compare.Comparison:
    return compare.compare(compare.load(store, select(store)), **kwargs)


def group(c: compare.Comparison, label: str) -> compare.Group:
    return next(g for g in c.groups if c.label(g) == label)


# -- the statistics, against hand computations ------------------------------------------------------------


def test_mean_sd_and_the_t_interval_of_three_seeds(store):
    c = comparison(store)
    s = c.summary(group(c, "a"), "acc")
    mean, sd = sum(A) / 3, sample_sd(A)
    half = T_975_DF2 * sd / math.sqrt(3)
    assert (s.n, s.mean, s.sd) == (3, pytest.approx(mean, abs=1e-12), pytest.approx(sd, abs=1e-12))
    assert (s.low, s.high) == (pytest.approx(mean - half, abs=1e-12), pytest.approx(mean + half, abs=1e-12))
    assert c.summary(group(c, "a"), "bwt").mean == pytest.approx(-0.1) and c.summary(group(c, "a"), "bwt").sd < 1e-12
    one = stats.describe([0.7])
    assert one.n == 1 and one.mean == 0.7 and all(math.isnan(x) for x in (one.sd, one.low, one.high))


def test_the_same_seeds_are_paired_and_other_seeds_get_welchs_test(store):
    c = comparison(store)
    assert [c.label(g) for g in c.groups] == ["a", "b", "c"]  # ranked by mean ACC, best first
    pairs = {(c.label(c.groups[p.a]), c.label(c.groups[p.b])): p for p in c.pairs}

    d = [x - y for x, y in zip(A, B, strict=True)]  # a and b ran seeds 0, 1, 2: paired on the differences
    t = (sum(d) / 3) / (sample_sd(d) / math.sqrt(3))
    ab = pairs["a", "b"].test
    assert ab.kind == "paired" and ab.df == 2 and ab.t == pytest.approx(t, rel=1e-12)
    assert ab.p == pytest.approx(p_df2(t), rel=1e-9)

    # b (seeds 0-2) against c (seeds 3-5): Welch. Equal sample variances and n = 3 make df exactly 4.
    b, c3 = [0.78, 0.80, 0.82], [0.50, 0.52, 0.54]
    w = stats.welch(b, c3)
    t = (sum(b) / 3 - sum(c3) / 3) / math.sqrt(sample_sd(b) ** 2 / 3 + sample_sd(c3) ** 2 / 3)
    assert w.kind == "welch" and w.df == pytest.approx(4) and w.t == pytest.approx(t, rel=1e-12)
    assert w.p == pytest.approx(p_df4(t), rel=1e-9)
    bc = pairs["b", "c"].test
    assert bc.kind == "welch" and bc.diff == pytest.approx(sum(B) / 3 - sum(C) / 3)


def test_welch_with_unequal_variances_matches_scipys_own_test():
    from scipy import stats as scipy_stats

    a, b = [0.61, 0.70, 0.66, 0.90], [0.50, 0.52, 0.51]
    va, vb = sample_sd(a) ** 2 / 4, sample_sd(b) ** 2 / 3
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)  # Welch–Satterthwaite, by hand
    w = stats.welch(a, b)
    reference = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert w.df == pytest.approx(df, rel=1e-12)
    assert (w.t, w.p) == (pytest.approx(reference.statistic, rel=1e-12), pytest.approx(reference.pvalue, rel=1e-9))


def test_holm_adjusts_by_rank_and_keeps_the_order_monotone():
    # sorted 0.01, 0.03, 0.04 -> 3 × 0.01, 2 × 0.03, max(0.06, 1 × 0.04)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = stats.holm([0.02, math.nan, 0.5])  # a pair with no test does not count in m
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.5)
    assert stats.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_holm_over_all_pairs_decides_what_the_ranking_calls_better(store):
    c = comparison(store)
    raw = [p.test.p for p in c.pairs]
    assert [p.p_holm for p in c.pairs] == pytest.approx(stats.holm(raw))
    header, rows = compare.ranking_rows(c)
    beats = {row[1]: row[-1] for row in rows}
    assert beats["a"] == "c" and beats["b"] == "c" and beats["c"] == "–"  # a vs b: p ≈ 0.2, not significant
    assert [p.p_holm < 0.05 for p in c.pairs] == [False, True, True]


def test_no_test_without_spread_or_seeds():
    same = stats.paired([0.8, 0.9, 0.7], [0.7, 0.8, 0.6])  # every seed 0.1 apart: the differences have no sd
    assert math.isnan(same.p) and "no spread" in same.why and same.diff == pytest.approx(0.1)
    assert "2 or more" in stats.welch([0.8], [0.7, 0.6]).why


def test_a_metric_a_run_does_not_define_is_left_out_of_its_sample(tmp_path):
    store = Store(tmp_path / "r.db")
    for seed, acc in enumerate([0.9, 0.92]):
        run_id = store.start({"method": "joint", "seed": seed}, seed)
        joint = two_task_result("joint", acc)
        joint.n_stages = 1  # learned in one stage: no BWT, FWT or forgetting
        store.finish(run_id, joint)
    record(store, "a", 0, 0.8)
    c = comparison(store, metric="bwt")
    assert [c.label(g) for g in c.groups] == ["a", "joint"]  # joint defines no BWT: ranked last
    assert c.summary(group(c, "joint"), "bwt").n == 0 and c.summary(group(c, "joint"), "acc").n == 2
    assert compare.metric_rows(c, "bwt")[1][1] == ["joint", "0", "–", "n/a", "–"]
    assert "needs 2 or more seeds" in c.pairs[0].test.why


# -- grouping, notes and files ------------------------------------------------------------------------------


def test_grouping_by_two_settings(tmp_path):
    store = Store(tmp_path / "r.db")
    accs = {("a", 0.1): [0.9, 0.8], ("a", 0.05): [0.7, 0.6], ("b", 0.1): [0.5, 0.4]}
    for (method, lr), values in accs.items():
        for seed, acc in enumerate(values):
            record(store, method, seed, acc, lr=lr)
    c = comparison(store, by=["method", "lr"])
    assert [g.values for g in c.groups] == [("a", "0.1"), ("a", "0.05"), ("b", "0.1")]
    assert [c.label(g) for g in c.groups][1] == "method=a, lr=0.05"
    for g in c.groups:
        assert c.summary(g, "acc").mean == pytest.approx(sum(accs[g.values[0], float(g.values[1])]) / 2)
    assert c.notes == []
    header, rows = compare.metric_rows(c, "acc")
    assert header[:2] == ["method", "lr"] and rows[1][:4] == ["a", "0.05", "2", "0,1"]

    by_method = comparison(store, by=["method"])  # "a" now mixes two learning rates: said, with the fix
    assert len(by_method.notes) == 1
    assert "a mixes runs that differ in lr (0.1, 0.05)" in by_method.notes[0] and "method,lr" in by_method.notes[0]


def test_repeated_seeds_are_noted_and_not_paired(tmp_path):
    store = Store(tmp_path / "r.db")
    for seed, acc in [(0, 0.8), (0, 0.82), (1, 0.7)]:
        record(store, "a", seed, acc)
    for seed, acc in [(0, 0.6), (1, 0.65), (2, 0.55)]:
        record(store, "b", seed, acc)
    c = comparison(store)
    assert c.pairs[0].test.kind == "welch"
    assert any("seed 0 more than once" in n for n in c.notes)


def test_csv_and_markdown_hold_the_numbers(store, tmp_path):
    c = comparison(store)
    path = compare.write(c, tmp_path / "cmp", explicit=True)
    out = path.parent
    assert sorted(p.name for p in out.iterdir()) == sorted(compare.FILES)
    assert (out / "compare.png").read_bytes()[:8] == PNG_MAGIC

    rows = list(csv.DictReader((out / "compare.csv").open()))
    acc_a = next(r for r in rows if r["method"] == "a" and r["metric"] == "acc")
    half = T_975_DF2 * sample_sd(A) / math.sqrt(3)
    expected = [sum(A) / 3, sample_sd(A), sum(A) / 3 - half, sum(A) / 3 + half]
    got = [float(acc_a[k]) for k in ("mean_pct", "sd_pct", "ci95_low_pct", "ci95_high_pct")]
    assert got == pytest.approx([x * 100 for x in expected], rel=1e-9)
    assert acc_a["rank"] == "1" and acc_a["n"] == "3" and acc_a["seeds"] == "0 1 2" and acc_a["name"] == "ACC"
    every = {"acc", "bwt", "fwt", "forgetting", "avg_inc_acc", "bwt_gem_code", "fwt_gem_code"}
    assert {r["metric"] for r in rows} == every

    tests = list(csv.DictReader((out / "tests.csv").open()))
    ab = next(t for t in tests if (t["a"], t["b"]) == ("a", "b"))
    d = [x - y for x, y in zip(A, B, strict=True)]
    t = (sum(d) / 3) / (sample_sd(d) / math.sqrt(3))
    assert ab["test"] == "paired" and float(ab["p"]) == pytest.approx(p_df2(t), rel=1e-9)
    assert float(ab["p_holm"]) == pytest.approx(c.pairs[0].p_holm) and ab["significant"] == "false"

    md = path.read_text()
    assert "Student's t with n − 1 degrees of freedom" in md and "Welch 1947" in md and "Holm 1979" in md
    assert "**ACC = mean_j R[T,j] (final average accuracy)**" in md and "**Forgetting: F = mean_{j<T}" in md
    assert f"| 1 | a | 3 | {sum(A) / 3 * 100:.2f} ± {sample_sd(A) * 100:.2f} |" in md
    assert "![mean and 95 % CI per group](compare.png)" in md


def test_a_comparison_never_replaces_files(store, tmp_path):
    c = comparison(store)
    first = compare.write(c, tmp_path / "cmp", explicit=True)
    before = first.read_bytes()
    with pytest.raises(LifelongError, match="already holds"):
        compare.write(c, tmp_path / "cmp", explicit=True)
    second = compare.write(c, tmp_path / "cmp", explicit=False)  # a default folder: the next free name
    assert second.parent.name == "cmp-2" and first.read_bytes() == before


def test_selection_ids_ranges_filters_and_unfinished_runs(store):
    running = store.start({"method": "a", "seed": 9}, 9, group="g1")  # this process is alive: 'running'
    assert [r["id"] for r in select(store, ["2..4"]).rows] == [2, 3, 4]
    assert [r["id"] for r in select(store, where=["method=c"]).rows] == [7, 8, 9]
    assert [r["id"] for r in select(store, where=["lr=1e-1", "seed=1"]).rows] == [3, 4]
    assert select(store, group="latest").unfinished == [running]
    with pytest.raises(LifelongError, match=f"run {running} is running"):
        select(store, [str(running)])
    with pytest.raises(LifelongError, match="not key=value"):
        select(store, where=["method"])


# -- the command ------------------------------------------------------------------------------------------

RUN = "run --benchmark split-synthetic --tasks 3 --iterations 5 --hidden 16 --seeds 0,1,2 --report no --quiet".split()


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    """Nine real runs: finetune and ewc at lr 0.1, finetune at lr 0.05, seeds 0-2 each."""
    db = str(tmp_path_factory.mktemp("runs") / "runs.db")
    assert main([*RUN, "--method", "finetune,ewc", "--store", db]) == 0
    assert main([*RUN, "--method", "finetune", "--lr", "0.05", "--store", db]) == 0
    return db


def table(out: str, title_start: str) -> dict[str, list[str]]:
    """The rows (first cell -> cells) of the text table under the line that starts with ``title_start``."""
    block = out.split("\n" + title_start, 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return {row.split()[0]: re.split(r"\s{2,}", row.strip()) for row in block}


def test_compare_command_end_to_end(real_store, tmp_path, capsys):
    capsys.readouterr()
    out_dir = tmp_path / "cmp"
    assert main(["compare", "--store", real_store, "--where", "lr=0.1", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    store = Store(real_store, create=False)
    acc = {
        m: [store.result(r["id"]).acc for r in store.runs() if r["method"] == m and r["config"]["lr"] == 0.1]
        for m in ("finetune", "ewc")
    }
    rows = table(out, "ACC = mean_j R[T,j]")
    for method, values in acc.items():
        mean, sd = sum(values) / 3, sample_sd(values)
        half = T_975_DF2 * sd / math.sqrt(3)
        assert rows[method][1:] == [
            "3",
            "0,1,2",
            f"{mean * 100:.2f} ± {sd * 100:.2f}",
            f"[{(mean - half) * 100:.2f}, {(mean + half) * 100:.2f}]",
        ]
    first, second = sorted(acc, key=lambda m: -sum(acc[m]))  # the ranking's order
    d = [x - y for x, y in zip(acc[first], acc[second], strict=True)]
    t = (sum(d) / 3) / (sample_sd(d) / math.sqrt(3))
    pair = re.split(r"\s{2,}", next(line for line in out.splitlines() if line.startswith(f"{first} vs {second}")))
    assert pair[1:4] == ["paired", "3,3", f"{sum(d) / 3 * 100:+.2f}"]
    assert pair[4:7] == [f"{t:.3f}", "2", f"{p_df2(t):.3g}"]
    assert "runs of split-synthetic, task-IL, 3 tasks" in out and "ACC class-IL" in out
    assert (out_dir / "compare.md").exists() and f"comparison: {out_dir / 'compare.md'}" in out

    assert main(["compare", "--store", real_store, "--by", "method,lr", "--out", str(tmp_path / "two")]) == 0
    ranking = table(capsys.readouterr().out, "ranking by ACC")
    assert sorted((r[1], r[2], r[3]) for r in ranking.values()) == [
        ("ewc", "0.1", "3"),
        ("finetune", "0.05", "3"),
        ("finetune", "0.1", "3"),
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--by", "methd"], "--by: no run selected has a setting 'methd'"),
        (["--metric", "accuracy"], "--metric 'accuracy' is not a metric of these runs"),
        (["--alpha", "2"], "--alpha must lie between 0 and 1"),
        (["--where", "method=lwf"], "no finished runs in the runs selected"),
        (["4..2"], "is not a range of runs"),
    ],
)
def test_bad_input_is_one_line(real_store, capsys, args, message):
    assert main(["compare", "--store", real_store, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
