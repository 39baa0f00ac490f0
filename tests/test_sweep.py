"""`lifelong sweep` (issue 12, item 2): the sweep file is checked key by key; a grid expands to exactly the
runs it names; each run is identified by the hash of its resolved settings; a sweep killed with SIGKILL
and run again runs only what is missing (and resumes what was killed); processes claiming and writing
one store at once record exactly one run per configuration; and the Ray executor runs a sweep end to end
on a local Ray instance, with the numbers of the local executor."""

import json
import multiprocessing as mp
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from lifelong.cli import main
from lifelong.errors import LifelongError
from lifelong.results import Store
from lifelong.sweep import schema
from lifelong.sweep.plan import plan
from lifelong.sweep.unit import config_hash

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = {"benchmark": "permuted-synthetic", "tasks": 2, "iterations": 20, "hidden": [8], "batch_size": 16}


def write(tmp_path, data: dict, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # in the order written: the order of the runs
    return path


def sweep_json(capsys, *args) -> tuple[int, list[dict]]:
    code = main(["sweep", *map(str, args), "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"grd": {"lr": [0.1]}}, r"s\.yaml: unknown key 'grd'; the keys are: name, search"),
        ({"lr": [0.1]}, r"unknown key 'lr'; a run setting goes under fixed: \(one value\) or grid:"),
        ({"grid": {"lr": 0.1}}, r"grid\.lr: give a list of values to try, e.g\. lr: \[0\.1\]; one value .* fixed:"),
        ({"grid": {"lr": ["abc"]}}, r"grid\.lr: 'abc' is not a valid float"),
        ({"grid": {"lr": [0.1, 0.1]}}, r"grid\.lr: 0\.1 is listed twice"),
        ({"grid": {"optimizer": ["sgd", "adamw"]}}, r"grid\.optimizer: 'adamw' is not one of: sgd, adam"),
        ({"fixed": {"lr": float("nan")}}, r"fixed\.lr: nan: give finite numbers"),
        ({"fixed": {"method": "ewc"}}, r"fixed\.method: not a setting here; list methods under methods:"),
        ({"fixed": {"vectorize": True}}, r"fixed\.vectorize: not a setting here; a sweep trains each run alone"),
        ({"fixed": {"task_order": [1, 0]}}, r"fixed\.task_order: .* list task orders under orders:"),
        ({"fixed": {"lrr": 0.1}}, r"fixed\.lrr: unknown setting; `lifelong list` shows every run option"),
        ({"fixed": {"lr": 0.1}, "grid": {"lr": [0.2]}}, r"lr is under both fixed: and grid:"),
        ({"grid": {"lam": [1, 10]}}, r"grid\.lam: lam is a method's hyper-parameter; give it with its method"),
        ({"methods": {"ewc": {"lamb": [1]}}}, r"methods\.ewc\.lamb: not a setting of ewc \(its settings: lam,"),
        ({"methods": ["ewk"]}, r"methods: unknown method 'ewk'; choose one of"),
        ({"methods": []}, r"methods: give method names, e\.g\. \[finetune, ewc\]"),
        ({"seeds": [0, 0]}, r"seeds: 0 is listed twice"),
        ({"seeds": "3..1"}, r"seeds: '3\.\.1' is not a range; write FIRST\.\.LAST"),
        ({"seeds": [-1]}, r"seeds: \[-1\]: give whole numbers >= 0"),
        ({"orders": [[0, "x"]]}, r"orders: \[0, 'x'\] is not a list of task numbers"),
        ({"orders": 0}, r"orders: 0 random orders; ask for 1 or more"),
        ({"search": "bayes"}, r"search: 'bayes' is not grid or random"),
        ({"search": "random"}, r"samples: None: give a whole number >= 1, e\.g\. samples: 20"),
        ({"samples": 3}, r"samples: is for search: random; remove it, or add search: random"),
        ({"grid": {"lr": {"log_uniform": [1e-3, 0.1]}}}, r"grid\.lr: a distribution needs search: random"),
        (
            {"search": "random", "samples": 2, "grid": {"lr": {"log_uniform": [0, 1]}}},
            r"grid\.lr: log_uniform needs \[low, high\] with 0 < low < high \(got \[0, 1\]\)",
        ),
        (
            {"search": "random", "samples": 2, "grid": {"optimizer": {"uniform": [0, 1]}}},
            r"grid\.optimizer: optimizer is not a number, so it cannot be drawn from a range",
        ),
        ({"validation": 1.5}, r"validation: 1\.5 must be a fraction between 0 and 1"),
        ({"name": "my sweep"}, r"name: 'my sweep' cannot name a sweep; use letters, digits"),
    ],
)
def test_a_bad_sweep_file_is_refused_in_one_line_naming_the_key(data, message):
    with pytest.raises(LifelongError, match=message) as caught:
        schema.parse(data, "s.yaml", default_name="s")
    assert "\n" not in str(caught.value)


def test_a_bad_sweep_is_refused_before_any_record_with_exit_2(tmp_path, capsys):
    db = tmp_path / "r.db"
    bad_order = write(tmp_path, {"fixed": TINY, "methods": ["finetune"], "orders": [[0, 0]]})
    assert main(["sweep", str(bad_order), "--store", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"lifelong: error: {bad_order}: orders: [0, 0] is not an order of the 2 tasks; list each of 0..1 once, "
        "e.g. [1, 0]"
    )
    assert not db.exists()
    too_many = write(tmp_path, {"fixed": {**TINY, "benchmark": "split-synthetic", "tasks": 11}}, "t.yaml")
    assert main(["sweep", str(too_many), "--store", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lifelong: error: {too_many}: ") and "\n" not in err and not db.exists()
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist; check the path" in capsys.readouterr().err


def test_a_grid_expands_to_exactly_the_runs_it_names(tmp_path):
    sweep = schema.parse(
        {
            "fixed": {**TINY, "tasks": 3},
            "grid": {"lr": [0.01, 0.1]},
            "methods": {"finetune": {}, "ewc": {"lam": [1, 10]}},
            "seeds": [0, 1],
            "orders": [[0, 1, 2], [2, 1, 0]],
        },
        "s.yaml",
        default_name="grid",
    )
    jobs = plan(sweep)
    expected = [
        (lr, method, order, seed)
        for lr in (0.01, 0.1)
        for method in ("finetune", "ewc:lam=1.0", "ewc:lam=10.0")
        for order in ((0, 1, 2), (2, 1, 0))
        for seed in (0, 1)
    ]
    got = [(j.point.settings["lr"], j.point.method, j.point.order, j.point.seed) for j in jobs]
    assert len(jobs) == 2 * 3 * 2 * 2 == 24 and got == expected
    assert len({j.key for j in jobs}) == 24  # every run its own identity
    job = jobs[-1]  # lr 0.1, ewc λ 10, order 2,1,0, seed 1: the unit's resolved config says exactly that
    assert (job.cfg["lr"], job.cfg["method"], job.cfg["task_order"], job.cfg["seed"]) == (
        0.1,
        ["ewc:lam=10.0"],
        [2, 1, 0],
        1,
    )
    assert (job.cfg["tasks"], job.cfg["iterations"], job.cfg["hidden"], job.cfg["report"]) == (3, 20, [8], False)
    assert sweep.group == "sweep-grid"


def test_the_hash_is_of_the_resolved_settings():
    def keys(methods: dict, **fixed) -> list[str]:
        sweep = schema.parse({"fixed": {**TINY, **fixed}, "methods": methods}, "s.yaml", default_name="h")
        return [j.key for j in plan(sweep)]

    (default,) = keys({"ewc": {}})
    assert keys({"ewc": {"lam": 10}}) == [default]  # ewc's default λ is 10: the same run, however written
    assert keys({"ewc": {"lam": 1}}) != [default] and keys({"ewc": {}}, lr=0.05) != [default]
    assert keys({"ewc": {}}, data_dir="/elsewhere") == [default]  # where the data lies is not what it is
    (job,) = plan(schema.parse({"fixed": TINY, "methods": ["ewc"]}, "s.yaml", default_name="h"))
    from lifelong.experiment import Experiment

    run_config = Experiment(job.cfg).config(0, "ewc")
    identity = {k: v for k, v in run_config.items() if k not in ("method_spec", "data_dir")}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    import hashlib

    assert config_hash(run_config) == default == hashlib.sha256(text.encode()).hexdigest()


def test_random_search_draws_the_same_configurations_from_the_same_seed():
    def draws(seed: int) -> list[tuple[float, int, str]]:
        sweep = schema.parse(
            {
                "search": "random",
                "samples": 6,
                "search_seed": seed,
                "fixed": {k: v for k, v in TINY.items() if k != "batch_size"},
                "grid": {"lr": {"log_uniform": [1e-3, 1e-1]}, "batch_size": {"uniform": [8, 64]}},
                "methods": {"finetune": {}, "ewc": {"lam": [1, 10, 100]}},
            },
            "s.yaml",
            default_name="r",
        )
        return [(s["lr"], s["batch_size"], spec) for s, spec in sweep.configurations()]

    first = draws(0)
    assert draws(0) == first and draws(1) != first and len(set(first)) == 6
    for lr, batch, spec in first:
        assert 1e-3 <= lr <= 1e-1 and float(f"{lr:.3g}") == lr  # 3 significant digits
        assert isinstance(batch, int) and 8 <= batch <= 64
        assert spec in ("finetune", "ewc:lam=1.0", "ewc:lam=10.0", "ewc:lam=100.0")
    small = {"search": "random", "samples": 5, "fixed": TINY, "grid": {"lr": [0.1, 0.2]}, "methods": ["finetune"]}
    with pytest.raises(LifelongError, match="samples: 5 is more than the 2 distinct configurations"):
        schema.parse(small, "s.yaml", default_name="r").configurations()


# -- a sweep killed and run again ---------------------------------------------------------------------

# Six runs of about a second each (three tasks; a checkpoint after each), two worker processes.
KILLED = {
    "name": "killed",
    "fixed": {**TINY, "tasks": 3, "iterations": 1000},
    "methods": {"finetune": {}, "ewc": {"lam": [1, 10]}},
    "seeds": [0, 1],
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_sweep_killed_with_sigkill_and_run_again_runs_only_what_is_missing(tmp_path, capsys):
    path, db = write(tmp_path, KILLED), tmp_path / "runs.db"
    command = [sys.executable, "-m", "lifelong.cli", "sweep", str(path), "--workers", "2", "--store", str(db)]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def rows() -> list[dict]:
        return Store(db, create=False).runs() if db.exists() else []

    def mid_way(rs: list[dict]) -> bool:  # some finished, one part-way (a task done, so a checkpoint)
        running = [r for r in rs if r["status"] == "running" and (r["progress"] or {}).get("stages_done", 0) >= 1]
        return sum(r["status"] == "finished" for r in rs) >= 2 and bool(running)

    deadline = time.monotonic() + 120
    while not mid_way(rows()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    # Its pool's workers see their parent gone and exit; what they ran stays 'running' with a dead pid.
    pids = [r["pid"] for r in rows() if r["status"] in ("running", "killed")]
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "a pool worker outlived its killed parent"
    before = {r["config_hash"]: r for r in rows()}
    finished = {k for k, r in before.items() if r["status"] == "finished"}
    killed = {k for k, r in before.items() if r["status"] == "killed"}
    assert len(finished) >= 2 and killed and len(before) < 6

    code, entries = sweep_json(capsys, path, "--workers", "1", "--store", db)
    assert code == 0
    after = {r["config_hash"]: r for r in rows()}
    assert len(rows()) == 6 and set(after) == {e["config_hash"] for e in entries}  # one record per config
    assert all(r["status"] == "finished" for r in after.values())
    done = {e["config_hash"]: e["this_time"] for e in entries}
    for key in finished:  # not run again: the same record, untouched
        assert done[key] == "recorded before"
        assert {k: after[key][k] for k in ("id", "created", "finished")} == {
            k: before[key][k] for k in ("id", "created", "finished")
        }
    for key in killed:  # the same record, resumed from its checkpoint (saved before its row of R was written)
        assert done[key] == "resumed" and after[key]["id"] == before[key]["id"]
        assert after[key]["created"] == before[key]["created"]
        recorded = (before[key]["progress"] or {}).get("stages_done", 0)
        resumed = re.search(r"resumed after task (\d) of 3 by sweep-killed", after[key]["message"] or "")
        if recorded:
            assert resumed and int(resumed.group(1)) >= recorded
        else:
            assert resumed or "resumed from the start" in after[key]["message"]
    assert any((before[k]["progress"] or {}).get("stages_done", 0) >= 1 for k in killed)
    missing = set(after) - set(before)
    assert all(done[k] == "ran" for k in missing) and len(finished) + len(killed) + len(missing) == 6
    assert min(after[k]["id"] for k in missing) > max(r["id"] for r in before.values())

    code, entries = sweep_json(capsys, path, "--store", db)  # once more: nothing left to do
    assert code == 0 and {e["this_time"] for e in entries} == {"recorded before"} and len(rows()) == 6
    assert main(["compare", "--group", "sweep-killed", "--by", "method,lam", "--store", str(db)]) == 0
    assert "6 runs in 3 groups by method,lam; seeds 0,1" in capsys.readouterr().out


def test_a_failed_run_is_recorded_once_and_not_run_again(tmp_path, capsys):
    data = {"fixed": {**TINY, "iterations": 50}, "methods": {"finetune": {}, "ewc": {"lam": 1e6, "step": "explicit"}}}
    path, db = write(tmp_path, data), tmp_path / "runs.db"
    code, entries = sweep_json(capsys, path, "--store", db)
    assert code == 1 and [e["status"] for e in entries] == ["finished", "failed"]
    assert "training diverged" in entries[1]["message"]
    code, entries = sweep_json(capsys, path, "--store", db)
    assert code == 1 and [e["this_time"] for e in entries] == ["recorded before", "failed before"]
    assert len(Store(db).runs()) == 2


def test_a_store_of_schema_2_is_read_as_it_is_and_upgraded_by_its_first_claim(tmp_path):
    db = tmp_path / "runs.db"
    store = Store(db)
    store.start({}, seed=0)
    with sqlite3.connect(db) as con:  # what a store written before config_hash looks like
        con.execute("DROP INDEX runs_by_config")
        con.execute("ALTER TABLE runs DROP COLUMN config_hash")
        con.execute("PRAGMA user_version = 2")
    old = Store(db, create=False)
    assert old.get(1)["config_hash"] is None and old.runs()[0]["id"] == 1
    assert old.claim({}, 0, "sweep-x", "ab" * 32) == (2, True) and old.claim({}, 0, "sweep-x", "ab" * 32) == (2, False)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (3,)
        with pytest.raises(sqlite3.IntegrityError):  # the database itself refuses a second record
            con.execute(
                "INSERT INTO runs (run_group, status, created, config_hash) VALUES ('sweep-x', 'x', 'x', ?)",
                ("ab" * 32,),
            )


# -- concurrent processes ---------------------------------------------------------------------------


def _claim_all(db: str, keys: list[str], barrier, out) -> None:
    store = Store(db)
    barrier.wait()  # every process claims at the same moment
    out.put([(k, *store.claim({"key": k}, 0, "sweep-race", k)) for k in keys])


def test_processes_claiming_at_once_make_exactly_one_record_per_config(tmp_path):
    db = str(tmp_path / "runs.db")
    Store(db)
    keys = [f"{k:064x}" for k in range(60)]
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    orders = [keys, keys[::-1], keys[::2] + keys[1::2]]  # each process meets the others' claims
    procs = [ctx.Process(target=_claim_all, args=(db, order, barrier, out)) for order in orders]
    for p in procs:
        p.start()
    claims = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    rows = Store(db).runs()
    assert len(rows) == 60 and sorted(r["config_hash"] for r in rows) == keys
    ids = {r["config_hash"]: r["id"] for r in rows}
    for key in keys:
        got = [(i, created) for process in claims for k, i, created in process if k == key]
        assert len(got) == 3 and {i for i, _ in got} == {ids[key]}  # every process got the one record
        assert sum(created for _, created in got) == 1  # and exactly one created it


def test_sweeps_of_one_file_started_at_once_record_each_run_once(tmp_path):
    data = {"name": "race", "fixed": {**TINY, "iterations": 100}, "methods": ["finetune", "ewc"], "seeds": [0, 1, 2]}
    path, db = write(tmp_path, data), tmp_path / "runs.db"
    command = [sys.executable, "-m", "lifelong.cli", "sweep", str(path), "--workers", "1", "--json", "--store", str(db)]
    procs = [subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err.decode() for _, err in outputs]
    rows = Store(db).runs()
    assert len(rows) == 6 and len({r["config_hash"] for r in rows}) == 6
    assert all(r["status"] == "finished" for r in rows)
    ran = [e for out, _ in outputs for e in json.loads(out) if e["this_time"] in ("ran", "resumed")]
    assert sorted(e["config_hash"] for e in ran) == sorted(r["config_hash"] for r in rows)  # each ran once


# -- Ray ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def test_the_ray_executor_runs_a_sweep_end_to_end_with_the_local_numbers(tmp_path, capsys, ray_session):
    data = {"name": "ray", "fixed": TINY, "grid": {"lr": [0.05, 0.1]}, "methods": ["finetune", "si"], "seeds": [0]}
    path = write(tmp_path, data)
    code, on_ray = sweep_json(capsys, path, "--executor", "ray", "--store", tmp_path / "ray.db")
    assert code == 0 and len(on_ray) == 4 and {e["this_time"] for e in on_ray} == {"ran"}
    rows = Store(tmp_path / "ray.db").runs()
    assert len(rows) == 4 and all(r["status"] == "finished" and r["group"] == "sweep-ray" for r in rows)
    assert all(r["pid"] != os.getpid() for r in rows)  # run by Ray's workers, not here
    code, local = sweep_json(capsys, path, "--workers", "1", "--store", tmp_path / "local.db")
    assert code == 0
    local_R = {r["config_hash"]: r["R"] for r in Store(tmp_path / "local.db").runs()}
    assert {r["config_hash"]: r["R"] for r in rows} == local_R  # the same runs, the same numbers
    code, again = sweep_json(capsys, path, "--executor", "ray", "--store", tmp_path / "ray.db")
    assert code == 0 and {e["this_time"] for e in again} == {"recorded before"}


def test_the_ray_executor_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    path = write(tmp_path, {"fixed": TINY, "methods": ["finetune"]})
    assert main(["sweep", str(path), "--executor", "ray", "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "lifelong: error: the ray executor needs Ray, which is not installed; pip install 'lifelong[ray]' "
        "(or pip install 'ray>=2.9')"
    )
    assert main(["sweep", str(path), "--address", "auto"]) == 2
    assert "--address is for the ray executor; add --executor ray" in capsys.readouterr().err
