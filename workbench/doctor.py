"""``workbench doctor``'s checks: can this host reach and use what the settings name?

Each check looks at one part of a deployment (the metadata database, the model registry's
files, the vector store, the blob root, the batch executor, the compute device) and says
what it found, or what is wrong and what to do about it. Nothing here changes a workspace:
no migration runs, no Chroma collection is made; the only writes are probe files, removed
again, in the blob root and the embedded vectors folder (each made if missing, as the
workbench would).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from workbench.config import Settings
from workbench.errors import WorkbenchError

CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``detail`` says what was found, ``fix`` what to do (failures)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """One line for people: ``ok``/``FAIL``, the check, what was found and what to do."""
        text = f"{self.detail}; {self.fix}" if self.fix else self.detail
        return f"{'ok' if self.ok else 'FAIL':4}  {self.name:9} {text}"

    def to_dict(self) -> dict:
        return asdict(self)


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in order; one that raises unexpectedly is a failed check, not a crash."""
    checks: list[Check] = []
    for name, check in CHECKS:
        try:
            checks.append(check(settings))
        except Exception as exc:  # noqa: BLE001 — reported as the check's failure
            checks.append(Check(name, False, f"{type(exc).__name__}: "
                                f"{' '.join(str(exc).split())}",
                                "this is a bug in the check; please report it"))
    return checks


# -- metadata ------------------------------------------------------------------------------
def check_metadata(settings: Settings) -> Check:
    """The database answers; its dialect and server version; migrations at the head."""
    import sqlalchemy as sa
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from workbench.store.metadata import MIGRATIONS_DIR, _with_driver

    url = sa.make_url(_with_driver(settings.db_url))
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).exists():
        return Check("metadata", False, f"no database at {url.database} yet",
                     "run `workbench init` to create and migrate it")
    connect_args = {} if url.get_backend_name() == "sqlite" else \
        {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            version = ".".join(str(n) for n in (engine.dialect.server_version_info or ()))
    except sa.exc.SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        return Check("metadata", False, f"cannot connect to {shown}: {reason[:300]}",
                     "start the database server or fix WORKBENCH_DATABASE_URL")
    finally:
        engine.dispose()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    found = f"{engine.dialect.name} {version} at {shown}"
    if current == head:
        return Check("metadata", True, f"{found}, migrations current ({head})")
    if current is None:
        return Check("metadata", False, f"{found} has no workbench tables",
                     "run `workbench init` to migrate it")
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        return Check("metadata", False, f"{found} is at revision {current}, newer than this "
                     f"code knows (head {head})", "upgrade the workbench on this host")
    return Check("metadata", False, f"{found} is at revision {current}, behind {head}",
                 "run `workbench init` to migrate it")


# -- models --------------------------------------------------------------------------------
def check_models(settings: Settings) -> Check:
    """Every registered version's files (weights, custom code) are on this host: the
    registry keeps them under ``WORKBENCH_HOME/models`` of the host that registered them, so
    a worker elsewhere finds them only through a shared folder linked there."""
    import sqlalchemy as sa

    from workbench.store import tables as t
    from workbench.store.metadata import _with_driver

    url = sa.make_url(_with_driver(settings.db_url))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).exists():
        return Check("models", True, "no registry yet")
    connect_args = {} if url.get_backend_name() == "sqlite" else \
        {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
    v = t.extractor_versions.c
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(v.name, v.version, v.weights_path, v.code_path)
                                .order_by(v.name, v.created_at)).all()
    except sa.exc.SQLAlchemyError:
        return Check("models", True, "not checked: the registry cannot be read (see metadata)")
    finally:
        engine.dispose()
    home = settings.home
    missing = [f"{row.name}@{row.version} ({path})" for row in rows
               for path in (row.weights_path, row.code_path)
               if path and not (home / path).exists()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        return Check("models", False, f"{len(missing)} registered model file(s) are not on "
                     f"this host under {home.resolve()}: {', '.join(missing[:3])}{more}",
                     f"link {home.resolve() / 'models'} to the models folder every host "
                     "shares (docs/scale-out.md), or register the models here")
    return Check("models", True, f"{len(rows)} registered version(s), every file present "
                 f"under {(home / 'models').resolve()}")


# -- vectors -------------------------------------------------------------------------------
def check_vectors(settings: Settings) -> Check:
    """The Chroma server answers (version, batch size), or the embedded folder is usable."""
    try:
        import chromadb
    except ImportError:
        return Check("vectors", False, "chromadb is not installed",
                     "pip install -r requirements.txt")
    if settings.chroma_url:
        from workbench.store.vectors_server import ServerVectorStore

        store = ServerVectorStore(settings.chroma_url, database=settings.chroma_database,
                                  retry_s=0)
        try:
            _tcp_probe(store.host, store.port)  # fails fast where nothing answers
            found = store.describe()
        except (OSError, WorkbenchError) as exc:
            message = str(exc) if isinstance(exc, WorkbenchError) else \
                str(store.unavailable(exc))
            detail, _, fix = message.partition("; ")
            return Check("vectors", False, detail, fix)
        database = found["database"] + ("" if found["database_exists"]
                                        else " (made on first use)")
        return Check("vectors", True, f"Chroma server {found['version']} at "
                     f"{settings.chroma_url}, database {database}, batches of "
                     f"{found['max_batch_size']:,}")
    folder = settings.vectors_dir
    problem = _unwritable(folder)
    if problem:
        return Check("vectors", False, f"embedded Chroma folder {folder}: {problem}",
                     "make it writable, or set WORKBENCH_CHROMA_URL to a Chroma server")
    shared = settings.database_url is not None and not settings.db_url.startswith("sqlite")
    note = " (this host only: workers on other hosts need WORKBENCH_CHROMA_URL)" \
        if shared else ""
    return Check("vectors", True,
                 f"embedded Chroma {chromadb.__version__} in {folder.resolve()}{note}")


# -- blobs ---------------------------------------------------------------------------------
def check_blobs(settings: Settings) -> Check:
    """The blob root exists (or can be made) and takes an atomic write from this host."""
    root = settings.blobs_dir
    problem = _unwritable(root / "tmp", atomic=True)
    if problem:
        return Check("blobs", False, f"blob root {root} is not writable from this host: "
                     f"{problem}", "mount it read-write here, or fix WORKBENCH_BLOB_ROOT")
    free = shutil.disk_usage(root).free / 2**30
    fs = _filesystem(root)
    where = "shared root" if settings.blob_root is not None else "in the workspace"
    note = "" if settings.blob_root is not None or settings.database_url is None \
        else " (this host only: other hosts need WORKBENCH_BLOB_ROOT on a shared path)"
    return Check("blobs", True, f"{where} {root.resolve()} writable ({fs}, "
                 f"{free:,.1f} GiB free){note}")


# -- executor ------------------------------------------------------------------------------
def check_executor(settings: Settings) -> Check:
    """Local, or Ray: importable and, with an address, reachable."""
    executor = str(getattr(settings, "executor", "local") or "local")
    if executor != "ray":
        return Check("executor", True, f"{executor}: batch runs in the worker that claims "
                     "them (`workbench worker` on each host)")
    try:
        import ray
    except ImportError:
        return Check("executor", False, "executor is ray, but ray is not installed here",
                     "pip install 'ray[data]', or set WORKBENCH_EXECUTOR=local")
    address = getattr(settings, "ray_address", None) or os.environ.get("RAY_ADDRESS")
    if not address or address == "local":
        return Check("executor", True, f"ray {ray.__version__}: no RAY_ADDRESS, each run "
                     "starts a Ray instance on this host")
    host, port = _ray_endpoint(address)
    if host is None:
        return Check("executor", True, f"ray {ray.__version__}, address {address!r} "
                     "(resolved by Ray itself)")
    try:
        _tcp_probe(host, port)
    except OSError as exc:
        return Check("executor", False, f"cannot reach the Ray head at {address}: "
                     f"{_os_reason(exc)}", "start it (`ray start --head --port "
                     f"{port}`) or fix RAY_ADDRESS")
    return Check("executor", True, f"ray {ray.__version__}, head at {address} answers")


def _ray_endpoint(address: str) -> tuple[str | None, int]:
    """``host, port`` of ``host:port`` or ``ray://host:port`` (the client's default port
    10001); None for what only Ray resolves (``auto``)."""
    text = address.strip()
    default = 6379
    if "://" in text:
        scheme, text = text.split("://", 1)
        default = 10001 if scheme == "ray" else default
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or text == "auto":
        return None, 0
    return host.strip("[]"), int(port) if port.isdigit() else default


# -- device --------------------------------------------------------------------------------
def check_device(settings: Settings) -> Check:
    """The compute device asked for exists (CPU or which GPU)."""
    try:
        import torch
    except ImportError:
        return Check("device", False, "torch is not installed", "pip install -r requirements.txt")
    from workbench.config import resolve_device

    try:
        device = resolve_device(settings.device)
    except WorkbenchError as exc:
        detail, _, fix = str(exc).partition("; ")
        return Check("device", False, detail, fix)
    if device == "cpu":
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        extra = f"{gpus} CUDA device(s) left unused" if gpus else "no CUDA device"
        return Check("device", True, f"cpu (torch {torch.__version__}, {extra}, "
                     f"{os.cpu_count()} CPU cores)")
    index = int(device.split(":")[1])
    props = torch.cuda.get_device_properties(index)
    return Check("device", True, f"{device}: {props.name}, {props.total_memory / 2**30:.0f} GiB "
                 f"(torch {torch.__version__}, CUDA {torch.version.cuda}, "
                 f"{torch.cuda.device_count()} device(s))")


CHECKS: tuple[tuple[str, Callable[[Settings], Check]], ...] = (
    ("metadata", check_metadata),
    ("models", check_models),
    ("vectors", check_vectors),
    ("blobs", check_blobs),
    ("executor", check_executor),
    ("device", check_device),
)


# -- helpers -------------------------------------------------------------------------------
def _tcp_probe(host: str, port: int) -> None:
    """Connect and close, within the timeout (OSError when nothing answers)."""
    with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
        pass


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _unwritable(folder: Path, atomic: bool = False) -> str | None:
    """Why ``folder`` cannot take a file from this process (None when it can): made if
    missing, then a probe written, optionally renamed the way blobs are, and removed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".doctor-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(b"workbench doctor probe")
                handle.flush()
                os.fsync(handle.fileno())
            if atomic:
                renamed = name[:-len(".part")]
                os.replace(name, renamed)
                name = renamed
                if Path(name).read_bytes() != b"workbench doctor probe":
                    return "a probe file read back different bytes"
        finally:
            Path(name).unlink(missing_ok=True)
    except OSError as exc:
        return f"{_os_reason(exc)} ({exc.filename or folder})"
    return None


def _filesystem(path: Path) -> str:
    """The filesystem type ``path`` is on (nfs4, ext4, …), from the mount table."""
    target = str(path.resolve())
    best, kind = "", "filesystem unknown"
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return kind
