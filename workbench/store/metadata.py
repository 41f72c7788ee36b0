"""The metadata store: a SQLAlchemy engine, migrations and transactions.

SQLite (the default) runs in WAL mode so that the app can read while the worker writes.
Write transactions start with ``BEGIN IMMEDIATE``: two processes never both read, then both
try to upgrade to a write lock and deadlock; the second simply waits for the first.
"""

from __future__ import annotations

import fcntl
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Connection, create_engine, event, inspect

from workbench.errors import AlreadyExistsError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The tables whose size decides the planner's choices; renewed when they have doubled.
STATISTICS_TABLES = ("objects", "documents", "detections", "annotations", "image_truth",
                     "truth_boxes", "events", "jobs", "taxonomy_assignments")
STATISTICS_MIN_ROWS = 1000  # below this every plan is fast
# The Postgres advisory lock held while migrating (a key of the database's own: any number
# no other code locks).
MIGRATION_LOCK_KEY = 0x57B_D1C0
RULES_LOCK_KEY = 0x57B_D1C1  # one rules engine at a time, on every host (workbench.rules)
IN_LIST = 500  # ids per IN (...): SQLite refuses a statement of more than 32,766 variables


def in_lists(ids: Sequence, size: int | None = None) -> Iterator[list]:
    """``ids`` in lists of ``size`` (:data:`IN_LIST`): one IN (...) per statement, however
    many ids there are (also rows per multi-row INSERT)."""
    ids, size = list(ids), size or IN_LIST
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def utcnow() -> datetime:
    """Naive UTC, the form every timestamp is stored in."""
    return datetime.now(UTC).replace(tzinfo=None)


def as_utc(value: datetime | None) -> datetime | None:
    """Stored naive UTC timestamps, made timezone-aware for callers."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def new_id(prefix: str) -> str:
    """A fresh random id: ``<prefix>_`` and 16 hex digits."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class MetadataStore:
    """Owns the engine; hands out read and write transactions."""

    def __init__(self, url: str, lock_dir: Path | None = None):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._lock_dir = lock_dir
        connect_args: dict = {"timeout": 60} if self.is_sqlite else {}
        if url.startswith("postgres") and "options" not in sa.make_url(url).query:
            # No JIT compilation: every query here is a short indexed read or write, but the
            # review queue's verdict subquery makes its estimated cost pass JIT's threshold,
            # and compiling took 16 of its 18 ms a page (the work itself: 1.3 ms).
            connect_args["options"] = "-c jit=off"
        self.engine = create_engine(_with_driver(url), connect_args=connect_args)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """An atomic write transaction: committed when the block ends, rolled back on error."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction that never waits for writers (WAL snapshot)."""
        with self.engine.connect().execution_options(workbench_read=True) as conn:
            with conn.begin():
                yield conn

    def find(self, table, key: str, conn: Connection | None = None):
        """The row of ``table`` whose id (or, in a table of named things, name) is ``key``,
        or None; read in ``conn``'s transaction when one is given."""
        match = table.c.id == key
        if "name" in table.c:
            match = sa.or_(table.c.name == key, match)
        query = sa.select(table).where(match)
        if conn is not None:
            return conn.execute(query).first()
        with self.read() as own:
            return own.execute(query).first()

    def insert_named(self, conn: Connection, table, what: str, **values) -> None:
        """Insert a row of a table of named things, refusing (AlreadyExistsError) a name that
        is taken; ``what`` names the kind of thing in the error."""
        if conn.execute(sa.select(table.c.id).where(table.c.name == values["name"])).first():
            raise AlreadyExistsError(f"{what} {values['name']!r} exists already; pick another "
                                     "name")
        conn.execute(table.insert().values(**values))

    def migrate(self) -> str:
        """Apply every pending migration, in order, each in its own transaction. A database
        at the newest revision is left alone without loading Alembic (a quarter of a second
        of every CLI command's start)."""
        if self.schema_version() == head_revision():
            return head_revision()
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._migration_lock():
            with self.engine.connect() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
        return self.schema_version()

    def ensure_statistics(self, tables: tuple[str, ...] = STATISTICS_TABLES) -> list[str]:
        """Renew SQLite's planner statistics of the tables that have more than doubled (or
        were never measured) since they were last taken; returns the tables analysed.

        The planner chooses an index by these statistics: without them, a query for the
        detections of twenty images took the confidence index and scanned the collection
        (writing an annotation at 100k detections fell to 3.5 a second). Checking costs a
        lookup per table (``max(rowid)`` beside the stored row count), so it runs whenever a
        workspace is opened and after a batch run. Analysing reads every index whole (about
        a second for the detections and documents of a million detections, once per
        doubling): statistics sampled from 1,000 rows (``analysis_limit``) said that a
        collection holds a thousand rows, and misled the planner.

        Postgres keeps its own (autovacuum), but only a minute or more after the writes: until
        then the review queue, which looks each detection's verdict up in ``annotations``,
        took 0.5 s a page at 100k detections after 3,000 verdicts were written (53 ms once
        analysed). There a table is analysed when at least half its rows changed since its
        last analysis (its write counters in ``pg_stat_user_tables``); the analysis samples,
        so it takes milliseconds."""
        if not self.is_sqlite:
            return self._ensure_postgres_statistics(tables)
        stale, measured = [], {}
        with self.read() as conn:
            if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'"
                                    ).first():
                for tbl, stat in conn.exec_driver_sql(
                        "SELECT tbl, stat FROM sqlite_stat1").all():
                    rows = int(str(stat).split()[0]) if stat else 0
                    measured[tbl] = max(measured.get(tbl, 0), rows)
            for table in tables:
                rows = conn.exec_driver_sql(f"SELECT max(rowid) FROM {table}").scalar() or 0
                if rows >= STATISTICS_MIN_ROWS and rows > 2 * measured.get(table, 0):
                    stale.append(table)
        if stale:
            with self.write() as conn:
                for table in stale:
                    conn.exec_driver_sql(f"ANALYZE {table}")
        return stale

    def _ensure_postgres_statistics(self, tables: tuple[str, ...]) -> list[str]:
        if self.engine.dialect.name != "postgresql":
            return []
        with self.read() as conn:
            counts = conn.execute(sa.text(
                "SELECT relname, n_live_tup, n_mod_since_analyze FROM pg_stat_user_tables "
                "WHERE relname = ANY(:tables)"), {"tables": list(tables)}).all()
        stale = [table for table, live, changed in counts
                 if changed >= STATISTICS_MIN_ROWS and 2 * changed >= live]
        if stale:
            with self.write() as conn:
                for table in stale:
                    conn.exec_driver_sql(f"ANALYZE {table}")
        return stale

    def schema_version(self) -> str | None:
        """The database's Alembic revision, or None before the first migration."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def dispose(self) -> None:
        """Close the engine's pooled connections."""
        self.engine.dispose()

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        # The app and the worker may open a fresh workspace at the same moment; on a shared
        # Postgres, processes on other machines too, which a file lock does not reach.
        with self.exclusive(".migrate.lock", MIGRATION_LOCK_KEY):
            yield

    @contextmanager
    def exclusive(self, name: str, key: int) -> Iterator[None]:
        """Hold a workspace-wide lock until the block ends: on Postgres an advisory lock
        ``key`` of the database, which every host that shares it reaches; on SQLite a file
        lock ``name`` in the workspace folder (one machine: the database file is there)."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({int(key)})")
                try:
                    yield
                finally:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({int(key)})")
            return
        if self._lock_dir is None:
            yield
            return
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        with open(self._lock_dir / name, "a") as handle:  # "a": never wipe a holder's file
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def head_revision() -> str:
    """The newest migration's revision: migrations are ``versions/NNNN_name.py`` with
    ``revision = "NNNN"`` (a test holds Alembic's own head to it)."""
    return max(p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def _with_driver(url: str) -> str:
    """``postgresql://…`` with the driver the workbench installs (psycopg 3): SQLAlchemy's
    default for a bare ``postgresql`` is psycopg2, which is not installed."""
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by _sqlite_on_begin
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("workbench_read"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
