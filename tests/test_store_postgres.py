"""The results store in PostgreSQL (issue 12, item 2): the same Store API as the SQLite file, on a real
server started by the test (tests/postgres.py). A run's life from start to result; processes claiming
one sweep's configurations at once make exactly one record each; whole sweeps started at once on one
database run each configuration once; `lifelong` commands take the URL wherever they take a store; and a
server that is down, a database that is not ours, or a missing driver is one line, not a traceback."""

import json
import multiprocessing as mp
import os
import subprocess
import sys
from urllib.parse import urlsplit

import numpy as np
import psycopg
import pytest
import yaml

import lifelong as ll
from lifelong.cli import main
from lifelong.errors import LifelongError
from lifelong.results import Store
from lifelong.results.postgres import PostgresDB, is_url

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = {"benchmark": "permuted-synthetic", "tasks": 2, "iterations": 20, "hidden": [8], "batch_size": 16}


@pytest.fixture
def url(postgres_url, tmp_path):
    """The test's empty database, its runs' folders under tmp_path/runs."""
    return f"{postgres_url}?folder={tmp_path / 'runs'}"


def tiny_result(seed: int = 0):
    stream = ll.benchmarks.split("synthetic", n_tasks=2, scenario="task")
    model = ll.models.MLP(stream.input_size, [8], stream.n_classes)
    return ll.fit(stream, model, "finetune", iterations=5, batch_size=10, seed=seed)


def test_a_run_is_started_recorded_and_read_back_as_from_sqlite(url, tmp_path):
    result = tiny_result()
    stores = {"postgres": Store(url), "sqlite": Store(tmp_path / "runs.db")}
    for store in stores.values():
        run_id = store.start({"lr": 0.1}, seed=3, group="g1")
        store.progress(run_id, result.R[:2].tolist(), result.task_names, 2)
        assert store.get(run_id)["progress"] == {"stages_done": 1, "n_stages": 2, "task_names": result.task_names}
        store.finish(run_id, result)
    pg, lite = (s.get(1) for s in stores.values())
    same = ("id", "group", "status", "seed", "config", "method", "benchmark", "scenario", "R", "metrics", "progress")
    assert {k: pg[k] for k in same} == {k: lite[k] for k in same}
    assert pg["status"] == "finished" and pg["R"] == result.R.tolist()
    np.testing.assert_array_equal(stores["postgres"].result(1).R, result.R)
    # The run's folder is under the URL's folder, named after the database; result.json is written there.
    database = urlsplit(url).path.lstrip("/")
    assert pg["folder"] == str(tmp_path / "runs" / f"{database}-run-0001")
    assert json.loads((tmp_path / "runs" / f"{database}-run-0001" / "result.json").read_text())["run_id"] == 1
    store = stores["postgres"]
    assert store.resolve("latest") == 1 and store.latest_group() == "g1" and len(store.group_runs("g1")) == 1
    with pytest.raises(LifelongError, match=r"run 1 is already finished"):
        store.finish(1, result)
    with pytest.raises(LifelongError, match=r"no run 7 in postgresql://.* \(runs 1\.\.1 exist\)"):
        store.get(7)


def test_a_killed_run_is_read_as_killed_and_taken_over_by_resume(url):
    store = Store(url)
    run_id = store.start({}, seed=0)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with psycopg.connect(url.split("?")[0], autocommit=True) as con:  # as if a process now gone had started it
        con.execute("UPDATE runs SET pid = %s WHERE id = %s", (int(dead.stdout), run_id))
    assert store.get(run_id)["status"] == "killed"
    store.resume(run_id, "resumed after task 1 of 2")
    row = store.get(run_id)
    assert row["status"] == "running" and row["pid"] == os.getpid() and row["message"] == "resumed after task 1 of 2"
    with pytest.raises(LifelongError, match=r"still running \(process \d+\)"):
        store.resume(run_id, "again")


def _claim_all(location: str, keys: list[str], barrier, out) -> None:
    store = Store(location)
    barrier.wait()  # every process claims at the same moment
    out.put([(k, *store.claim({"key": k}, 0, "sweep-race", k)) for k in keys])


def test_processes_claiming_at_once_make_exactly_one_record_per_config(url):
    store = Store(url)
    keys = [f"{k:064x}" for k in range(40)]
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    orders = [keys, keys[::-1], keys[::2] + keys[1::2], keys[1::2] + keys[::2]]
    procs = [ctx.Process(target=_claim_all, args=(store.location, order, barrier, out)) for order in orders]
    for p in procs:
        p.start()
    claims = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    rows = store.runs()
    assert len(rows) == 40 and sorted(r["config_hash"] for r in rows) == keys
    ids = {r["config_hash"]: r["id"] for r in rows}
    for key in keys:
        got = [(i, created) for process in claims for k, i, created in process if k == key]
        assert len(got) == 4 and {i for i, _ in got} == {ids[key]}  # every process got the one record
        assert sum(created for _, created in got) == 1  # and exactly one created it
    with psycopg.connect(url.split("?")[0]) as con, pytest.raises(psycopg.errors.UniqueViolation):
        con.execute(  # the database itself refuses a second record of a configuration
            "INSERT INTO runs (run_group, status, created, config_hash) VALUES ('sweep-race', 'x', 'x', %s)", (keys[0],)
        )


def test_sweeps_started_at_once_on_one_database_record_each_run_once(url, tmp_path, capsys):
    data = {"name": "race", "fixed": TINY, "methods": ["finetune", "ewc"], "seeds": [0, 1, 2]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    command = [sys.executable, "-m", "lifelong.cli", "sweep", str(path), "--workers", "1", "--json", "--store", url]
    procs = [subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err.decode() for _, err in outputs]
    rows = Store(url).runs()
    assert len(rows) == 6 and len({r["config_hash"] for r in rows}) == 6
    assert all(r["status"] == "finished" for r in rows)
    ran = [e for out, _ in outputs for e in json.loads(out) if e["this_time"] in ("ran", "resumed")]
    assert sorted(e["config_hash"] for e in ran) == sorted(r["config_hash"] for r in rows)  # each ran once
    # The commands that read a store take the URL too.
    assert main(["compare", "--group", "sweep-race", "--by", "method", "--store", url]) == 0
    assert "6 runs in 2 groups by method; seeds 0,1,2" in capsys.readouterr().out
    assert main(["show", "latest", "--store", url]) == 0
    assert "finished" in capsys.readouterr().out


def test_lifelong_run_and_report_write_beside_the_urls_folder(url, tmp_path, capsys):
    code = main(["run", "--method", "finetune", "--benchmark", "split-synthetic", "--tasks", "2", "--iterations", "5",
                 "--hidden", "8", "--store", url, "--quiet"])  # fmt: skip
    assert code == 0
    assert Store(url).get(1)["status"] == "finished"
    assert list((tmp_path / "runs").glob("report-*/report.md"))  # the run's own report
    assert main(["report", "1", "--store", url]) == 0
    assert (tmp_path / "runs" / "report-runs-1" / "report.md").exists()


def test_a_server_that_is_down_is_one_line_with_exit_code_2(capsys):
    from postgres import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(LifelongError, match=r"^cannot reach the results store postgresql://postgres@127\.0\.0\.1:\d+/"):
        Store(url)
    assert main(["show", "latest", "--store", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lifelong: error: cannot reach the results store") and err.count("\n") == 1


def test_a_database_with_someone_elses_runs_table_is_refused_and_left_alone(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("CREATE TABLE runs (name TEXT)")
        con.execute("INSERT INTO runs VALUES ('theirs')")
    with pytest.raises(LifelongError, match=r"has a table 'runs' that is not a lifelong results store's"):
        Store(postgres_url)
    with psycopg.connect(postgres_url) as con:
        assert con.execute("SELECT name FROM runs").fetchall() == [("theirs",)]


def test_reading_an_empty_database_is_an_error_and_creates_nothing(postgres_url):
    with pytest.raises(LifelongError, match=r"no results store in postgresql://.* yet; run an experiment first"):
        Store(postgres_url, create=False)
    with psycopg.connect(postgres_url) as con:
        tables = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        assert tables.fetchall() == []


def test_the_url_is_parsed_and_shown_without_its_password(tmp_path):
    db = PostgresDB(f"postgresql+psycopg://me:secret@db.example:5433/exp?sslmode=require&folder={tmp_path}")
    assert db.dsn == "postgresql://me:secret@db.example:5433/exp?sslmode=require"
    assert db.name == "postgresql://me:***@db.example:5433/exp?sslmode=require" and "secret" not in db.name
    assert db.folder == tmp_path and db.database == "exp"
    assert PostgresDB(db.location).folder == tmp_path  # what workers get opens the same store
    assert is_url("postgres://h/d") and is_url("postgresql://h/d") and not is_url("runs.db")
    assert not is_url("results/postgresql.db")


def test_without_psycopg_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    with pytest.raises(LifelongError, match=r"needs psycopg 3: pip install 'lifelong\[postgres\]'"):
        Store("postgresql://postgres@127.0.0.1:1/x")


def test_a_ray_sweep_writes_through_the_url_from_rays_workers(url, tmp_path, capsys):
    ray = pytest.importorskip("ray")
    data = {"name": "ray-pg", "fixed": TINY, "methods": ["finetune", "si"], "seeds": [0, 1]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        code = main(["sweep", str(path), "--executor", "ray", "--store", url, "--json"])
    finally:
        ray.shutdown()
    entries = json.loads(capsys.readouterr().out)
    assert code == 0 and [e["this_time"] for e in entries] == ["ran"] * 4
    rows = Store(url).runs()
    assert len(rows) == 4 and all(r["status"] == "finished" and r["pid"] != os.getpid() for r in rows)
    assert all(os.path.exists(os.path.join(r["folder"], "result.json")) for r in rows)  # under the URL's folder
    assert all(r["folder"].startswith(str(tmp_path / "runs")) for r in rows)
