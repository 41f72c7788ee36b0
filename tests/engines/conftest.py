"""The engine suites: test modules of the store and the services run again on Postgres.

A session starts one throwaway Postgres (``initdb`` + ``pg_ctl`` in a temporary folder, on a
free loopback port) and migrates a template database once; every test gets a fresh database
copied from it, named by ``WORKBENCH_DATABASE_URL``, so that the workspaces the test opens —
the ``wb`` fixture, ``Workbench.open`` and the workers it starts in subprocesses alike — keep
their metadata there. The database is dropped when the test ends.

These tests are left out of a plain ``pytest`` (CI runs them after the main suite, in
``.ci/run``); ask for them with ``pytest -m postgres`` or by naming ``tests/engines``.
They are skipped, with the reason, on a machine without the Postgres binaries.

Tests marked ``chroma_server`` keep their vectors on a throwaway Chroma server (``chroma
run`` on a free loopback port, one per session), each in a database of its own named by
``WORKBENCH_CHROMA_DATABASE``; they are left out the same way (``pytest -m chroma_server``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

ENGINES_DIR = Path(__file__).resolve().parent
POSTGRES_USER = "postgres"  # the server refuses to run as root; initdb and pg_ctl run as it
TEMPLATE = "wb_template"
ENGINE_MARKERS = ("postgres", "chroma_server", "ray")  # the suites a plain pytest leaves out


def pytest_collection_modifyitems(config, items):
    """Leave the engine suites out unless they were asked for (``-m postgres`` or a path in
    ``tests/engines``): they repeat whole test modules and belong to CI's second step."""
    if any(m in (config.option.markexpr or "") for m in ENGINE_MARKERS) or any(
            _inside_engines(arg) for arg in config.args):
        return
    kept, left_out = [], []
    for item in items:
        engine = any(item.get_closest_marker(m) for m in ENGINE_MARKERS)
        (left_out if engine else kept).append(item)
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


# -- a Chroma server -------------------------------------------------------------------------
def chroma_binary() -> Path | None:
    """The ``chroma`` command that ships with chromadb (beside this interpreter, else on the
    PATH)."""
    beside = Path(sys.executable).parent / "chroma"
    if beside.exists():
        return beside
    found = shutil.which("chroma")
    return Path(found) if found else None


class ChromaServer:
    """``chroma run`` on a folder and a loopback port, stopped and started at will (a test
    can take it down under a running batch and bring it back on the same port and data)."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = Path(root)
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> ChromaServer:
        binary = chroma_binary()
        if binary is None:
            pytest.skip("no `chroma` command (it ships with chromadb: pip install -r "
                        "requirements.txt)")
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "server.log", "ab")
        self.process = subprocess.Popen(
            [str(binary), "run", "--path", str(self.root / "data"), "--host", "127.0.0.1",
             "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
        log.close()
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Chroma server did not start on port {self.port}:\n"
                                   f"{(self.root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)
        return self

    def answers(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[ChromaServer]:
    """A throwaway Chroma server for this session (loopback only, data in a temp folder)."""
    root = Path(tempfile.mkdtemp(prefix="workbench-chroma-"))
    server = ChromaServer(root).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_chroma_server(tmp_path) -> Iterator[ChromaServer]:
    """A Chroma server of this test's own, which it may stop and start again."""
    server = ChromaServer(tmp_path / "chroma").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def workspace_on_chroma_server(request, monkeypatch) -> None:
    """Every workspace a ``chroma_server`` test opens keeps its vectors on the session's
    server, in a database of the test's own (the server makes it on first use)."""
    if request.node.get_closest_marker("chroma_server") is None:
        return
    server = request.getfixturevalue("chroma_server")
    monkeypatch.setenv("WORKBENCH_CHROMA_URL", server.url)
    monkeypatch.setenv("WORKBENCH_CHROMA_DATABASE", f"wb_test_{os.getpid()}_{next(_numbers)}")
