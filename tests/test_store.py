"""The results store: round trips, crash safety (SIGKILL before and during finish), and one-line errors."""

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lifelong
from lifelong import LifelongError, Result
from lifelong.results import Store
from lifelong.results import store as store_module

SCHEMA_DOC = Path(__file__).resolve().parents[1] / "docs" / "result-schema.md"
posix_only = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and pid checks are POSIX")


def tiny_result(seed: int = 0) -> Result:
    R = np.array([[0.1, 0.12], [0.9, 0.2], [0.7, 0.95]])
    return Result(
        method="finetune",
        benchmark="permuted-synthetic",
        scenario="domain",
        task_names=["perm1", "perm2"],
        R=R,
        views={"domain": R},
        config={"train": {"seed": seed}, "method": {}},
        curves=[{"stage": 0, "epoch": 0, "accuracy": [0.9, 0.2]}, {"stage": 1, "epoch": 0, "accuracy": [0.7, 0.95]}],
        losses=[[1.0], [0.5]],
        timings={"train_s": [0.5, 0.4], "eval_s": 0.1, "total_s": 1.0},
        peak_memory_mb=123.0,
    )


def run_in_subprocess(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_fit_result_round_trips_through_the_store(tmp_path):
    stream = lifelong.benchmarks.permuted("synthetic", n_tasks=2, seed=0)
    model = lifelong.models.MLP(stream.input_size, [20], stream.n_classes)
    result = lifelong.fit(stream, model, iterations=20, eval_every_epoch=True)
    store = Store(tmp_path / "runs.db")
    config = {"benchmark": "permuted-synthetic", "train": {"iterations": 20}}

    run_id = store.start(config, seed=0, group="g")
    assert store.get(run_id)["status"] == "running"
    store.finish(run_id, result)

    back = store.result(run_id)
    np.testing.assert_allclose(back.R, result.R)
    assert back.views.keys() == result.views.keys()
    assert (back.task_names, back.curves, back.losses) == (result.task_names, result.curves, result.losses)
    assert back.metrics() == pytest.approx(result.metrics())
    row = store.get(run_id)
    assert row["status"] == "finished" and row["group"] == "g" and row["seed"] == 0 and row["config"] == config
    np.testing.assert_allclose(row["R"], result.R)
    assert row["metrics"] == pytest.approx(result.metrics())
    assert row["timings"]["train_s"] == pytest.approx(result.timings["train_s"]) and row["timings"]["wall_s"] >= 0
    assert row["peak_memory_mb"] == pytest.approx(result.peak_memory_mb)
    assert row["code_version"].startswith(lifelong.__version__)
    assert row["pid"] == os.getpid() and row["finished"] >= row["created"]


def test_result_json_is_written_and_matches_the_schema_doc(tmp_path):
    store = Store(tmp_path / "runs.db")
    run_id = store.start({"x": 1}, seed=7)
    store.finish(run_id, tiny_result(seed=7))

    path = tmp_path / f"run-{run_id:04d}" / "result.json"
    document = json.loads(path.read_text())
    documented = set(re.findall(r"^\| `(\w+)` \|", SCHEMA_DOC.read_text(), flags=re.MULTILINE))
    assert set(document) == documented
    assert document["run_id"] == run_id and document["seed"] == 7 and document["status"] == "finished"
    np.testing.assert_allclose(Result.from_dict(document).R, tiny_result().R)
    assert not [p for p in path.parent.iterdir() if p.name != "result.json"]  # no temp file left behind


def test_a_methods_facts_round_trip_and_older_results_without_facts_still_load(tmp_path):
    stream = lifelong.benchmarks.split("synthetic", n_tasks=2, scenario="class")
    model = lifelong.models.MLP(stream.input_size, [8], stream.n_classes)
    result = lifelong.fit(stream, model, lifelong.methods.GEM(memory_size=7), iterations=3)
    memory = result.facts["memory"]
    assert memory["samples"] == 14 and memory["per_task"] == {"0": 7, "1": 7}  # JSON's keys, as read back
    assert memory["bytes"] == 14 * (stream.input_size * 4 + 8 + 8)  # float32 inputs, int64 labels and task ids
    assert result.facts["projection_rate"][0] == 0.0  # the first task has no memory to protect
    store = Store(tmp_path / "runs.db")
    run_id = store.start({}, seed=0)
    store.finish(run_id, result)
    assert store.result(run_id).facts == result.facts
    assert json.loads((store.folder(run_id) / "result.json").read_text())["facts"] == result.facts

    old = tiny_result().to_dict()
    del old["facts"]  # result.json written before the field existed
    assert Result.from_dict(old).facts == {}
    with sqlite3.connect(tmp_path / "runs.db") as con:
        con.execute("UPDATE runs SET result = ? WHERE id = ?", (json.dumps(old), run_id))
    assert store.result(run_id).facts == {}


@posix_only
def test_a_run_killed_before_finish_reads_as_killed(tmp_path):
    db = tmp_path / "runs.db"
    done = run_in_subprocess(f"""
        import os, signal
        from lifelong.results import Store
        run_id = Store({str(db)!r}).start({{}}, seed=0)
        print(run_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert done.returncode == -9, done.stderr
    run_id = int(done.stdout)

    store = Store(db)
    assert store.get(run_id)["status"] == "killed"
    assert [r["status"] for r in store.runs()] == ["killed"]
    with pytest.raises(LifelongError, match="killed"):
        store.result(run_id)
    with sqlite3.connect(db) as con:  # reads do not rewrite the stored status
        assert con.execute("SELECT status FROM runs").fetchone() == ("running",)


@posix_only
def test_a_run_killed_inside_finish_never_reads_as_finished(tmp_path):
    """Killed right after result.json lands, before the database transaction: still not finished."""
    db = tmp_path / "runs.db"
    done = run_in_subprocess(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import tiny_result
        from lifelong.results import Store
        store = Store({str(db)!r})
        run_id = store.start({{}}, seed=0)
        print(run_id, flush=True)
        replace = os.replace
        def replace_then_die(src, dst):
            replace(src, dst)
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace_then_die
        store.finish(run_id, tiny_result())
    """)
    assert done.returncode == -9, done.stderr
    run_id = int(done.stdout)

    store = Store(db)
    assert (store.folder(run_id) / "result.json").exists()
    row = store.get(run_id)
    assert row["status"] == "killed" and row["R"] is None and row["metrics"] is None


def test_fail_records_the_failure(tmp_path):
    store = Store(tmp_path / "runs.db")
    run_id = store.start({}, seed=0)
    store.fail(run_id, "training diverged: the loss became nan")
    row = store.get(run_id)
    assert row["status"] == "failed" and "diverged" in row["message"] and row["finished"]
    with pytest.raises(LifelongError, match="failed: training diverged"):
        store.result(run_id)
    with pytest.raises(LifelongError, match="already failed"):
        store.finish(run_id, tiny_result())


@pytest.mark.parametrize(
    "content",
    [
        b"these are somebody's notes, not a database\n" * 20,
        b"SQLite format 3\x00" + bytes(range(256)) * 20,  # a SQLite header followed by garbage
    ],
    ids=["text", "corrupt"],
)
def test_a_file_that_is_not_a_store_is_refused_and_left_intact(tmp_path, content):
    path = tmp_path / "runs.db"
    path.write_bytes(content)
    with pytest.raises(LifelongError) as error:
        Store(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert path.read_bytes() == content


def test_another_applications_sqlite_database_is_not_modified(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE notes (text TEXT)")
    before = path.read_bytes()
    with pytest.raises(LifelongError, match="not a lifelong results store"):
        Store(path)
    assert path.read_bytes() == before


def test_unknown_runs_and_bad_references_are_one_line_errors(tmp_path):
    store = Store(tmp_path)  # a folder means <folder>/runs.db
    assert store.path == tmp_path / "runs.db"
    with pytest.raises(LifelongError, match="no runs"):
        store.resolve("latest")
    store.start({}, seed=0)
    for call in (lambda: store.get(99), lambda: store.resolve("run-0099"), lambda: store.result(99)):
        with pytest.raises(LifelongError, match=r"no run 99 .*runs 1\.\.1 exist"):
            call()
    with pytest.raises(LifelongError, match="not a run"):
        store.resolve("yesterday")


def test_resolve_and_groups(tmp_path):
    store = Store(tmp_path / "runs.db")
    first = [store.start({}, seed=s, group="a") for s in (0, 1)]
    second = [store.start({}, seed=s, group="b") for s in (0, 1)]
    store.start({}, seed=0)  # ungrouped

    assert store.resolve("1") == store.resolve("run-0001") == first[0]
    assert store.resolve("latest") == second[-1] + 1
    assert store.latest_group() == "b"
    assert [r["id"] for r in store.group_runs("a")] == first
    assert [r["id"] for r in store.runs()] == [*first, *second, second[-1] + 1]
    with pytest.raises(LifelongError, match="no runs in group 'c'"):
        store.group_runs("c")


def test_an_unwritable_location_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(LifelongError, match="cannot create the results store"):
        Store(blocker / "runs.db")
    with pytest.raises(LifelongError, match="no results store"):
        Store(tmp_path / "missing.db", create=False)


def test_a_read_only_store_can_be_read_but_not_written(tmp_path, monkeypatch):
    path = tmp_path / "runs.db"
    store = Store(path)
    run_id = store.start({}, seed=0)
    store.finish(run_id, tiny_result())
    # Open every connection read-only, as SQLite does for a file without write permission (tests may run as root).
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda p, **kw: connect(f"file:{p}?mode=ro", uri=True, **kw))
    read_only = Store(path)
    assert read_only.result(run_id).acc == pytest.approx(tiny_result().acc)
    with pytest.raises(LifelongError, match="read-only; make it writable"):
        read_only.start({}, seed=1)


def test_code_version_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no git executable to be found
    assert store_module._git_suffix.__wrapped__(str(Path(lifelong.__file__).parent)) == ""


# -- every store has its own run folders; no file of the user's is ever replaced ----------------------


def test_two_stores_in_one_folder_keep_their_own_result_files(tmp_path):
    a, b = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    run_a, run_b = a.start({}, seed=1), b.start({}, seed=2)
    assert run_a == run_b == 1  # the same ids: only the folder names tell them apart
    a.finish(run_a, tiny_result(seed=1))
    b.finish(run_b, tiny_result(seed=2))

    assert (a.folder(1), b.folder(1)) == (tmp_path / "a-run-0001", tmp_path / "b-run-0001")
    assert json.loads((tmp_path / "a-run-0001" / "result.json").read_text())["seed"] == 1
    assert json.loads((tmp_path / "b-run-0001" / "result.json").read_text())["seed"] == 2
    assert a.get(1)["folder"] == str(tmp_path / "a-run-0001")
    assert not (tmp_path / "run-0001").exists()
    # the default name keeps the layout every earlier store has
    default = Store(tmp_path / "runs.db")
    assert default.folder(default.start({}, seed=0)) == tmp_path / "run-0001"


def test_a_foreign_result_json_in_a_run_folder_is_never_deleted(tmp_path):
    """A deleted store left run-0001/result.json behind: a new store's run 1 goes to a fresh folder."""
    old = tmp_path / "run-0001" / "result.json"
    old.parent.mkdir()
    old.write_text('{"run_id": 1, "note": "from a deleted store"}')
    (tmp_path / "run-0002").mkdir()  # an empty leftover folder holds nothing to lose: it is reused

    store = Store(tmp_path / "runs.db")
    first, second = store.start({}, seed=0), store.start({}, seed=1)
    store.finish(first, tiny_result())
    assert old.read_text() == '{"run_id": 1, "note": "from a deleted store"}'
    assert store.folder(first) == tmp_path / "run-0001-2" and store.folder(second) == tmp_path / "run-0002"
    assert json.loads((store.folder(first) / "result.json").read_text())["run_id"] == first

    # One put into the run's folder after start() is kept too: the result goes to yet another folder.
    foreign = store.folder(second) / "result.json"
    foreign.write_text("my notes")
    store.finish(second, tiny_result())
    assert foreign.read_text() == "my notes"
    assert store.folder(second) == tmp_path / "run-0002-2"
    assert store.result(second).acc == pytest.approx(tiny_result().acc)


def test_a_schema_1_store_reads_as_before_and_is_upgraded_by_its_first_write(tmp_path):
    path = tmp_path / "old.db"  # schema 1 put every store's runs in run-NNNN, whatever its name
    store = Store(path)
    store.finish(store.start({}, seed=3), tiny_result(seed=3))
    (tmp_path / "old-run-0001").rename(tmp_path / "run-0001")
    with sqlite3.connect(path) as con:  # what a store written by schema 1 looks like
        con.execute("ALTER TABLE runs DROP COLUMN folder")
        con.execute("ALTER TABLE runs DROP COLUMN progress")
        con.execute("PRAGMA user_version = 1")
    before = path.read_bytes()

    old = Store(path, create=False)
    assert old.folder(1) == tmp_path / "run-0001" and old.get(1)["progress"] is None
    assert old.result(1).acc == pytest.approx(tiny_result().acc) and old.runs()[0]["status"] == "finished"
    assert path.read_bytes() == before  # reading did not upgrade it

    new_id = old.start({}, seed=4)
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (store_module.SCHEMA_VERSION,)
    assert old.folder(new_id) == tmp_path / "old-run-0002" and old.folder(1) == tmp_path / "run-0001"


def test_reading_a_missing_or_empty_store_makes_nothing(tmp_path):
    with pytest.raises(LifelongError, match="no results store"):
        Store(tmp_path / "sub" / "missing.db", create=False)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(LifelongError, match="no results store .* empty"):
        Store(empty, create=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"] and empty.read_bytes() == b""


@pytest.mark.parametrize("command", [["show", "latest"], ["report", "1"]])
def test_show_and_report_on_a_missing_store_make_nothing(tmp_path, capsys, command):
    from lifelong.cli import main

    code = main([*command, "--store", str(tmp_path / "nowhere" / "missing.db")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no results store at" in err
    assert list(tmp_path.iterdir()) == []


# -- a run stopped part-way keeps the rows of R it finished -----------------------------------------

FOUR_TASKS = "run --benchmark permuted-synthetic --tasks 4 --iterations 20 --hidden 20 --report no".split()


def stopping_in_task_3(how: str):
    """An after_task hook that stops the run at the end of its third task, after R[0], R[1] and R[2] were
    recorded: by SIGKILL or by Ctrl-C."""
    done = []

    def after_task(self, task, model):
        done.append(task.id)
        if len(done) == 3:
            if how == "sigkill":
                os.kill(os.getpid(), 9)
            raise KeyboardInterrupt

    return after_task


def full_run_R() -> np.ndarray:
    """R of the same run as FOUR_TASKS, trained to the end without a store."""
    from lifelong import config
    from lifelong.experiment import Experiment

    flags = {"benchmark": "permuted-synthetic", "tasks": 4, "iterations": 20, "hidden": [20], "method": "finetune"}
    R = Experiment(config.resolve(None, flags)).execute(0, "finetune")[1].R
    assert len({tuple(row) for row in R}) == len(R)  # distinct rows, so that a wrong row cannot pass for R[i]
    return R


def test_ctrl_c_keeps_the_finished_rows_and_reads_as_interrupted(tmp_path, capsys, monkeypatch):
    from lifelong.cli import main
    from lifelong.methods.baselines import Finetune

    expected = full_run_R()
    monkeypatch.setattr(Finetune, "after_task", stopping_in_task_3("ctrl-c"), raising=False)
    db = str(tmp_path / "r.db")
    code = main([*FOUR_TASKS, "--quiet", "--store", db])
    err = capsys.readouterr().err
    assert code == 130 and err.count("\n") == 1 and "interrupted" in err and "KeyboardInterrupt" not in err

    row = Store(db).get(1)
    assert row["status"] == "interrupted" and row["message"] == store_module.INTERRUPTED and row["finished"]
    assert row["progress"] == {"stages_done": 2, "n_stages": 4, "task_names": ["perm1", "perm2", "perm3", "perm4"]}
    np.testing.assert_allclose(row["R"], expected[:3])  # the same rows as the run that went on to the end

    assert main(["show", "1", "--store", db]) == 0
    out = capsys.readouterr().out
    assert "run 1: interrupted (stopped by the user with Ctrl-C)" in out and "finished 2 of 4 tasks" in out
    assert "after perm2" in out and "after perm3" not in out
    init = next(line for line in out.splitlines() if line.startswith("init")).split()[1:]
    assert [float(v) for v in init] == pytest.approx(list(expected[0] * 100), abs=0.051)


@posix_only
def test_a_run_killed_in_task_3_keeps_rows_0_to_2(tmp_path, capsys):
    from lifelong.cli import main

    expected = full_run_R()
    db = tmp_path / "r.db"
    done = run_in_subprocess(f"""
        import sys, torch
        torch.set_num_threads(1)  # as the other tests: 2 shared cores
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import FOUR_TASKS, stopping_in_task_3
        from lifelong.cli import main
        from lifelong.methods.baselines import Finetune
        Finetune.after_task = stopping_in_task_3("sigkill")
        main([*FOUR_TASKS, "--quiet", "--store", {str(db)!r}])
    """)
    assert done.returncode == -9, done.stderr

    row = Store(db).get(1)
    assert row["status"] == "killed" and row["progress"]["stages_done"] == 2
    np.testing.assert_allclose(row["R"], expected[:3])
    assert main(["show", "latest", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "run 1: killed" in out and "finished 2 of 4 tasks" in out and "after perm2" in out


def test_a_diverged_run_stays_failed_with_its_message_and_row_0(tmp_path, capsys):
    from lifelong.cli import main

    db = tmp_path / "r.db"
    assert main([*FOUR_TASKS, "--lr", "1e30", "--store", str(db)]) == 1
    row = Store(db).get(1)
    assert row["status"] == "failed" and "diverged" in row["message"]
    assert len(row["R"]) == 1 and row["progress"]["stages_done"] == 0  # only R[0]: task 1 never ended
    capsys.readouterr()
    assert main(["show", "1", "--store", str(db)]) == 0
    assert "finished 0 of 4 tasks" in capsys.readouterr().out
