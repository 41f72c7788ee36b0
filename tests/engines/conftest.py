"""The engine suites: test modules of the store and the services run again on Postgres.

A session starts one throwaway Postgres (``initdb`` + ``pg_ctl`` in a temporary folder, on a
free loopback port) and migrates a template database once; every test gets a fresh database
copied from it, named by ``WORKBENCH_DATABASE_URL``, so that the workspaces the test opens —
the ``wb`` fixture, ``Workbench.open`` and the workers it starts in subprocesses alike — keep
their metadata there. The database is dropped when the test ends.

These tests are left out of a plain ``pytest`` (CI runs them after the main suite, in
``.ci/run``); ask for them with ``pytest -m postgres`` or by naming ``tests/engines``.
They are skipped, with the reason, on a machine without the Postgres binaries.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

ENGINES_DIR = Path(__file__).resolve().parent
POSTGRES_USER = "postgres"  # the server refuses to run as root; initdb and pg_ctl run as it
TEMPLATE = "wb_template"


def pytest_collection_modifyitems(config, items):
    """Leave the engine suites out unless they were asked for (``-m postgres`` or a path in
    ``tests/engines``): they repeat whole test modules and belong to CI's second step."""
    if "postgres" in (config.option.markexpr or "") or any(
            _inside_engines(arg) for arg in config.args):
        return
    kept, left_out = [], []
    for item in items:
        (left_out if item.get_closest_marker("postgres") else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def _inside_engines(arg: str) -> bool:
    path = Path(arg.split("::", 1)[0]).resolve()
    return path == ENGINES_DIR or ENGINES_DIR in path.parents


def postgres_bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on the PATH, else Debian's
    ``/usr/lib/postgresql/<version>/bin`` (the package does not put them on the PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                        else 0)
    return candidates[-1].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(command: list[str]) -> list[str]:
    # Postgres will not run as root; as any other user it runs as that user.
    return ["runuser", "-u", POSTGRES_USER, "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway Postgres for this session: the URL of its ``postgres`` database (no
    password, loopback only). fsync is off: nothing in it outlives the session."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("no Postgres binaries (initdb, pg_ctl) on this machine; install the "
                    "`postgresql` package (CI's .ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam(POSTGRES_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, log = root / "data", root / "server.log"
    port = _free_port()
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth=trust", "--encoding=UTF8", "--no-sync"]),
                   check=True, capture_output=True)
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
    started = subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l",
                                           str(log), "-o", options, "-w", "start"]),
                             capture_output=True, text=True)
    if started.returncode != 0:
        detail = log.read_text() if log.exists() else started.stderr
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"Postgres did not start on port {port}:\n{detail}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                                     "immediate", "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin(postgres_server) -> Iterator[sa.Engine]:
    """An autocommit engine on the server's ``postgres`` database, to create and drop the
    test databases."""
    engine = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT",
                              poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_server, postgres_admin) -> str:
    """A database migrated to the newest schema, which each test's database is copied from
    (a copy takes a fraction of the migrations' time)."""
    from workbench.store.metadata import MetadataStore

    with postgres_admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {TEMPLATE}")
    store = MetadataStore(_database(postgres_server, TEMPLATE))
    store.migrate()
    store.dispose()  # a template with a connection open cannot be copied
    return TEMPLATE


_numbers = itertools.count()


@pytest.fixture
def blank_postgres_url(postgres_server, postgres_admin) -> Iterator[str]:
    """The URL of a new empty database on the session's server, dropped after the test."""
    yield from _fresh_database(postgres_server, postgres_admin, "template0")


@pytest.fixture
def postgres_url(postgres_server, postgres_admin, postgres_template) -> Iterator[str]:
    """The URL of a new database at the newest schema, dropped after the test."""
    yield from _fresh_database(postgres_server, postgres_admin, postgres_template)


@pytest.fixture(autouse=True)
def workspace_on_postgres(request, monkeypatch) -> None:
    """Every workspace a ``postgres`` test opens keeps its metadata in that test's database."""
    if request.node.get_closest_marker("postgres") is None:
        return
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", request.getfixturevalue("postgres_url"))


def _fresh_database(server: str, admin: sa.Engine, template: str) -> Iterator[str]:
    name = f"wb_test_{os.getpid()}_{next(_numbers)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield _database(server, name)
    finally:
        with admin.connect() as conn:  # FORCE: a test may leave pooled connections behind
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _database(server_url: str, name: str) -> str:
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
