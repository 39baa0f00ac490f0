"""Reports: the Markdown tables hold the metrics of the R matrices (mean ± sd over seeds) and every figure is a PNG."""

import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.container import ErrorbarContainer

import lifelong
from lifelong import Result, metrics
from lifelong.results import plot_importance, report, write_report, write_sweep_report

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

    # Panels are titled in words, not with the model's attribute names.
    fig = report._importance_figure(importances, "EWC importance")
    titles = [ax.get_title().splitlines()[0] for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert titles == [
        "layer 1 weights (64 → 20)",
        "layer 1 bias (20)",
        "output layer weights (20 → 10)",
        "layer 1 weights: per input pixel (8×8),",
    ]
    assert not any("body." in ax.get_title() or "head." in ax.get_title() for ax in fig.axes)


def test_parameter_labels_of_the_mlp_and_of_other_models():
    model = lifelong.models.MLP(64, [50, 30], 10)  # body = Flatten, Linear, ReLU, Linear, ReLU; head = Linear
    labels = report.parameter_labels({name: p.shape for name, p in model.named_parameters()})
    assert labels == {
        "body.1.weight": "layer 1 weights (64 → 50)",
        "body.1.bias": "layer 1 bias (50)",
        "body.3.weight": "layer 2 weights (50 → 30)",
        "body.3.bias": "layer 2 bias (30)",
        "head.weight": "output layer weights (30 → 10)",
        "head.bias": "output layer bias (10)",
    }
    # Other models: a module keeps its name unless numbered, a convolution shows its kernel, a scalar says so.
    assert report.parameter_label("body.1.weight", (50, 64)) == "body.1 weights (64 → 50)"
    assert report.parameter_label("features.0.weight", (16, 3, 5, 5), layer=1) == "layer 1 weights (3 → 16, 5×5 kernel)"
    assert report.parameter_label("classifier.bias", torch.Size([7])) == "output layer bias (7)"
    assert report.parameter_label("log_temperature", ()) == "log_temperature (scalar)"
    assert report.parameter_label("norm.running_scale", (4, 2)) == "norm running_scale (4×2)"


# -- the ACC/BWT/FWT bar chart, read from its matplotlib artists ------------------------------------------


def bars_figure(results):
    (entries,) = report._group(results).values()
    return report._metric_bars_figure(entries)


def error_bars(ax) -> list:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def no_forgetting(seed: int) -> Result:
    """A run whose final row equals the diagonal: BWT exactly 0 (as for one model per task)."""
    result = hand_made("independent", seed)
    R = result.R.copy()
    R[3, :2] = [R[1, 0], R[2, 1]]
    return dataclasses.replace(result, R=R, views={"domain": R})


def test_metric_bars_single_seeds_have_no_error_bars_and_label_0_and_na():
    runs = [hand_made("finetune", 0), dataclasses.replace(hand_made("joint", 0), n_stages=1), no_forgetting(0)]
    assert metrics.bwt(runs[2].R) == 0.0
    fig = bars_figure(runs)
    acc, bwt, fwt = fig.axes

    assert not any(error_bars(ax) for ax in fig.axes)  # one seed: no sd, so no error bar (not even a cap)
    assert [p.get_width() for p in acc.patches] == pytest.approx([r.acc * 100 for r in runs])
    assert texts(acc) == [f"{r.acc * 100:.1f}" for r in runs]
    # A measured 0.0 is written, an undefined metric (joint's BWT and FWT) says n/a.
    assert texts(bwt) == [f"{runs[0].bwt * 100:.1f}".replace("-", "\N{MINUS SIGN}"), "n/a", "0.0"]
    assert texts(fwt)[1] == "n/a"
    # Shared scales: ACC on 0..100, BWT and FWT on one symmetric scale that holds every bar.
    assert acc.get_xlim() == (0, 100)
    lo, hi = bwt.get_xlim()
    assert fwt.get_xlim() == (lo, hi) and lo == -hi
    assert hi >= 100 * max(abs(runs[0].bwt), abs(runs[0].fwt), abs(runs[2].fwt))
    assert [t.get_text() for t in acc.get_yticklabels()] == ["finetune", "joint", "independent"]


def test_metric_bars_show_sd_over_two_seeds_and_stay_narrow_for_many_methods():
    runs = [hand_made("ewc", seed) for seed in (0, 1)]
    acc = bars_figure(runs).axes[0]
    values = np.array([r.acc for r in runs]) * 100
    mean, sd = values.mean(), values.std(ddof=1)
    (container,) = error_bars(acc)
    (segment,) = container.lines[2][0].get_segments()
    assert (segment[0][0], segment[1][0]) == pytest.approx((mean - sd, mean + sd))
    assert texts(acc) == [f"{mean:.1f} ± {sd:.1f}"]

    many = [hand_made(f"method{k}", 0) for k in range(20)]
    assert bars_figure(many).get_size_inches()[0] <= 12  # the old chart grew 3.6 inches per method


def test_metric_bars_plot_task_and_class_il_side_by_side():
    runs = [hand_made(method, seed, scenario="task") for method in ("finetune", "ewc") for seed in (0, 1)]
    fig = bars_figure(runs)
    acc, bwt, fwt = fig.axes

    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["task-IL", "class-IL"]
    expected = [
        np.mean([metrics.acc(r.views[view]) for r in runs if r.method == method]) * 100
        for view in ("task", "class")
        for method in ("finetune", "ewc")
    ]
    assert [p.get_width() for p in acc.patches] == pytest.approx(expected)
    assert len(bwt.patches) == 4 and len(error_bars(bwt)) == 2  # per view: one bar per method, sd over 2 seeds
    assert len(fwt.patches) == 2  # FWT: the stream's own scenario only, as in the table
    assert fwt.get_xlabel().startswith("FWT (%), task-IL")


def sweep_axes(points, chance=None):
    """The ACC and BWT panels of a sweep's figure (points sorted by value, as write_sweep_report sorts them)."""
    best = max(range(len(points)), key=lambda i: points[i]["acc"])
    fig = report._sweep_figure(points, "lam", best, True, report._sweep_notes(points, chance), chance)
    return fig.axes


def test_sweep_report_says_when_the_curve_is_flat_within_noise_and_near_chance(tmp_path):
    accs = (0.102, 0.105, 0.109, 0.104)  # a 0.7-point spread of near-chance accuracies
    bwts = (-0.40, -0.35, -0.25, -0.10)  # BWT does move with lam
    points = [
        {"value": v, "acc": a, "bwt": b, "acc_sd": 0.004} for v, a, b in zip((0.1, 1, 10, 100), accs, bwts, strict=True)
    ]
    text = write_sweep_report(points, tmp_path, "lam", chance=0.1).read_text()
    assert "- The validation ACC curve is flat within noise: 0.7 points across values (less than 2 points)." in text
    assert "near chance (10.0 %) for every value (at most 10.9 %)" in text
    assert "validation BWT curve" not in text  # a 30-point spread is a trend

    acc, bwt = sweep_axes(points, chance=0.1)
    assert "flat within noise: 0.7 points" in acc.get_title(loc="left").replace("\n", " ")
    assert "near chance" in acc.get_title(loc="left").replace("\n", " ")
    assert bwt.get_title(loc="left") == ""
    lo, hi = acc.get_ylim()
    assert hi - lo >= 10  # the 0.7 points are not zoomed into a trend
    assert any(list(line.get_ydata()) == [10, 10] for line in acc.lines)  # the chance line


def test_sweep_flatness_counts_the_seeds_sd_and_a_clear_trend_gets_no_note(tmp_path):
    noisy = [{"value": v, "acc": a, "bwt": 0.0, "acc_sd": 0.04} for v, a in ((1, 0.60), (10, 0.63))]
    (note,) = report._sweep_notes(noisy)["acc"]
    assert note.endswith("flat within noise: 3.0 points across values (less than the seeds' sd, up to 4.0 points)")

    trend = [{"value": v, "acc": a, "bwt": b} for v, a, b in ((0.1, 0.60, -0.30), (1, 0.72, -0.12), (10, 0.64, -0.03))]
    text = write_sweep_report(trend, tmp_path, "lam", chance=0.1).read_text()
    assert "Read with care" not in text and "flat" not in text and "chance" not in text
    acc, bwt = sweep_axes(trend, chance=0.1)
    assert not error_bars(acc) and not error_bars(bwt)  # one seed per value: no error bars
    assert acc.get_title(loc="left") == ""
    assert not any(list(line.get_ydata()) == [10, 10] for line in acc.lines)  # chance lies far below the data


def test_sweep_error_bars_only_where_there_were_seeds_and_diverged_values_are_not_chosen(tmp_path):
    points = [
        {"value": 1.0, "acc": float("nan"), "bwt": float("nan")},
        {"value": 2.0, "acc": 0.5, "bwt": -0.2, "acc_sd": 0.01, "bwt_sd": 0.02},
        {"value": 3.0, "acc": 0.4, "bwt": -0.1},
    ]
    text = write_sweep_report(points, tmp_path, "lr").read_text()
    assert "**lr = 2**" in text
    acc, _ = sweep_axes(points[1:])
    (container,) = error_bars(acc)
    (segment,) = container.lines[2][0].get_segments()
    assert [segment[0][1], segment[1][1]] == pytest.approx([49, 51])


def test_importing_the_results_package_does_not_import_matplotlib():
    code = "import sys, lifelong.results; assert 'matplotlib' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# -- what the methods keep and measured (Result.facts) ------------------------------------------------------


def with_facts(method: str, seed: int, facts: dict) -> Result:
    return dataclasses.replace(hand_made(method, seed), facts=facts)


def memory(samples: int, nbytes: int, policy: str = "reservoir", capacity: int = 1000) -> dict:
    return {"policy": policy, "capacity": capacity, "samples": samples, "bytes": nbytes, "per_task": {"0": samples}}


def section(report_text: str, heading: str) -> str:
    """The text of the ``### heading`` section, up to the next heading."""
    start = report_text.index(f"### {heading}")
    end = re.search(r"^##", report_text[start + 3 :], flags=re.MULTILINE)
    return report_text[start : start + 3 + end.start()] if end else report_text[start:]


def test_memory_table_shows_what_each_method_keeps_and_its_bytes():
    results = [
        with_facts("replay", 0, {"memory": memory(1000, 784 * 1024)}),
        with_facts("replay", 1, {"memory": memory(990, 784 * 1024)}),  # mean over seeds: 995 samples
        with_facts("gem", 0, {"memory": memory(768, 3 * 2**20, "ring", 768), "projection_rate": [0.0, 0.5, 0.25]}),
        with_facts("lwf", 0, {"stored_models": 1, "bytes": 1536}),
        with_facts("dgr", 0, {"generator": {"parameters": 123456, "bytes": 500 * 1024}}),
        hand_made("finetune", 0),  # keeps nothing: no row
    ]
    (entries,) = report._group(results).values()  # the table alone: the report's wiring is tested below
    table = "\n".join(report._memory_section(entries))
    assert header(table) == ["method", "what is kept", "policy", "capacity", "samples stored", "bytes"]
    examples = "examples (episodic memory)"
    assert table_row(table, "replay") == ["replay", examples, "reservoir", "1000", "995", "784.0 KB"]
    assert table_row(table, "gem") == ["gem", examples, "ring", "768", "768", "3.0 MB"]
    assert table_row(table, "lwf") == ["lwf", "1 model copy", "–", "–", "–", "1.5 KB"]
    assert table_row(table, "dgr") == ["dgr", "a generator (123,456 parameters)", "–", "–", "–", "500.0 KB"]
    assert "| finetune |" not in table


def test_projection_table_gives_the_percentage_of_projected_steps_per_task(tmp_path):
    results = [
        with_facts("gem", 0, {"projection_rate": [0.0, 0.5, 0.25]}),
        with_facts("gem", 1, {"projection_rate": [0.0, 0.3, 0.35]}),
        with_facts("agem", 0, {"projection_rate": [0.0, 0.125, 1.0]}),
        with_facts("replay", 0, {"memory": memory(10, 100)}),  # no projection: no row
    ]
    table = section(write_report(results, tmp_path).read_text(), "Gradient projection")
    assert "whose gradient was projected" in table
    assert header(table) == ["method", "perm1", "perm2", "perm3"]
    # mean ± sd (ddof=1) over the seeds: 50 and 30 -> 40 ± 14.1; 25 and 35 -> 30 ± 7.1
    assert table_row(table, "gem") == ["gem", "0.0 ± 0.0", "40.0 ± 14.1", "30.0 ± 7.1"]
    assert table_row(table, "agem") == ["agem", "0.0", "12.5", "100.0"]
    assert "| replay |" not in table


def test_generated_samples_grid_has_one_row_per_task_and_is_linked(tmp_path):
    shape, tasks, k = [1, 8, 8], 3, 4
    after_task = [[[80 * i] * 64 for _ in range(k)] for i in range(tasks)]  # row i: flat images of grey 80·i
    after_task[0][1] = list(range(64))  # one image that is not flat: it must be drawn row-major
    facts = {"generated": {"input_shape": shape, "after_task": after_task}}
    text = write_report([with_facts("dgr", 0, facts)], tmp_path).read_text()

    (link,) = re.findall(r"!\[Samples generated by dgr after each task\]\(([^)]+)\)", text)
    png = tmp_path / link
    assert is_png(png)
    width, height = np.frombuffer(png.read_bytes()[16:24], dtype=">u4")
    size = (1.8 + 0.8 * k, report.GRID_TITLE_INCHES + report.GRID_ROW_INCHES * tasks)  # inches, at 110 dpi
    assert (width, height) == (round(size[0] * 110), round(size[1] * 110))

    figure = report._generated_figure(facts["generated"], ["after perm1", "after perm2", "after perm3"], "t")
    assert [ax.get_ylabel() for ax in figure.axes] == ["after perm1", "after perm2", "after perm3"]
    strips = [np.asarray(ax.images[0].get_array()) for ax in figure.axes]
    assert all(s.shape == (8, k * 8 + (k - 1) * 2) for s in strips)  # k images of 8 x 8, 2-pixel gaps
    for i, strip in enumerate(strips):
        assert (strip[:, 20:28] == 80 * i).all() and (strip[:, 8:10] == 128).all()  # image 3 of the row; a gap
    np.testing.assert_array_equal(strips[0][:, 10:18], np.arange(64).reshape(8, 8))


def test_results_without_facts_have_no_memory_projection_or_generated_sections(tmp_path):
    text = write_report([hand_made("finetune", 0), hand_made("ewc", 0)], tmp_path).read_text()
    assert "### Memory" not in text and "### Gradient projection" not in text and "generated" not in text
    assert not list(tmp_path.glob("*generated*.png"))
