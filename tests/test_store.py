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
