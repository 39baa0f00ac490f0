"""The results store: every run is a row in an embedded SQLite database, plus a folder of artefacts.

Layout (default ``./lifelong-runs/``)::

    runs.db                 the table below (PRAGMA user_version = SCHEMA_VERSION)
    run-0001/result.json    the folder of run 1 of runs.db
    run-0002/...
    other.db                a second store in the same folder (``--store lifelong-runs/other.db``)
    other-run-0001/...      its run 1: each store has its own folders, so none overwrites another's

A run's folder is ``run-NNNN`` for a store named ``runs.db`` (so stores made before this layout read as
they always did) and ``<stem>-run-NNNN`` for any other name (``a.db`` -> ``a-run-0007``). start() makes
it and records its name in the row (column ``folder``, relative to the database's folder, so a store
moved with its folders, or renamed, still finds them). A folder that already exists and is not empty
(e.g. left by a deleted store) is never reused, emptied or overwritten: the run gets the first free name
``run-0007-2``, ``run-0007-3``, ... instead. Rows written before the column existed (schema 1) have no
name recorded; their folder is ``run-NNNN``, as it was then for every store name.

Table ``runs`` (JSON columns hold JSON text)::

    id              INTEGER PRIMARY KEY AUTOINCREMENT   the run id (ids are never reused)
    run_group       TEXT     runs of one CLI invocation (e.g. methods x seeds), or NULL
    status          TEXT     'running' | 'finished' | 'failed' | 'interrupted' (Ctrl-C)
    created         TEXT     UTC ISO time of start()
    finished        TEXT     UTC ISO time of finish(), fail() or interrupt(), else NULL
    pid, host       INTEGER, TEXT   the process that runs it (to tell a killed run from a live one)
    seed            INTEGER
    code_version    TEXT     lifelong.__version__, plus '+g<commit>' ('.dirty' if modified) in a git checkout
    config          JSON     every setting of the run, as given to start()
    method, benchmark, scenario   TEXT   set by finish()
    R               JSON     the (T+1) x T accuracy matrix; while running (and after a kill, failure or
                             Ctrl-C) only its first k+1 rows: R[0] and the k training stages finished so far
    curves          JSON     per-epoch accuracies [{"stage", "epoch", "accuracy": [per task]}]
    timings         JSON     Result.timings (train_s per task, eval_s, total_s) plus wall_s (start to finish)
    peak_memory_mb  REAL
    metrics         JSON     Result.metrics(): acc, bwt, fwt, forgetting, ...
    result          JSON     the whole result.json, so that the database alone can rebuild every Result
    message         TEXT     why a run failed or stopped
    folder          TEXT     the run's folder, relative to the database's folder (schema 2; NULL before)
    progress        JSON     {"stages_done", "n_stages", "task_names"}: how far training got (schema 2)
    config_hash     TEXT     a sweep's identity of the run: sha256 of its resolved settings (schema 3;
                             lifelong.sweep); unique within its group, NULL for runs of other commands

``result.json`` is Result.to_dict() plus run_id, group, seed, code_version and created; its fields are
documented in docs/result-schema.md.

Crash safety: result.json is written atomically (temp file, fsync, rename) and only then is the row
switched to 'finished', in one transaction. A process killed at any point therefore leaves the row
'running'; the row, not the presence of result.json, is the truth. Reads report a 'running' row whose
process (same host) no longer exists as 'killed'. Reads never write: the stored status stays 'running',
so a read-only copy of the store reads the same. The rows of R are written as each training stage ends
(progress(), one short transaction per stage), so a killed, failed or interrupted run keeps the part of
R it had finished. A killed or interrupted run can be taken over by another process with resume()
(`lifelong resume`), which goes on from the checkpoint in its folder (lifelong.checkpoint): the row is
'running' again, under that process's id, and its message says from where it was resumed.

Schema 1 and 2 stores (no ``folder``/``progress`` columns, no ``config_hash``) are read as they are; the
first write (start()) adds the missing columns and sets the version to 3, in one transaction.

The same store can live in PostgreSQL instead, for many workers on many machines: give a URL,
``Store("postgresql://user@host/db?folder=/shared/lifelong-runs")`` (lifelong.results.postgres). Every
method below behaves the same; the runs' folders go under ``folder``.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.errors import LifelongError
from lifelong.result import Result
from lifelong.results import postgres

DEFAULT_PATH = Path("lifelong-runs") / "runs.db"
SCHEMA_VERSION = 3
SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_group TEXT,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    finished TEXT,
    pid INTEGER,
    host TEXT,
    seed INTEGER,
    code_version TEXT,
    config TEXT,
    method TEXT,
    benchmark TEXT,
    scenario TEXT,
    R TEXT,
    curves TEXT,
    timings TEXT,
    peak_memory_mb REAL,
    metrics TEXT,
    result TEXT,
    message TEXT,
    folder TEXT,
    progress TEXT,
    config_hash TEXT
);
CREATE INDEX runs_by_group ON runs (run_group);
"""
# Listed by get()/runs(); the full result is only decoded by result().
_COLUMNS = (
    "id run_group status created finished pid host seed code_version config method benchmark scenario "
    "R curves timings peak_memory_mb metrics message"
).split()
_ADDED_IN_2 = ("folder", "progress")  # columns that schema 1 stores lack until their first write
_ADDED_IN_3 = ("config_hash",)  # and schema 2 stores
# One record per configuration of a sweep: what makes Store.claim() exact under concurrent workers.
_CONFIG_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS runs_by_config ON runs (run_group, config_hash) WHERE config_hash IS NOT NULL"
)
_JSON_COLUMNS = {"config", "R", "curves", "timings", "metrics", "progress"}
INTERRUPTED = "stopped by the user with Ctrl-C"
COULD_NOT_RESUME = "could not resume: "  # the message of a run whose resume was refused (it stays resumable)


class Store:
    """Records runs in ``path`` (a SQLite file; an existing folder means ``<folder>/runs.db``; a
    ``postgresql://`` URL means that database).

    ``create=False`` is for reading: a missing (or empty) store is then a one-line error, and no file or
    folder is made.

    ``name`` is the store as messages show it, ``home`` the folder of its runs' folders and of the default
    report folders, ``location`` what opens the same store from another process or folder."""

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH, create: bool = True):
        self._pg = postgres.PostgresDB(str(path)) if postgres.is_url(path) else None
        if self._pg is not None:
            self.path, self.home, self.name, self.location = None, self._pg.folder, self._pg.name, self._pg.location
            self._prefix = f"{self._pg.database}-run"
            self._version = self._pg.init_schema(create, SCHEMA_VERSION, _SCHEMA, _CONFIG_INDEX)
            return
        path = Path(path)
        if path.is_dir():
            path = path / "runs.db"
        self.path = path
        if path.exists():
            _check_header(path)
        elif not create:
            raise LifelongError(f"no results store at {path}; run an experiment first or give the right path")
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise LifelongError(
                    f"cannot create the results store at {path} ({e.strerror or e}); choose a writable location"
                ) from None
        self.home, self.name, self.location = path.parent, str(path), str(path.resolve())
        self._prefix = "run" if path.stem == "runs" else f"{path.stem}-run"
        self._init_schema(create)

    # -- writing -------------------------------------------------------------------------------------

    def start(self, config: dict, seed: int, group: str | None = None) -> int:
        """Record a new 'running' run, make its own folder and return its id."""
        self._upgrade()
        with self._connect() as con:
            run_id = self._insert(
                con,
                "INSERT INTO runs (run_group, status, created, pid, host, seed, code_version, config) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?, ?)",
                (group, _now(), os.getpid(), socket.gethostname(), int(seed), code_version(), _dumps(config)),
            )
            # Inside the transaction: if no folder can be made, no row is left behind either.
            con.execute("UPDATE runs SET folder = ? WHERE id = ?", (self._claim_folder(run_id), run_id))
        return run_id

    def claim(self, config: dict, seed: int, group: str, config_hash: str) -> tuple[int, bool]:
        """The run of configuration ``config_hash`` in ``group`` (a sweep, lifelong.sweep): when the group has
        none, a new 'running' run of this process, as start() records it, and (its id, True); else (the id of
        the one recorded, False), whatever its status. An insert-or-ignore on the unique (group, config_hash)
        in one BEGIN IMMEDIATE transaction: of any number of processes claiming one configuration at once,
        exactly one creates its record and the others get that record's id."""
        if not group or not config_hash:
            raise LifelongError("claim() needs a group and a config hash: together they name one record")
        self._upgrade()
        with self._connect() as con:
            if self._pg is None:  # PostgreSQL's ON CONFLICT waits for a competing insert by itself
                con.execute("BEGIN IMMEDIATE")  # taken before the read: no other writer between it and the insert
            row = (group, _now(), os.getpid(), socket.gethostname(), int(seed), code_version(), _dumps(config))
            run_id = self._insert(
                con,
                "INSERT INTO runs (run_group, status, created, pid, host, seed, code_version, config, "
                "config_hash) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (*row, config_hash),
            )
            if run_id is not None:
                con.execute("UPDATE runs SET folder = ? WHERE id = ?", (self._claim_folder(run_id), run_id))
                return run_id, True
            (run_id,) = con.execute(
                "SELECT id FROM runs WHERE run_group = ? AND config_hash = ?", (group, config_hash)
            ).fetchone()
        return run_id, False

    def progress(self, run_id: int, R, task_names: list[str], n_stages: int) -> None:
        """Record the rows of R finished so far (R[0] and one per finished training stage), so that a
        run that never finishes keeps them. One short transaction: call it once per stage, not per batch."""
        self._upgrade()
        progress = {"stages_done": len(R) - 1, "n_stages": int(n_stages), "task_names": list(task_names)}
        with self._connect() as con:
            con.execute(
                "UPDATE runs SET R = ?, progress = ? WHERE id = ? AND status = 'running'",
                (_dumps(R), _dumps(progress), int(run_id)),
            )

    def finish(self, run_id: int, result: Result) -> None:
        """Write result.json atomically, then mark the run finished in one transaction."""
        self._upgrade()
        row = self._row(run_id)
        if row["status"] != "running":
            raise LifelongError(f"run {run_id} is already {row['status']}; start a new run to record another result")
        finished = _now()
        document = result.to_dict() | {
            "run_id": run_id,
            "group": row["run_group"],
            "seed": row["seed"],
            "code_version": row["code_version"],
            "created": row["created"],
        }
        folder = row["folder"] or _legacy_name(run_id)
        if not _is_ours(self.home / folder / "result.json", document):
            # Someone put another result.json there since start(): keep it, and this run, elsewhere.
            folder = self._claim_folder(run_id)
        _write_atomically(self.home / folder / "result.json", _dumps(document, indent=2))
        wall_s = (_parse(finished) - _parse(row["created"])).total_seconds()
        n_stages = result.n_stages if result.n_stages is not None else len(result.task_names)
        progress = {"stages_done": n_stages, "n_stages": n_stages, "task_names": list(result.task_names)}
        with self._connect() as con:
            cur = con.execute(
                "UPDATE runs SET status = 'finished', finished = ?, method = ?, benchmark = ?, scenario = ?, "
                "R = ?, curves = ?, timings = ?, peak_memory_mb = ?, metrics = ?, result = ?, folder = ?, "
                "progress = ? WHERE id = ? AND status = 'running'",
                (
                    finished,
                    result.method,
                    result.benchmark,
                    result.scenario,
                    _dumps(document["R"]),
                    _dumps(result.curves),
                    _dumps(dict(result.timings) | {"wall_s": wall_s}),
                    float(result.peak_memory_mb),
                    _dumps(document["metrics"]),
                    _dumps(document),
                    folder,
                    _dumps(progress),
                    run_id,
                ),
            )
            if cur.rowcount != 1:
                raise LifelongError(f"run {run_id} was ended by another process meanwhile; its result.json is kept")

    def fail(self, run_id: int, message: str) -> None:
        """Mark a running run failed (e.g. it diverged), with the reason; the rows of R recorded by
        progress() stay."""
        self._end(run_id, "failed", message)

    def interrupt(self, run_id: int, message: str = INTERRUPTED) -> None:
        """Mark a running run stopped by the user (Ctrl-C), or a resume that could not start (``message``
        says why); the rows of R recorded by progress() stay, and `lifelong resume` can go on with it."""
        self._end(run_id, "interrupted", message)

    def resume(self, run_id: int, note: str) -> None:
        """Take over a stopped run to go on with it in this process (`lifelong resume`): one killed (its row
        still 'running', its process gone) or interrupted. The row is 'running' again, with this process's
        id, and ``note`` (e.g. 'resumed after task 2 of 5') added to its message. A check and a switch in one
        transaction: of two processes resuming the same run at once, one is refused."""
        self._upgrade()
        row = self.get(run_id)
        why = not_resumable(row)
        if why:
            raise LifelongError(why)
        kept = row["message"] if not (row["message"] or "").startswith(COULD_NOT_RESUME) else None
        message = "; ".join(m for m in (kept, note) if m)
        same = "IS" if self._pg is None else "IS NOT DISTINCT FROM"  # equal, NULLs included
        with self._connect() as con:
            cur = con.execute(
                "UPDATE runs SET status = 'running', pid = ?, host = ?, finished = NULL, message = ? "
                f"WHERE id = ? AND status IN ('running', 'interrupted') AND pid {same} ? AND host {same} ?",
                (os.getpid(), socket.gethostname(), message, run_id, row["pid"], row["host"]),
            )
            if cur.rowcount != 1:
                raise LifelongError(f"run {run_id} was taken over by another process just now; leave it to that one")

    # -- reading -------------------------------------------------------------------------------------

    def folder(self, run_id: int) -> Path:
        """The run's artefact folder (``run-0007`` for runs.db, ``a-run-0007`` for a.db), next to the
        database."""
        return self.home / (self._row(run_id)["folder"] or _legacy_name(run_id))

    def get(self, run_id: int) -> dict[str, Any]:
        """The run's row with JSON columns decoded, 'group' for run_group and 'folder' (the full path);
        a dead 'running' run reads as status 'killed'."""
        return self._decode(self._row(run_id))

    def result(self, run_id: int) -> Result:
        """The finished run's Result."""
        row = self.get(run_id)
        if row["status"] != "finished":
            why = f": {row['message']}" if row["message"] else ""
            raise LifelongError(f"run {run_id} is {row['status']}{why}; it has no result (pick a finished run)")
        with self._connect() as con:
            (text,) = con.execute("SELECT result FROM runs WHERE id = ?", (run_id,)).fetchone()
        return Result.from_dict(json.loads(text))

    def runs(self, group: str | None = None) -> list[dict[str, Any]]:
        """Every run (or every run of ``group``), oldest first, as get() returns them."""
        where, args = ("WHERE run_group = ?", (group,)) if group is not None else ("", ())
        with self._connect() as con:
            rows = con.execute(f"SELECT {self._select(con)} FROM runs {where} ORDER BY id", args).fetchall()
        return [self._decode(dict(row)) for row in rows]

    def group_runs(self, group: str) -> list[dict[str, Any]]:
        """The runs of one group, oldest first; an unknown group is an error."""
        rows = self.runs(group)
        if not rows:
            raise LifelongError(f"no runs in group {group!r} in {self.name}; check the group name")
        return rows

    def latest_group(self) -> str:
        """The group of the most recent run that has one."""
        with self._connect() as con:
            row = con.execute(
                "SELECT run_group FROM runs WHERE run_group IS NOT NULL ORDER BY id DESC LIMIT 1"
            ).fetchone()
        if row is None:
            raise LifelongError(f"no grouped runs in {self.name} yet; run an experiment first")
        return row[0]

    def resolve(self, ref: str | int) -> int:
        """A run id from '7', 'run-0007' or 'latest'."""
        text = str(ref).strip().lower()
        with self._connect() as con:
            lo, hi = con.execute("SELECT MIN(id), MAX(id) FROM runs").fetchone()
        if hi is None:
            raise LifelongError(f"no runs in {self.name} yet; run an experiment first")
        if text == "latest":
            return hi
        number = text.removeprefix("run-")
        if not number.isdigit():
            raise LifelongError(f"{ref!r} is not a run; give a run id such as 7, run-0007 or 'latest'")
        self._row(int(number))  # raises if absent
        return int(number)

    # -- internals -----------------------------------------------------------------------------------

    def _row(self, run_id: int) -> dict[str, Any]:
        with self._connect() as con:
            row = con.execute(f"SELECT {self._select(con)} FROM runs WHERE id = ?", (int(run_id),)).fetchone()
            if row is None:
                lo, hi = con.execute("SELECT MIN(id), MAX(id) FROM runs").fetchone()
                known = f"runs {lo}..{hi} exist" if hi is not None else "it holds no runs yet"
                raise LifelongError(f"no run {run_id} in {self.name} ({known}); give an existing run id or 'latest'")
        return dict(row)

    def _end(self, run_id: int, status: str, message: str) -> None:
        row = self._row(run_id)
        if row["status"] != "running":
            raise LifelongError(f"run {run_id} is already {row['status']}; only a running run can be ended")
        with self._connect() as con:
            con.execute(
                "UPDATE runs SET status = ?, finished = ?, message = ? WHERE id = ? AND status = 'running'",
                (status, _now(), str(message), run_id),
            )

    def _decode(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {k: (json.loads(v) if k in _JSON_COLUMNS and v is not None else v) for k, v in row.items()}
        out["group"] = out.pop("run_group")
        out["folder"] = str(self.home / (out["folder"] or _legacy_name(out["id"])))
        if out["status"] == "running" and out["host"] == socket.gethostname() and not _alive(out["pid"]):
            out["status"] = "killed"
        return out

    def _claim_folder(self, run_id: int) -> str:
        """Make the run's own folder and return its name: ``<prefix>-NNNN``, or ``...-2``, ``...-3`` when
        that name is taken by a non-empty folder (or a file), which is left untouched."""
        base = f"{self._prefix}-{int(run_id):04d}"
        try:
            self.home.mkdir(parents=True, exist_ok=True)  # a PostgreSQL store's folder is made on its first run
        except OSError as e:
            raise LifelongError(f"cannot create {self.home} ({e.strerror or e}); choose a writable folder") from None
        for n in range(1, 1000):
            name = base if n == 1 else f"{base}-{n}"
            path = self.home / name
            try:
                path.mkdir()
                return name
            except FileExistsError:
                with contextlib.suppress(OSError):
                    if path.is_dir() and not any(path.iterdir()):
                        return name  # an empty folder holds nothing to lose
            except OSError as e:
                raise LifelongError(f"cannot create {path} ({e.strerror or e}); check permissions") from None
        raise LifelongError(f"{self.home / base} and 998 variants of it exist; move old run folders aside")

    def _upgrade(self) -> None:
        """Schema 1 -> 2: add the folder and progress columns; 2 -> 3: the config_hash column and its unique
        index (a no-op for a current store)."""
        if self._version >= SCHEMA_VERSION:
            return
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # another process may be upgrading it at the same moment
            columns = {r["name"] for r in con.execute("PRAGMA table_info(runs)")}
            for name in (*_ADDED_IN_2, *_ADDED_IN_3):
                if name not in columns:
                    con.execute(f"ALTER TABLE runs ADD COLUMN {name} TEXT")
            con.execute(_CONFIG_INDEX)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._version = SCHEMA_VERSION

    def _init_schema(self, create: bool) -> None:
        with self._connect() as con:
            # Reading sqlite_master first makes SQLite check the file before anything is written.
            tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            (version,) = con.execute("PRAGMA user_version").fetchone()
            if version == 0 and not tables and not create:  # an empty file: reading must not write to it
                raise LifelongError(f"no results store at {self.path} (the file is empty); run an experiment first")
            if version == 0 and not tables:
                version = SCHEMA_VERSION
                con.execute("BEGIN IMMEDIATE")  # another process may be creating it at the same moment
                if not {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            con.execute(statement)
                    con.execute(_CONFIG_INDEX)
                    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif "runs" not in tables or version == 0:
                # Someone else's SQLite database: adding our table to it would be damage.
                raise LifelongError(
                    f"{self.path} is a SQLite database but not a lifelong results store; give another path"
                )
            elif version > SCHEMA_VERSION:
                raise LifelongError(
                    f"{self.path} was written by a newer lifelong (schema {version} > {SCHEMA_VERSION}); "
                    "upgrade lifelong to read it"
                )
        self._version = version

    def _select(self, con) -> str:
        """The columns get()/runs() read; an older store (read, never upgraded by reading) lacks those added
        since."""
        # PostgreSQL stores are made at the current version: no query per read. A SQLite file may have been
        # upgraded by another process since this one opened it.
        version = self._version if self._pg is not None else con.execute("PRAGMA user_version").fetchone()[0]
        since = {name: 2 for name in _ADDED_IN_2} | {name: 3 for name in _ADDED_IN_3}
        added = [name if version >= since[name] else f"NULL AS {name}" for name in since]
        return ", ".join([*_COLUMNS, *added])

    def _insert(self, con, sql: str, params: tuple) -> int | None:
        """Run an INSERT of one row; the new row's id, or None when ON CONFLICT DO NOTHING skipped it."""
        if self._pg is not None:
            row = con.execute(sql + " RETURNING id", params).fetchone()
            return None if row is None else int(row[0])
        cur = con.execute(sql, params)
        return cur.lastrowid if cur.rowcount == 1 else None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection: commits on success, rolls back on error, always closes, and turns
        the database's errors into one-line LifelongErrors."""
        if self._pg is not None:
            with self._pg.connect() as con:
                yield con
            return
        con = None
        try:
            # timeout: wait for another process's write to finish instead of failing (parallel runs).
            con = sqlite3.connect(self.path, timeout=30)
            con.row_factory = sqlite3.Row
            with con:
                yield con
        except sqlite3.Error as e:
            raise LifelongError(_explain(self.path, e)) from None
        finally:
            if con is not None:
                con.close()


def code_version() -> str:
    """lifelong.__version__, plus '+g<commit>' (and '.dirty') when the package is tracked in a git checkout."""
    import lifelong  # here, not at the top: lifelong/__init__ may import this module

    return lifelong.__version__ + _git_suffix(str(Path(lifelong.__file__).parent))


@functools.cache
def _git_suffix(package_dir: str) -> str:
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=package_dir, capture_output=True, text=True, timeout=10)

    try:
        # Tracked, not merely inside some checkout (a venv's site-packages can sit inside a project repo).
        if git("ls-files", "--error-unmatch", "--", "__init__.py").returncode != 0:
            return ""
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return ""
        dirty = git("diff", "--quiet", "HEAD", "--", ".").returncode == 1
        return f"+g{head.stdout.strip()}" + (".dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):  # no git installed, or it hangs
        return ""


def _check_header(path: Path) -> None:
    """Refuse a file that is not a SQLite database before SQLite touches it (it must never be overwritten)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise LifelongError(
            f"cannot read the results store {path} ({e.strerror or e}); check its permissions"
        ) from None
    if head and head != SQLITE_HEADER:  # an empty file is a valid, empty SQLite database
        raise LifelongError(f"{path} is not a lifelong results store (not a SQLite database); give another path")


def _explain(path: Path, e: sqlite3.Error) -> str:
    text = str(e)
    if "readonly" in text or "read-only" in text:
        return f"the results store {path} is read-only; make it writable or choose another location"
    if "locked" in text or "busy" in text:
        return f"the results store {path} is locked by another process; wait for it or use another store"
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return f"the results store {path} is corrupt ({text}); move it aside (a new one is made) or restore a backup"
    if "unable to open" in text:
        return f"cannot open the results store {path} ({text}); check the path and its permissions"
    return f"the results store {path} failed: {text}"


def not_resumable(row: dict[str, Any]) -> str | None:
    """Why the run of ``row`` (as get() gives it) cannot be resumed, in one line; None when it can: it was
    killed (its process is gone) or interrupted."""
    run_id, status = row["id"], row["status"]
    if status == "finished":
        return f"run {run_id} finished: nothing to resume (`lifelong show {run_id}` shows its result)"
    if status == "failed":
        return (
            f"run {run_id} failed ({row['message']}), and resuming it would repeat the same computation; "
            "start a new run with other settings"
        )
    if status == "running" and row["host"] != socket.gethostname():
        return (
            f"run {run_id} is recorded as running on {row['host']}, and from here lifelong cannot tell whether it "
            "still is; resume it on that machine"
        )
    if status == "running":
        return f"run {run_id} is still running (process {row['pid']}); stop it first, or let it finish"
    return None


def describe_progress(row: dict[str, Any]) -> str | None:
    """How far a run's training got, e.g. 'finished 3 of 5 tasks'; None when nothing was recorded."""
    progress = row.get("progress")
    if not progress:
        return None
    done, total = progress["stages_done"], progress["n_stages"]
    unit = "tasks" if total == len(progress["task_names"]) else "training stages"
    return f"finished {done} of {total} {unit}"


def _legacy_name(run_id: int) -> str:
    """The folder of a schema 1 row: every store used ``run-NNNN`` then."""
    return f"run-{int(run_id):04d}"


def _is_ours(path: Path, document: dict) -> bool:
    """True when ``path`` is absent or is this very run's result.json (same run id and start time)."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    return isinstance(old, dict) and all(old.get(k) == document[k] for k in ("run_id", "created"))


def _alive(pid: int | None) -> bool:
    if pid is None or os.name != "posix":  # on Windows os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the whole new one, never a part, even if the process is killed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX; not possible everywhere)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _json_default(obj: Any) -> Any:
    # Configs and results may carry numpy scalars/arrays, tensors or paths.
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON")


def _dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, default=_json_default, indent=indent)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _parse(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)
