"""The results store's PostgreSQL backend: the same table and the same Store API as the SQLite file, for a
sweep whose workers sit on several machines and write at once (issue 12).

    lifelong sweep sweep.yaml --executor ray --address auto \\
        --store 'postgresql://lifelong@db-host:5432/runs?folder=/shared/lifelong-runs'

A store is named by a libpq URL (``postgresql://`` or ``postgres://``; a SQLAlchemy-style
``postgresql+psycopg://`` is read the same). Its one parameter of ours, ``folder``, is where the runs'
folders (result.json, checkpoints) and the default report folders go: ``./lifelong-runs`` by default,
made absolute when the store is opened, so that a worker starting in another folder writes to the same
place. On a cluster it should name a shared file system: the database alone rebuilds every Result (the
``result`` column holds the whole result.json), but `lifelong resume` needs the checkpoint in the run's
folder. Every other parameter (``sslmode``, ``connect_timeout``, ...) goes to libpq as given.

What differs from SQLite, and why it is still exact under concurrent writers:

- ids come from a sequence (``BIGSERIAL``), never reused, as SQLite's AUTOINCREMENT;
- Store.claim() inserts with ``ON CONFLICT DO NOTHING`` against the same partial unique index on
  (run_group, config_hash): PostgreSQL makes a second inserter wait for the first's commit and then
  skip, so exactly one record per configuration exists, and the SELECT that follows (a new snapshot
  under READ COMMITTED) sees it;
- the schema version lives in a one-row table ``lifelong_store`` (SQLite keeps it in PRAGMA
  user_version), and the first process to open an empty database creates both tables under an advisory
  lock, so that workers starting together do not race;
- a database that has a ``runs`` table but no ``lifelong_store`` is someone else's: it is refused, never
  altered.

psycopg 3 is an optional dependency (``pip install 'lifelong[postgres]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lifelong.errors import LifelongError

SCHEMES = ("postgresql", "postgres")
PSYCOPG_PIP = "pip install 'lifelong[postgres]' (or pip install 'psycopg[binary]')"
DEFAULT_FOLDER = Path("lifelong-runs")
_LOCK_KEY = 0x6C6966656C6F6E67  # pg_advisory_xact_lock's key while the schema is created ('lifelong')

# SQLite's types, as PostgreSQL spells them: ids from a sequence, 64-bit seeds, double precision.
_TYPES = {
    "INTEGER PRIMARY KEY AUTOINCREMENT": "BIGSERIAL PRIMARY KEY",
    "seed INTEGER": "seed BIGINT",
    " REAL": " DOUBLE PRECISION",
}
_VERSION_TABLE = "CREATE TABLE lifelong_store (version INTEGER NOT NULL)"


def is_url(location: str | os.PathLike) -> bool:
    """True for a PostgreSQL URL (the store is then a database, not a file)."""
    scheme = str(location).split("://", 1)[0] if "://" in str(location) else ""
    return scheme.split("+", 1)[0].lower() in SCHEMES


def shown(location: str | os.PathLike) -> str:
    """A store as messages may print it: a URL without its password (``postgresql://me:***@host/db``)."""
    return PostgresDB(str(location)).name if is_url(location) else str(location)


class Row(tuple):
    """A row that unpacks like a tuple and reads by column name, as sqlite3.Row does."""

    names: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        return self.names

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)


def _row_factory(cursor):
    # PostgreSQL folds unquoted names to lower case; the store's R column keeps its name.
    names = tuple("R" if c.name == "r" else c.name for c in cursor.description or ())

    def make(values):
        row = Row(values)
        row.names = names
        return row

    return make


class Connection:
    """A psycopg connection that takes the store's SQL as written for SQLite: ``?`` placeholders."""

    def __init__(self, con):
        self._con = con

    def execute(self, sql: str, params: tuple = ()):
        return self._con.execute(sql.replace("?", "%s"), params)


class PostgresDB:
    """What the Store needs of a PostgreSQL database: connections, the schema and its version."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        folder = [v for k, v in query if k == "folder"]
        self.folder = Path(folder[-1] if folder else DEFAULT_FOLDER).expanduser().resolve()
        libpq_query = urlencode([(k, v) for k, v in query if k != "folder"])
        scheme = parts.scheme.split("+", 1)[0]
        self.dsn = urlunsplit((scheme, parts.netloc, parts.path, libpq_query, ""))
        self.database = parts.path.lstrip("/") or (parts.username or "postgres")
        # Shown in messages and passed on to workers: never the password.
        netloc = parts.netloc if parts.password is None else parts.netloc.replace(f":{parts.password}@", ":***@")
        self.name = urlunsplit((scheme, netloc, parts.path, libpq_query, ""))
        self.location = urlunsplit(
            (scheme, parts.netloc, parts.path, urlencode([*parse_qsl(libpq_query), ("folder", str(self.folder))]), "")
        )

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A short-lived connection in one transaction: commits on success, rolls back on error, always
        closes, and turns psycopg's errors into one-line LifelongErrors."""
        psycopg = _import_psycopg()
        con = None
        try:
            timeout = {} if "connect_timeout" in self.dsn else {"connect_timeout": 10}  # the URL's own wins
            con = psycopg.connect(self.dsn, autocommit=True, row_factory=_row_factory, **timeout)
            with con.transaction():
                yield Connection(con)
        except psycopg.Error as e:
            raise LifelongError(self._explain(e)) from None
        finally:
            if con is not None:
                con.close()

    def version(self, con: Connection) -> int:
        (version,) = con.execute("SELECT version FROM lifelong_store").fetchone()
        return int(version)

    def init_schema(self, create: bool, current: int, schema: str, unique_index: str) -> int:
        """The store's schema version; an empty database gets the tables when ``create``: ``schema`` (the
        SQLite store's statements, translated) and ``unique_index``."""
        with self.connect() as con:
            tables = self._tables(con)
            if "runs" in tables and "lifelong_store" in tables:
                version = self.version(con)
            elif "runs" in tables:
                raise LifelongError(
                    f"{self.name} has a table 'runs' that is not a lifelong results store's; give another database"
                )
            elif not create:
                raise LifelongError(f"no results store in {self.name} yet; run an experiment first")
            else:
                con.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))  # workers may start together
                if "runs" not in self._tables(con):
                    for statement in [*schema.split(";"), _VERSION_TABLE, unique_index]:
                        for sqlite_type, postgres_type in _TYPES.items():
                            statement = statement.replace(sqlite_type, postgres_type)
                        if statement.strip():
                            con.execute(statement)
                    con.execute("INSERT INTO lifelong_store (version) VALUES (?)", (current,))
                version = self.version(con)
        if version > current:
            raise LifelongError(
                f"{self.name} was written by a newer lifelong (schema {version} > {current}); "
                "upgrade lifelong to read it"
            )
        return version

    def _tables(self, con: Connection) -> set[str]:
        rows = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {name for (name,) in rows.fetchall()}

    def _explain(self, e: Exception) -> str:
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if type(e).__name__ == "OperationalError":
            return f"cannot reach the results store {self.name} ({text}); check that the server runs and the URL"
        if type(e).__name__ == "InsufficientPrivilege":
            return f"the results store {self.name} refused a write ({text}); grant the role access or use another"
        return f"the results store {self.name} failed: {text}"


def _import_psycopg():
    try:
        import psycopg
    except ImportError:
        raise LifelongError(f"a PostgreSQL results store needs psycopg 3: {PSYCOPG_PIP}") from None
    return psycopg
