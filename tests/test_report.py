"""Reports: the Markdown tables hold the metrics of the R matrices (mean ± sd over seeds) and every figure is a PNG."""

import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import lifelong
from lifelong import Result, metrics
from lifelong.results import plot_importance, write_report, write_sweep_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def hand_made(method: str, seed: int, scenario: str = "domain", method_config: dict | None = None) -> Result:
    """A 3-task Result with a random (but seeded) R matrix; task-incremental ones also get a class-IL view."""
    rng = np.random.default_rng([seed, len(method)])
    R = rng.uniform(0.05, 1.0, size=(4, 3))
    views = {scenario: R} if scenario == "domain" else {"task": R, "class": R * rng.uniform(0.3, 1.0, size=R.shape)}
    return Result(
        method=method,
        benchmark="permuted-synthetic",
        scenario=scenario,
        task_names=["perm1", "perm2", "perm3"],
        R=R,
        views=views,
        config={"train": {"seed": seed, "lr": 0.1}, "method": method_config or {}},
    )


@pytest.fixture(scope="module")
def fitted() -> list[Result]:
    """finetune on a 2-task stream with two seeds, with per-epoch curves."""
    out = []
    for seed in (0, 1):
        stream = lifelong.benchmarks.permuted("synthetic", n_tasks=2, seed=0)
        model = lifelong.models.MLP(stream.input_size, [20], stream.n_classes)
        out.append(lifelong.fit(stream, model, iterations=20, seed=seed, eval_every_epoch=True))
    return out


def table_row(report: str, label: str) -> list[str]:
    """The cells of the first table row that starts with ``label``."""
    line = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def header(report: str, first_cell: str = "method") -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def mean_sd(cell: str) -> tuple[float, float]:
    mean, sd = re.fullmatch(r"(-?[\d.]+) ± ([\d.]+)", cell).groups()
    return float(mean), float(sd)


def test_report_sections_and_figures(tmp_path, fitted):
    path = write_report(fitted, tmp_path / "report", title="Unit test report")
    assert path == tmp_path / "report" / "report.md"
    report = path.read_text()

    assert report.startswith("# Unit test report")
    assert "## permuted-synthetic, domain-incremental, 2 tasks" in report
    assert "### finetune: accuracy matrix R" in report
    assert all(f"- {metrics.DEFINITIONS[k]}" in report for k in ("acc", "bwt", "fwt"))
    assert "Forgetting: " + metrics.DEFINITIONS["forgetting"] in report
    assert header(report) == ["method", "ACC (%)", "BWT (%)", "FWT (%)", "Forgetting (%)", "seeds"]
    assert table_row(report, "finetune")[-1] == "2 (0, 1)"
    assert [row[0] for row in (table_row(report, "init"), table_row(report, "after perm1"))] == ["init", "after perm1"]

    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert any(name.endswith("-epochs.png") for name in images)  # the stability-gap figure (curves exist)
    assert any(name.endswith("-R.png") for name in images) and any(name.endswith("-tasks.png") for name in images)
    assert all(is_png(path.parent / name) for name in images)


def test_table_holds_mean_and_sd_over_seeds_of_the_metrics(tmp_path, fitted):
    results = fitted + [hand_made("ewc", seed) for seed in (0, 1)]
    report = write_report(results, tmp_path).read_text()

    for method, runs in (("finetune", fitted), ("ewc", results[2:])):
        cells = table_row(report, method)
        for column, fn in ((1, metrics.acc), (2, metrics.bwt), (3, metrics.fwt), (4, metrics.forgetting)):
            values = np.array([fn(r.R) for r in runs]) * 100
            assert mean_sd(cells[column]) == pytest.approx((values.mean(), values.std(ddof=1)), abs=0.051)

    # The R matrix table is the mean over seeds, in %.
    mean_R = np.mean([r.R for r in fitted], axis=0) * 100
    assert [float(x) for x in table_row(report, "after perm2")[1:]] == pytest.approx(mean_R[2], abs=0.051)


def test_a_single_seed_has_no_sd_and_views_get_their_own_columns(tmp_path):
    result = hand_made("finetune", seed=3, scenario="task")
    report = write_report([result], tmp_path).read_text()

    assert header(report)[5:9] == ["ACC (task-IL) (%)", "BWT (task-IL) (%)", "ACC (class-IL) (%)", "BWT (class-IL) (%)"]
    cells = table_row(report, "finetune")
    assert cells[-1] == "1 (3)" and "±" not in cells[1]
    assert float(cells[1]) == pytest.approx(metrics.acc(result.R) * 100, abs=0.051)
    assert float(cells[7]) == pytest.approx(metrics.acc(result.views["class"]) * 100, abs=0.051)
    assert float(cells[8]) == pytest.approx(metrics.bwt(result.views["class"]) * 100, abs=0.051)


def test_settings_of_one_method_are_not_averaged_together(tmp_path):
    results = [hand_made("ewc", seed, method_config={"lambda": lam}) for lam in (1, 100) for seed in (0, 1)]
    report = write_report(results, tmp_path).read_text()
    assert table_row(report, "ewc (lambda=1)")[-1] == "2 (0, 1)"
    assert table_row(report, "ewc (lambda=100)")[-1] == "2 (0, 1)"


def test_joint_training_has_acc_but_no_bwt_fwt_or_forgetting(tmp_path):
    joint = dataclasses.replace(hand_made("joint", seed=0), n_stages=1)
    report = write_report([joint, hand_made("finetune", seed=0)], tmp_path).read_text()
    cells = table_row(report, "joint")
    assert float(cells[1]) == pytest.approx(joint.acc * 100, abs=0.051)
    assert cells[2:5] == ["–", "–", "–"]
    assert "not defined for a method that learns all tasks in one stage" in report
    assert "–" not in table_row(report, "finetune")


def test_sweep_report_marks_the_best_validation_accuracy(tmp_path):
    points = [
        {"value": 1000.0, "acc": 0.30, "bwt": 0.00},
        {"value": 1.0, "acc": 0.50, "bwt": -0.30, "acc_sd": 0.02, "bwt_sd": 0.01},
        {"value": 10.0, "acc": 0.70, "bwt": -0.10, "acc_sd": 0.02, "bwt_sd": 0.01},
        {"value": 100.0, "acc": 0.60, "bwt": -0.05},
    ]
    path = write_sweep_report(points, tmp_path, param="lambda")
    text = path.read_text()

    chosen = [line for line in text.splitlines() if line.startswith("|") and "**chosen**" in line]
    assert len(chosen) == 1 and chosen[0].startswith("| 10 | 70.0 ± 2.0 | -10.0 ± 1.0 |")
    assert "**lambda = 10**" in text
    assert [line.split("|")[1].strip() for line in text.splitlines() if re.match(r"\| \d", line)] == [
        "1",
        "10",
        "100",
        "1000",
    ]
    assert is_png(tmp_path / "sweep-lambda.png")


def test_sweep_ties_go_to_the_first_value_tried_and_run_ids_are_listed(tmp_path):
    points = [{"value": v, "acc": 0.5, "bwt": 0.0, "run_ids": [i]} for i, v in enumerate((0.1, 0.01, 1.0), start=1)]
    text = write_sweep_report(points, tmp_path, param="lr").read_text()
    chosen = [line for line in text.splitlines() if line.startswith("|") and "**chosen**" in line]
    assert len(chosen) == 1 and chosen[0].startswith("| 0.1 |") and chosen[0].endswith("| 1 |")


def test_importance_plot_for_an_8x8_input_and_a_non_square_one(tmp_path):
    importances = {
        "body.1.weight": torch.rand(20, 64) ** 4,
        "body.1.bias": torch.rand(20),
        "head.weight": torch.zeros(10, 20),
    }
    assert is_png(plot_importance(importances, tmp_path / "importance.png", "EWC importance"))
    assert is_png(plot_importance({"body.1.weight": torch.rand(5, 10)}, tmp_path / "deep" / "other.png", "SI"))


def test_importing_the_results_package_does_not_import_matplotlib():
    code = "import sys, lifelong.results; assert 'matplotlib' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
