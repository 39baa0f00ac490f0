"""The service's store (SQLite and PostgreSQL), its weight files and the guard split (issue 11)."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest
import sqlalchemy as sa
import torch

from lifelong.serve import weights
from lifelong.serve.errors import Conflict, NotFound, ServeError
from lifelong.serve.learner import is_guard
from lifelong.serve.service import Service, Settings, create_key
from lifelong.serve.store import META, Store


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A database URL of each backend, new for the test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serve.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(db):
    s = Store(db)
    try:
        yield s
    finally:
        s.close()


def rows(n: int, seed: int = 0) -> list[bytes]:
    g = torch.Generator().manual_seed(seed)
    return [r.numpy().tobytes() for r in torch.rand(n, 4, generator=g)]


def test_feedback_is_committed_and_read_back_exactly(db, store):
    xs = rows(5)
    out = store.add_feedback(xs, [0, 1, 2, 1, 0], [False, True, False, False, True], "a")
    assert out["accepted"] == 5 and out["task"] == "a" and out["ids"][1] - out["ids"][0] == 4
    other = Store(db)  # another engine (another connection pool): sees only what has committed
    try:
        got = other.feedback()
        assert [bytes(r.x) for r in got] == xs
        assert [r.y for r in got] == [0, 1, 2, 1, 0]
        assert [r.guard for r in got] == [False, True, False, False, True]
        assert other.backlog()[0] == 5
        assert other.tasks() == [
            {"id": got[0].task, "name": "a", "created": other.tasks()[0]["created"], "feedback": 5, "guard": 2}
        ]
    finally:
        other.close()


def test_untagged_feedback_goes_to_the_newest_task(store):
    assert store.add_feedback(rows(1), [0], [False], None)["task"] == "task-1"  # no task yet: a first one
    store.add_task("b")
    assert store.add_feedback(rows(2), [0, 1], [False, False], None)["task"] == "b"
    assert store.add_feedback(rows(1), [3], [False], "task-1")["task"] == "task-1"  # an old tag joins its task
    assert store.add_feedback(rows(1), [3], [False], None)["task"] == "b"  # ...without becoming the current one
    with pytest.raises(Conflict, match="task 'b' exists already"):
        store.add_task("b")
    assert [(t["name"], t["feedback"]) for t in store.tasks()] == [("task-1", 2), ("b", 3)]


def test_only_the_rows_a_candidate_trained_on_leave_the_backlog(store):
    ids = store.add_feedback(rows(6), [0] * 6, [False] * 6, "a")["ids"]
    v1 = store.new_version(None, "m", None)
    store.finish_version(
        v1, status="rejected", guard={}, reason="r", trained_on=3, files={}, info={}, seen=[ids[0], ids[0] + 2]
    )
    assert store.backlog()[0] == 4
    assert store.backlog_ids() == [ids[0] + 1, ids[0] + 3, ids[0] + 4, ids[0] + 5]
    seen = {r.id: r.seen for r in store.feedback()}
    assert seen[ids[0]] == v1 and seen[ids[0] + 1] is None


def test_serving_history_promote_and_rollback(store):
    def version(serve=None):
        v = store.new_version(None, "m", None)
        store.finish_version(
            v, status="rejected", guard={"a": 0.5}, reason="", trained_on=0, files={}, info={}, serve=serve
        )
        return v

    v1, v2, v3 = version("initial"), version("learner"), version("learner")
    assert store.serving() == v3
    assert [v["status"] for v in store.versions()] == ["promoted", "promoted", "serving"]
    assert store.version(v2)["guard"] == {"a": 0.5}
    assert store.rollback(expect=v3) == (v3, v2)
    assert store.rollback(expect=v2) == (v2, v1)  # a second rollback goes further back, not back to v3
    assert [v["status"] for v in store.versions()] == ["serving", "retired", "retired"]
    with pytest.raises(Conflict, match="none before it"):
        store.rollback(expect=v1)
    with pytest.raises(Conflict, match="changed meanwhile"):
        store.rollback(expect=v3)
    v4 = version()  # a candidate whose parent is no longer serving is not promoted
    assert not store.finish_version(
        v4,
        status="rejected",
        guard={},
        reason="ok",
        trained_on=0,
        files={},
        info={},
        serve="learner",
        expect_serving=v3,
    )
    assert store.serving() == v1 and store.version(v4)["status"] == "rejected"
    assert store.version(v4)["reason"].startswith(f"version {v1} started serving while it trained")
    with pytest.raises(NotFound, match="no version 999"):
        store.version(999)


def test_abandoned_candidates_are_recorded_rejected(store):
    v = store.new_version(None, "m", None)
    assert store.abandon_candidates("stopped") == 1
    assert store.version(v)["status"] == "rejected" and store.version(v)["reason"] == "stopped"


def test_meta_keeps_the_first_writer(store):
    assert store.init_meta({"model": {"a": 1}})["model"] == {"a": 1}
    assert store.init_meta({"model": {"a": 2}, "n": 3}) == {"model": {"a": 1}, "n": 3}


def test_a_store_of_another_schema_is_refused(db, store):
    with store.write() as con:
        con.execute(META.update().where(META.c.key == "schema").values(value="99"))
    with pytest.raises(ServeError, match="has schema 99, this lifelong reads 1"):
        Store(db)


def test_sqlite_is_wal_with_full_sync(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with s.read() as con:
            assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        s.close()


@pytest.mark.parametrize("url", ["mysql://x@y/z", "sqlite://", "not a url"])
def test_unsupported_databases_are_refused_in_one_line(url):
    with pytest.raises(ServeError) as e:
        Store(url)
    assert "\n" not in str(e.value)


def test_api_keys_are_stored_hashed(tmp_path):
    early = create_key(Settings(state_dir=tmp_path / "s"), {"admin"})  # before any service: the store alone
    svc = Service.create(Settings(state_dir=tmp_path / "s"), config={"benchmark": "permuted-synthetic", "hidden": [8]})
    try:
        assert svc.scopes_of(early) == {"admin"}
        key = svc.create_key({"predict", "feedback"}, "k")
        assert svc.scopes_of(key) == {"predict", "feedback"}
        assert svc.scopes_of(key + "x") is None and svc.scopes_of("") is None
        with pytest.raises(ServeError, match="scopes must be some of"):
            svc.create_key({"root"})
    finally:
        svc.close()
    con = sqlite3.connect(tmp_path / "s" / "serve.db")
    stored = con.execute("SELECT hash, scopes FROM api_keys ORDER BY created").fetchall()
    con.close()
    assert stored == [(_sha(early), "admin"), (_sha(key), "feedback,predict")]
    for path in (tmp_path / "s").iterdir():  # the plaintext is nowhere on disk
        if path.is_file():
            assert key.encode() not in path.read_bytes() and early.encode() not in path.read_bytes()


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# ---- weight files -------------------------------------------------------------------------------------


def test_weights_round_trip_without_pickles(tmp_path):
    tensors = {"w": torch.randn(3, 4), "b": torch.arange(5), "m": torch.tensor([True, False])}
    sha = weights.save(tmp_path, "a.safetensors", tensors, {"note": "x"})
    data = (tmp_path / "a.safetensors").read_bytes()
    assert sha == hashlib.sha256(data).hexdigest()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])  # safetensors: a JSON header, raw bytes
    assert header["__metadata__"] == {"note": "x"} and header["w"]["dtype"] == "F32"
    assert b"\x80\x04" not in data[:2] and not data.startswith(b"PK")  # neither a pickle nor torch.save's zip
    got, meta = weights.load(tmp_path, "a.safetensors", sha)
    assert meta == {"note": "x"} and all(torch.equal(got[k], v) for k, v in tensors.items())
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # no temporary file left


def test_a_tampered_weights_file_is_refused(tmp_path):
    sha = weights.save(tmp_path, "a.safetensors", {"w": torch.zeros(10)})
    path = tmp_path / "a.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(weights.ChecksumError, match="does not match the sha256 recorded for it") as e:
        weights.load(tmp_path, "a.safetensors", sha)
    assert "\n" not in str(e.value)
    path.unlink()
    with pytest.raises(weights.ChecksumError, match="cannot read"):
        weights.load(tmp_path, "a.safetensors", sha)


# ---- the guard split ----------------------------------------------------------------------------------


def test_the_guard_split_is_deterministic_and_holds_out_the_share():
    xs = rows(4000, seed=1)
    flags = [is_guard(x, 0.2) for x in xs]
    assert flags == [is_guard(x, 0.2) for x in xs]  # the same bytes, the same side, every time
    assert abs(sum(flags) / len(flags) - 0.2) < 0.03  # binomial sd is 0.0063: 0.03 is ~5 sd
    # a larger fraction only adds rows to the guard set (thresholds on one hash)
    assert all(is_guard(x, 0.5) for x, f in zip(xs, flags, strict=True) if f)
    expected = [int.from_bytes(hashlib.sha256(x).digest()[:8], "big") < 0.2 * 2**64 for x in xs[:50]]
    assert flags[:50] == expected


def test_the_service_splits_feedback_the_same_way_in_every_store(tmp_path, db):
    x = torch.rand(200, 8, 8, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(4))
    flags = []
    for where in ("one", "two"):
        settings = Settings(state_dir=tmp_path / where, db=db if where == "one" else None)
        svc = Service.create(settings, config={"benchmark": "permuted-synthetic", "hidden": [8]})
        try:
            svc.add_feedback(x, y, "a")
            flags.append([r.guard for r in svc.store.feedback()])
            assert svc.tasks()[0]["guard"] == sum(flags[-1])
        finally:
            svc.close()
    assert flags[0] == flags[1] == [is_guard(r.numpy().tobytes(), 0.2) for r in x]


def test_feedback_is_durable_before_add_feedback_returns(tmp_path, db):
    """What add_feedback acknowledged is in the database for any other connection, with no close or flush."""
    svc = Service.create(
        Settings(state_dir=tmp_path / "s", db=db), config={"benchmark": "permuted-synthetic", "hidden": [8]}
    )
    try:
        x = torch.rand(7, 64)
        out = svc.add_feedback(x, torch.arange(7), "a")
        engine = sa.create_engine(svc.store.url)
        with engine.connect() as con:
            stored = con.execute(sa.text("SELECT x, y FROM feedback ORDER BY id")).all()
        engine.dispose()
        assert out["accepted"] == 7 and len(stored) == 7
        assert torch.equal(
            torch.frombuffer(bytearray(b"".join(r.x for r in stored)), dtype=torch.float32).reshape(7, 64), x
        )
    finally:
        svc.close()
