"""The service's store: tasks, feedback, model versions, the serving history, API keys, settings.

SQLAlchemy Core (no ORM) over SQLite (the default, embedded: ``sqlite:///<state_dir>/serve.db``) or
PostgreSQL (``postgresql://user@host:port/db``, rewritten to the psycopg 3 driver). Tables::

    meta      key -> value (JSON text): the schema version, the model's config, input shape, classes
    tasks     id, name (unique), created
    feedback  id, task, x (float32 bytes, little-endian), y, guard (held out), created,
              seen (the version whose candidate first trained on it; NULL = the learner's backlog)
    versions  id, parent, status, created, method, task, guard (JSON {task: accuracy}), reason,
              trained_on, weights + weights_sha256, state + state_sha256 (file names in state_dir/weights),
              info (JSON: the learner's own bookkeeping for the version, see learner.py)
    serving   seq, version, at, how (initial | learner | admin | rollback), undone (rolled back)
    api_keys  hash (sha256 of the key), name, scopes (comma-separated), created

Durability: every write is one transaction that has committed when the method returns (SQLite in WAL
mode with ``synchronous=FULL``, so a commit survives a power cut, not only a killed process; PostgreSQL
commits durably by default). SQLite write transactions start with ``BEGIN IMMEDIATE``: a writer takes
the lock first instead of failing to upgrade a read lock, and waits up to the busy timeout for another.

The backlog is "rows with ``seen`` NULL", not "ids above a cursor": PostgreSQL hands out ids when a row
is inserted, not when it commits, so a row with a smaller id can commit after one with a larger id, and
a cursor would skip it for good. The learner marks exactly the rows it trained on.

Versions' statuses: ``candidate`` (being trained or evaluated), ``rejected`` (failed the promotion rule;
the reason says why; an admin may still promote it), ``serving`` (answers predictions now), ``promoted``
(served once, since replaced by a newer one), ``retired`` (taken out of service by a rollback).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from lifelong.errors import option
from lifelong.serve.errors import Conflict, NotFound, ServeError, Unavailable

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
IN_CHUNK = 500  # ids per IN (...) list

metadata = sa.MetaData()
META = sa.Table(
    "meta", metadata, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.Text, nullable=False)
)
TASKS = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)
FEEDBACK = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task", sa.Integer, sa.ForeignKey("tasks.id"), nullable=False),
    sa.Column("x", sa.LargeBinary, nullable=False),
    sa.Column("y", sa.Integer, nullable=False),
    sa.Column("guard", sa.Boolean, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("seen", sa.Integer, nullable=True),
    sa.Index("feedback_backlog", "seen"),
    sqlite_autoincrement=True,
)
VERSIONS = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("parent", sa.Integer, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("task", sa.Integer, nullable=True),
    sa.Column("guard", sa.Text, nullable=False, default="{}"),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("trained_on", sa.Integer, nullable=False, default=0),
    sa.Column("weights", sa.Text, nullable=True),
    sa.Column("weights_sha256", sa.String(64), nullable=True),
    sa.Column("state", sa.Text, nullable=True),
    sa.Column("state_sha256", sa.String(64), nullable=True),
    sa.Column("info", sa.Text, nullable=False, default="{}"),
    sqlite_autoincrement=True,
)
SERVING = sa.Table(
    "serving",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("how", sa.String(16), nullable=False),
    sa.Column("undone", sa.Boolean, nullable=False, default=False),
    sqlite_autoincrement=True,
)
API_KEYS = sa.Table(
    "api_keys",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, default=""),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)

STATUSES = ("candidate", "rejected", "serving", "promoted", "retired")


def database_url(db: str) -> sa.URL:
    """``sqlite:///PATH`` or ``postgresql://…`` (``postgres://`` too), with psycopg 3 as the driver."""
    try:
        url = make_url(db)
    except Exception:
        raise ServeError(
            f"{option('db')} {db!r} is not a database URL; give sqlite:///PATH or postgresql://user@host:port/db"
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and url.drivername in ("sqlite", "sqlite+pysqlite"):
        if not url.database or url.database == ":memory:":
            raise ServeError(
                f"{option('db')} {db!r} names no file; give sqlite:///PATH (the store must outlive the process)"
            )
        return url
    raise ServeError(f"{option('db')} {db!r}: only sqlite:///PATH and postgresql://… are supported")


def describe(url: sa.URL) -> str:
    """The URL without its password, for messages."""
    return url.render_as_string(hide_password=True)


class Store:
    """Transactions over the tables above; every write has committed when its method returns."""

    def __init__(self, db: str):
        self.url = database_url(db)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        if self.sqlite:
            self.engine = sa.create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=8, max_overflow=8)
        try:
            metadata.create_all(self.engine)
            with self.write() as con:
                found = con.execute(sa.select(META.c.value).where(META.c.key == "schema")).scalar()
                if found is None:
                    con.execute(META.insert().values(key="schema", value=str(SCHEMA_VERSION)))
                elif int(found) != SCHEMA_VERSION:
                    raise ServeError(
                        f"the store {describe(self.url)} has schema {found}, this lifelong reads {SCHEMA_VERSION}; "
                        "use the lifelong version that made it or a new store"
                    )
        except sa.exc.SQLAlchemyError as e:
            self.engine.dispose()
            raise Unavailable(f"cannot open the store {describe(self.url)} ({_why(e)}); check {option('db')}") from None

    def close(self) -> None:
        self.engine.dispose()

    # ---- transactions -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One write transaction, committed on leaving the block (rolled back on an error)."""
        with self._transaction(write=True) as con:
            yield con

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self._transaction(write=False) as con:
            yield con

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as con:
                con.info["write"] = write
                with con.begin():
                    yield con
        except ServeError:
            raise
        except sa.exc.IntegrityError:
            raise
        except sa.exc.SQLAlchemyError as e:
            raise Unavailable(
                f"the store {describe(self.url)} failed ({_why(e)}); retry, or check the database"
            ) from None

    # ---- meta ---------------------------------------------------------------------------------------

    def meta(self) -> dict:
        with self.read() as con:
            rows = con.execute(sa.select(META.c.key, META.c.value).where(META.c.key != "schema")).all()
        return {k: json.loads(v) for k, v in rows}

    def init_meta(self, values: dict) -> dict:
        """Record ``values`` unless the store already has them (a second process that raced us wins
        nothing: the first writer's values stay); returns what the store holds afterwards."""
        with self.write() as con:
            have = {k for (k,) in con.execute(sa.select(META.c.key))}
            new = [{"key": k, "value": json.dumps(v)} for k, v in values.items() if k not in have]
            if new:
                con.execute(META.insert(), new)
        return self.meta()

    # ---- tasks --------------------------------------------------------------------------------------

    def add_task(self, name: str) -> dict:
        with self.write() as con:
            if con.execute(sa.select(TASKS.c.id).where(TASKS.c.name == name)).first() is not None:
                raise Conflict(
                    f"task {name!r} exists already; send its feedback with task={name!r}, or pick a new name"
                )
            return self._insert_task(con, name)

    def _insert_task(self, con: sa.Connection, name: str) -> dict:
        now = time.time()
        new_id = con.execute(TASKS.insert().values(name=name, created=now).returning(TASKS.c.id)).scalar_one()
        return {"id": new_id, "name": name, "created": now}

    def tasks(self) -> list[dict]:
        """Every task, oldest first, with its feedback and guard counts."""
        counts = (
            sa.select(
                FEEDBACK.c.task,
                sa.func.count().label("n"),
                sa.func.sum(sa.case((FEEDBACK.c.guard, 1), else_=0)).label("g"),
            )
            .group_by(FEEDBACK.c.task)
            .subquery()
        )
        query = (
            sa.select(TASKS.c.id, TASKS.c.name, TASKS.c.created, counts.c.n, counts.c.g)
            .select_from(TASKS.outerjoin(counts, counts.c.task == TASKS.c.id))
            .order_by(TASKS.c.id)
        )
        with self.read() as con:
            rows = con.execute(query).all()
        return [
            {"id": i, "name": name, "created": created, "feedback": int(n or 0), "guard": int(g or 0)}
            for i, name, created, n, g in rows
        ]

    # ---- feedback -----------------------------------------------------------------------------------

    def add_feedback(self, xs: Sequence[bytes], ys: Sequence[int], guards: Sequence[bool], task: str | None) -> dict:
        """Insert a batch of feedback into ``task`` (a new name opens a new task; None: the newest task,
        or a first task ``task-1``) in one transaction; returns once it has committed."""
        for attempt in range(3):  # another process may open the same new task between our read and insert
            try:
                return self._add_feedback(xs, ys, guards, task)
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise Conflict(f"task {task!r} could not be opened (a concurrent writer); send again") from None
        raise AssertionError("unreachable")

    def _add_feedback(self, xs, ys, guards, task) -> dict:
        now = time.time()
        with self.write() as con:
            if task is None:
                row = con.execute(sa.select(TASKS.c.id, TASKS.c.name).order_by(TASKS.c.id.desc()).limit(1)).first()
                found = None if row is None else {"id": row.id, "name": row.name}
                name = "task-1"
            else:
                row = con.execute(sa.select(TASKS.c.id, TASKS.c.name).where(TASKS.c.name == task)).first()
                found = None if row is None else {"id": row.id, "name": row.name}
                name = task
            if found is None:
                found = self._insert_task(con, name)
            rows = [
                {"task": found["id"], "x": x, "y": int(y), "guard": bool(g), "created": now}
                for x, y, g in zip(xs, ys, guards, strict=True)
            ]
            ids = con.execute(FEEDBACK.insert().returning(FEEDBACK.c.id, sort_by_parameter_order=True), rows)
            ids = [i for (i,) in ids]
        return {"accepted": len(ids), "task": found["name"], "ids": [min(ids), max(ids)] if ids else []}

    def feedback(self, ids: Sequence[int] | None = None) -> list[sa.Row]:
        """Feedback rows (id, task, x, y, guard, created, seen) in id order: all, or those of ``ids``."""
        query = sa.select(FEEDBACK).order_by(FEEDBACK.c.id)
        if ids is None:
            with self.read() as con:
                return con.execute(query).all()
        ids, out = sorted(ids), []
        with self.read() as con:
            for start in range(0, len(ids), IN_CHUNK):
                out += con.execute(query.where(FEEDBACK.c.id.in_(ids[start : start + IN_CHUNK]))).all()
        return out

    def backlog_ids(self) -> list[int]:
        with self.read() as con:
            query = sa.select(FEEDBACK.c.id).where(FEEDBACK.c.seen.is_(None)).order_by(FEEDBACK.c.id)
            return [i for (i,) in con.execute(query)]

    def backlog(self) -> tuple[int, float | None]:
        """How many feedback rows no candidate has trained on yet, and when the oldest arrived."""
        query = sa.select(sa.func.count(), sa.func.min(FEEDBACK.c.created)).where(FEEDBACK.c.seen.is_(None))
        with self.read() as con:
            n, oldest = con.execute(query).one()
        return int(n), oldest

    def counts(self) -> dict:
        with self.read() as con:
            feedback = con.execute(sa.select(sa.func.count()).select_from(FEEDBACK)).scalar_one()
            tasks = con.execute(sa.select(sa.func.count()).select_from(TASKS)).scalar_one()
            by_status = dict(
                con.execute(sa.select(VERSIONS.c.status, sa.func.count()).group_by(VERSIONS.c.status)).all()
            )
            promoted = con.execute(
                sa.select(sa.func.count()).select_from(SERVING).where(SERVING.c.how.in_(("learner", "admin")))
            ).scalar_one()
        return {
            "tasks": int(tasks),
            "feedback": int(feedback),
            "versions": int(sum(by_status.values())),
            "promoted": int(promoted),
            "rejected": int(by_status.get("rejected", 0)),
        }

    # ---- versions -----------------------------------------------------------------------------------

    def new_version(self, parent: int | None, method: str, task: int | None, status: str = "candidate") -> int:
        with self.write() as con:
            values = {"parent": parent, "status": status, "created": time.time(), "method": method, "task": task}
            return con.execute(VERSIONS.insert().values(**values).returning(VERSIONS.c.id)).scalar_one()

    def finish_version(
        self,
        version: int,
        *,
        status: str,
        guard: dict,
        reason: str,
        trained_on: int,
        files: dict,
        info: dict,
        seen: Sequence[int] = (),
        serve: str | None = None,
        expect_serving: int | None = None,
    ) -> bool:
        """Record an evaluated candidate, mark the feedback it trained on (``seen``) and, with ``serve``
        (how it came to serve), make it the serving version: all in one transaction. With
        ``expect_serving`` the promotion only happens if that version is still serving (else the
        candidate is recorded rejected and False is returned)."""
        with self.write() as con:
            if serve is not None and expect_serving is not None and self._serving(con) != expect_serving:
                status, serve = "rejected", None
                reason = f"version {self._serving(con)} started serving while it trained; {reason}"
            con.execute(
                VERSIONS.update()
                .where(VERSIONS.c.id == version)
                .values(
                    status=status,
                    guard=json.dumps(guard),
                    reason=reason,
                    trained_on=trained_on,
                    info=json.dumps(info),
                    **files,
                )
            )
            ids = list(seen)
            for start in range(0, len(ids), IN_CHUNK):
                chunk = ids[start : start + IN_CHUNK]
                con.execute(
                    FEEDBACK.update().where(FEEDBACK.c.id.in_(chunk), FEEDBACK.c.seen.is_(None)).values(seen=version)
                )
            if serve is not None:
                self._serve(con, version, serve)
        return serve is not None

    def set_guard(self, version: int, guard: dict) -> None:
        """The serving version's guard accuracies, measured again on the grown guard sets."""
        with self.write() as con:
            con.execute(VERSIONS.update().where(VERSIONS.c.id == version).values(guard=json.dumps(guard)))

    def version(self, version: int) -> dict:
        with self.read() as con:
            row = con.execute(sa.select(VERSIONS).where(VERSIONS.c.id == version)).first()
        if row is None:
            raise NotFound(f"no version {version}; GET the versions list for the existing ones")
        return _version_dict(row)

    def versions(self) -> list[dict]:
        with self.read() as con:
            rows = con.execute(sa.select(VERSIONS).order_by(VERSIONS.c.id)).all()
        return [_version_dict(r) for r in rows]

    def abandon_candidates(self, reason: str) -> int:
        """Candidates left by a process that stopped mid-training: recorded rejected with ``reason``
        (their feedback stays in the backlog, so the next candidate trains on it)."""
        with self.write() as con:
            done = con.execute(
                VERSIONS.update().where(VERSIONS.c.status == "candidate").values(status="rejected", reason=reason)
            )
            return done.rowcount

    # ---- serving history ----------------------------------------------------------------------------

    def serving(self) -> int | None:
        with self.read() as con:
            return self._serving(con)

    def _serving(self, con: sa.Connection) -> int | None:
        query = sa.select(SERVING.c.version).where(SERVING.c.undone.is_(False)).order_by(SERVING.c.seq.desc()).limit(1)
        return con.execute(query).scalar()

    def serve(self, version: int, how: str, expect: int | None = None) -> int | None:
        """Make ``version`` the serving one (its files must exist: the caller loaded them); returns the
        version served before. With ``expect``, only if that one is still serving (else Conflict)."""
        with self.write() as con:
            before = self._serving(con)
            if expect is not None and before != expect:
                raise Conflict(f"version {before} started serving meanwhile; look at the versions and try again")
            self._serve(con, version, how)
            return before

    def _serve(self, con: sa.Connection, version: int, how: str) -> None:
        before = self._serving(con)
        if before is not None and before != version:
            con.execute(VERSIONS.update().where(VERSIONS.c.id == before).values(status="promoted"))
        con.execute(VERSIONS.update().where(VERSIONS.c.id == version).values(status="serving"))
        con.execute(SERVING.insert().values(version=version, at=time.time(), how=how, undone=False))

    def previous_serving(self, current: int) -> int:
        """The version a rollback from ``current`` would serve (to load its weights before rolling back)."""
        with self.read() as con:
            return self._previous(self._serving_history(con), current).version

    @staticmethod
    def _serving_history(con: sa.Connection) -> list:
        """The entries of the serving history not undone, newest first: (seq, version)."""
        query = sa.select(SERVING.c.seq, SERVING.c.version).where(SERVING.c.undone.is_(False))
        return con.execute(query.order_by(SERVING.c.seq.desc())).all()

    @staticmethod
    def _previous(entries: list, current: int):
        previous = next((e for e in entries[1:] if e.version != current), None)
        if previous is None:
            raise Conflict(f"version {current} is the first version served; there is none before it to roll back to")
        return previous

    def rollback(self, expect: int) -> tuple[int, int]:
        """Undo the current entry of the serving history: the version served before it serves again and
        the current one is retired. Returns (retired, now serving)."""
        with self.write() as con:
            entries = self._serving_history(con)
            if not entries or entries[0].version != expect:
                raise Conflict("the serving version changed meanwhile; look at the versions and try again")
            previous = self._previous(entries, expect)
            undo = [e.seq for e in entries if e.seq > previous.seq]
            con.execute(SERVING.update().where(SERVING.c.seq.in_(undo)).values(undone=True))
            con.execute(VERSIONS.update().where(VERSIONS.c.id == expect).values(status="retired"))
            con.execute(VERSIONS.update().where(VERSIONS.c.id == previous.version).values(status="serving"))
            return expect, previous.version

    # ---- API keys -----------------------------------------------------------------------------------

    def add_key(self, digest: str, name: str, scopes: Sequence[str]) -> None:
        with self.write() as con:
            con.execute(
                API_KEYS.insert().values(hash=digest, name=name, scopes=",".join(sorted(scopes)), created=time.time())
            )

    def key_scopes(self, digest: str) -> set[str] | None:
        with self.read() as con:
            found = con.execute(sa.select(API_KEYS.c.scopes).where(API_KEYS.c.hash == digest)).scalar()
        return None if found is None else {s for s in found.split(",") if s}


def _version_dict(row: sa.Row) -> dict:
    out = dict(row._mapping)
    out["guard"] = json.loads(out["guard"] or "{}")
    out["info"] = json.loads(out["info"] or "{}")
    out["version"] = out.pop("id")
    return out


def _sqlite_connect(dbapi_con, _record) -> None:
    dbapi_con.isolation_level = None  # the begin listener emits BEGIN itself (pysqlite's own is lazy)
    cursor = dbapi_con.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns, even after a power cut
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(con: sa.Connection) -> None:
    con.exec_driver_sql("BEGIN IMMEDIATE" if con.info.get("write") else "BEGIN")


def _why(e: Exception) -> str:
    """The driver's first line, without SQLAlchemy's background link."""
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return text[0] if text else type(e).__name__
