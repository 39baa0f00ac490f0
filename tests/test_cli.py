"""The command line end to end: runs, config files, the store, reports, and every kind of bad input."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lifelong import Result, benchmarks
from lifelong.cli import main
from lifelong.results import Store

QUICK = "--benchmark permuted-synthetic --tasks 2 --iterations 10 --report no --method finetune".split()


def cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_r_and_summary_and_records_the_run(tmp_path, capsys):
    db = tmp_path / "runs.db"
    code, out, err = cli(["run", *QUICK, "--method", "finetune", "--store", str(db)], capsys)
    assert code == 0, err
    assert "R[i][j] = accuracy (%)" in out and "after perm2" in out
    assert "BWT = mean_{j<T} (R[T,j] - R[j,j])" in out  # the definition is named
    store = Store(db)
    (row,) = store.runs()
    assert row["status"] == "finished"
    result = store.result(row["id"])
    assert result.R.shape == (3, 2) and result.config["iterations"] == 10
    assert (tmp_path / f"run-{row['id']:04d}" / "result.json").is_file()


def test_json_output_is_the_full_result(tmp_path, capsys):
    code, out, _ = cli(["run", *QUICK, "--json", "--store", str(tmp_path / "r.db")], capsys)
    data = json.loads(out)
    assert code == 0 and data["method"] == "finetune" and len(data["R"]) == 3
    assert data["metrics"]["acc"] == pytest.approx(sum(data["R"][-1]) / 2)


def test_several_seeds_and_methods_report_mean_and_sd(tmp_path, capsys):
    args = ["run", *QUICK, "--method", "finetune,joint", "--seeds", "0,1", "--store", str(tmp_path / "r.db")]
    code, out, _ = cli(args, capsys)
    assert code == 0
    assert "mean over seeds" in out and "±" in out
    assert len(Store(tmp_path / "r.db").runs()) == 4


def test_config_file_sets_options_and_flags_override_it(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        "benchmark: split-synthetic\nmethod: finetune\ntasks: 2\niterations: 5\n"
        "batch-size: 8\nhidden: [12, 12]\nreport: no\n"
    )
    code, out, err = cli(
        ["run", "--config", str(cfg), "--iterations", "7", "--json", "--store", str(tmp_path / "r.db")], capsys
    )
    assert code == 0, err
    c = json.loads(out)["config"]
    assert (c["benchmark"], c["batch_size"], c["iterations"], c["hidden"]) == ("split-synthetic", 8, 7, [12, 12])


def test_a_yes_no_option_alone_means_yes(tmp_path, capsys):
    code, out, err = cli(["run", *QUICK, "--eval-every-epoch", "--json", "--store", str(tmp_path / "r.db")], capsys)
    assert code == 0, err
    assert json.loads(out)["curves"]  # per-epoch curves were recorded


def test_list_shows_benchmarks_methods_and_defaults(capsys):
    code, out, _ = cli(["list"], capsys)
    assert code == 0
    for name in ("permuted-mnist", "split-digits", "rotated-mnist", "finetune", "joint", "independent", "--lr"):
        assert name in out


def test_show_and_report(tmp_path, capsys):
    db = str(tmp_path / "r.db")
    cli(["run", *QUICK, "--store", db], capsys)
    code, out, _ = cli(["show", "latest", "--store", db], capsys)
    assert code == 0 and "run 1: finished" in out and "acc" in out
    code, out, _ = cli(["report", "1", "--store", db, "--out", str(tmp_path / "rep")], capsys)
    assert code == 0 and (tmp_path / "rep" / "report.md").is_file()


def test_a_diverging_run_is_recorded_as_failed(tmp_path, capsys):
    db = tmp_path / "r.db"
    code, _, err = cli(["run", *QUICK, "--lr", "1e30", "--store", str(db)], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "diverged" in err and "task 1, epoch 1" in err
    (row,) = Store(db).runs()
    assert row["status"] == "failed" and "diverged" in row["message"]


BAD = [
    (["--benchmark", "shuffled-digits"], "invalid choice"),
    (["--method", "magic"], "unknown method 'magic'"),
    (["--frobnicate", "1"], "unrecognized arguments: --frobnicate"),
    (["--lr", "-0.1"], "--lr must be a positive number"),
    (["--lr", "fast"], "--lr got 'fast'"),
    (["--tasks", "0"], "--tasks must be at least 1"),
    (["--benchmark", "split-synthetic", "--tasks", "11"], "cannot make 11 tasks"),
    (["--method", "independent", "--scenario", "class"], "does not support the class-incremental"),
    (["--angles", "0,90"], "applies to rotated benchmarks"),
    (["--benchmark", "split-mnist", "--data-dir", "/nonexistent"], "lacks the MNIST files"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_is_one_line_and_nonzero_and_records_nothing(tmp_path, capsys, args, message):
    db = tmp_path / "r.db"
    code, out, err = cli(
        ["run", "--benchmark", "permuted-synthetic", "--tasks", "2", *args, "--store", str(db)], capsys
    )
    assert code == 2
    assert message in err and err.startswith("lifelong: error:") and err.count("\n") == 1
    assert not db.exists() or Store(db).runs() == []


@pytest.mark.parametrize(
    "text,message",
    [
        ("lr: [0.1\n", "not valid YAML at line"),
        ("learning_rate: 0.1\n", "unknown key 'learning_rate'"),
        ("- lr\n- 0.1\n", "must be a mapping"),
        ("epochs: many\n", "--epochs got 'many'"),
    ],
)
def test_malformed_config_files(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    code, _, err = cli(["run", "--config", str(cfg), "--store", str(tmp_path / "r.db")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_unknown_run_and_corrupt_store(tmp_path, capsys):
    db = tmp_path / "r.db"
    cli(["run", *QUICK, "--store", str(db)], capsys)
    code, _, err = cli(["show", "42", "--store", str(db)], capsys)
    assert code == 2 and err.count("\n") == 1
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 10)
    code, _, err = cli(["run", *QUICK, "--store", str(junk)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert junk.read_bytes() == b"this is not sqlite" * 10  # nothing damaged


def test_main_job_end_to_end_in_a_subprocess(tmp_path):
    """`lifelong run` with no arguments tells the lecture's story: (1) noisy then clean digits, finetune forgets
    the noisy task while joint training keeps both; (2) five tasks, each regulariser closes at least half of
    the ACC gap between finetune and joint, with far less forgetting; (3) class-incremental split digits:
    finetune, EWC and LwF end near one task's share, replay, iCaRL, DGR and GEM well above it."""
    proc = subprocess.run([sys.executable, "-m", "lifelong.cli", "run"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    part1, rest = proc.stdout.split("== main job, part 2")
    part2, part3 = rest.split("== main job, part 3")
    assert "noisy-minimnist · domain-IL · 2 tasks" in part1 and "permuted-minimnist · domain-IL · 5 tasks" in part2

    def matrix(text, method):  # the R rows printed under "<method> (run N): ..."
        block = text.split(f"\n{method} (run ")[1].split("\n\n")[0].splitlines()
        return [[float(v) for v in line.split()[-len(block[1].split()) :]] for line in block[2:]]

    finetune, joint = matrix(part1, "finetune"), matrix(part1, "joint")
    assert finetune[2][0] < finetune[1][0] - 5  # task 1 (noisy) is forgotten in part after task 2 (clean)
    assert joint[2][0] > finetune[2][0] + 5  # while learning both at once keeps it

    table = {line.split()[0]: line.split() for line in part2.splitlines() if line.split()[1:2] == ["1"]}
    acc = {name: float(row[2]) for name, row in table.items()}
    bwt = {name: float(row[3]) for name, row in table.items() if name != "joint"}
    for name in ("ewc", "si", "mas"):
        assert (acc[name] - acc["finetune"]) / (acc["joint"] - acc["finetune"]) >= 0.5, (name, acc)
        assert bwt[name] > bwt["finetune"] / 3, (name, bwt)  # far less forgetting
    assert "split-digits · class-IL · 5 tasks" in part3
    final = {
        line.split()[0].split(":")[0]: float(line.split()[2])
        for line in part3.splitlines()
        if line.split()[1:2] == ["1"]
    }
    for name in ("finetune", "ewc", "lwf"):
        assert final[name] < 30, final  # one task's share of the classes is 20 %
    for name in ("replay", "icarl", "dgr", "gem"):
        assert final[name] > 45, final
    assert "lwf in class-IL is expected to fail" in proc.stderr
    assert list((tmp_path / "lifelong-runs").glob("report-*/report.md"))


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lifelong.cli", "run", "--method", "nope"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_each_method_can_carry_its_own_settings(tmp_path, capsys):
    db = tmp_path / "r.db"
    args = ["run", "--benchmark", "permuted-synthetic", "--tasks", "2", "--iterations", "10", "--store", str(db)]
    code, out, err = cli([*args, "--method", "finetune,ewc:lam=0.5:fisher=sampled,si"], capsys)
    assert code == 0, err
    runs = {r["config"]["method_spec"]: r["config"] for r in Store(db).runs()}
    assert (
        runs["ewc:lam=0.5:fisher=sampled"]["lam"] == 0.5 and runs["ewc:lam=0.5:fisher=sampled"]["fisher"] == "sampled"
    )
    assert runs["si"]["lam"] == 0.1  # the default, untouched by ewc's setting
    # regularisers show which weights they guard, in their run folder and in the report
    ewc_id = next(r["id"] for r in Store(db).runs() if r["method"] == "ewc")
    assert (Store(db).folder(ewc_id) / "importance.png").is_file()  # r.db's folders: r-run-NNNN
    report = next(tmp_path.glob("report-*/report.md")).read_text()
    assert "importance of each parameter" in report and f"run-{ewc_id:04d}/importance.png" in report


@pytest.mark.parametrize(
    "spec,message",
    [("ewc:foo=1", "'foo=1' is not setting=value"), ("ewc:lam=abc", "--lam got 'abc'"), ("ewc:lam", "not")],
)
def test_bad_method_settings(tmp_path, capsys, spec, message):
    code, _, err = cli(["run", *QUICK, "--method", spec, "--store", str(tmp_path / "r.db")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_data_dir_in_a_config_file_is_relative_to_the_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "exp.yaml").write_text("data_dir: data\n")
    monkeypatch.chdir(tmp_path)  # another working directory than the file's
    from lifelong.config import read_config_file

    assert read_config_file("exp/exp.yaml")["data_dir"] == str(tmp_path / "exp" / "data")
    (tmp_path / "abs.yaml").write_text(f"data_dir: {tmp_path / 'elsewhere'}\n")
    assert read_config_file("abs.yaml")["data_dir"] == str(tmp_path / "elsewhere")  # absolute stays absolute


def test_report_out_has_the_importance_section_of_run_reports(tmp_path, capsys):
    db = str(tmp_path / "r.db")
    assert cli(["run", *QUICK, "--method", "ewc", "--store", db], capsys)[0] == 0
    code, out, _ = cli(["report", "1", "--store", db, "--out", str(tmp_path / "rep")], capsys)
    report = (tmp_path / "rep" / "report.md").read_text()
    assert code == 0 and "importance of each parameter" in report and "importance.png" in report


def test_json_still_writes_the_report_and_says_where_on_stderr(tmp_path, capsys):
    args = ["run", "--benchmark", "permuted-synthetic", "--tasks", "2", "--iterations", "3", "--json"]
    code, out, err = cli([*args, "--method", "ewc", "--store", str(tmp_path / "r.db")], capsys)
    assert code == 0 and json.loads(out)["method"] == "ewc"  # stdout is JSON alone
    path = err.strip().removeprefix("report: ")
    assert path.startswith(str(tmp_path)) and path.endswith("report.md") and os.path.isfile(path)


def test_a_replay_run_reports_and_shows_its_memory(tmp_path, capsys):
    db = tmp_path / "r.db"
    args = ["run", "--benchmark", "split-synthetic", "--tasks", "2", "--iterations", "3", "--method", "replay"]
    code, out, err = cli([*args, "--memory-size", "50", "--report", "yes", "--store", str(db)], capsys)
    assert code == 0, err
    report = Path(re.search(r"^report: (.+)$", out, flags=re.MULTILINE).group(1)).read_text()
    stream = benchmarks.split("synthetic", n_tasks=2)
    per_item = stream.input_size * 4 + 8 + 8  # float32 inputs, int64 labels and task ids
    row = "| replay | examples (episodic memory) | reservoir | 50 | 50 | "
    assert "### Memory: what each method keeps" in report and row + f"{50 * per_item / 1024:.1f} KB |" in report
    assert "### Gradient projection" not in report  # replay projects nothing
    code, out, _ = cli(["show", "latest", "--store", str(db)], capsys)
    assert code == 0 and f"\nmemory: 50 samples (reservoir, capacity 50, {50 * per_item / 1024:.1f} KB)\n" in out


def test_show_prints_the_projection_rate_of_each_task(tmp_path, capsys):
    R = np.array([[0.1, 0.1], [0.9, 0.1], [0.8, 0.9]])
    result = Result("gem", "split-synthetic", "task", ["a", "b"], R, {"task": R}, facts={"projection_rate": [0, 0.125]})
    store = Store(tmp_path / "r.db")
    store.finish(store.start({}, seed=0), result)
    code, out, _ = cli(["show", "1", "--store", str(tmp_path / "r.db")], capsys)
    assert code == 0 and "\nprojected: 0.0%, 12.5% of each task's steps" in out and "memory:" not in out
