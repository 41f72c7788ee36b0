"""Durable jobs and the worker that runs them.

A job is a row: kind, params, status (queued → running → done | failed | cancelled),
progress, heartbeat. Handlers make their own work resumable (they record what they finished
in the same transaction as the work), so a job whose worker died — SIGKILL, power loss — is
claimed again by the next worker and continues where it stopped.

Each kind maps to the method of the facade's service that executes it (``wb.ingest.execute``
for an ingest). The facade builds a service when it is first used, so importing this module
loads no handler (and none of the heavy libraries a handler may need).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from workbench.domain import Job
from workbench.errors import JobCancelled, NotFoundError, ValidationError
from workbench.paging import Keyset, Page
from workbench.store import tables as t
from workbench.store.metadata import as_utc, new_id, utcnow

if TYPE_CHECKING:
    from workbench import Workbench

log = logging.getLogger(__name__)

ProgressListener = Callable[[Job], None]
JobHandler = Callable[["JobContext"], dict[str, Any] | None]

# Job kind → the service method that executes it, looked up on the workspace's facade.
JOB_KINDS: dict[str, Callable[[Workbench], JobHandler]] = {
    "ingest": attrgetter("ingest.execute"),
    "demo": attrgetter("demo.execute"),
    "detect": attrgetter("detection.execute"),
    "train": attrgetter("training.execute"),
    "export": attrgetter("export.execute"),  # a dataset zipped for download (the API)
    "taxonomy": attrgetter("taxonomies.execute"),
    "cluster": attrgetter("clusters.execute"),
    "retrain": attrgetter("rules.execute_retrain"),  # export + fine-tune + evaluate + gate
    "evaluate": attrgetter("rules.execute_evaluate"),
}


class JobContext:
    """What a handler gets: progress reporting and cancellation checks."""

    def __init__(self, service: JobService, job: Job, listener: ProgressListener | None = None):
        self._service = service
        self.job = job
        self._listener = listener
        self._last_cancel_check = 0.0
        self.lost = threading.Event()  # set when another worker took the job over

    @property
    def params(self) -> dict[str, Any]:
        """The job's parameters."""
        return self.job.params

    def progress(
        self,
        done: int | None = None,
        total: int | None = None,
        message: str | None = None,
        conn: sa.Connection | None = None,
    ) -> None:
        """Record progress; pass ``conn`` to commit it together with the work it describes.

        Listeners hear of it at once, or — with ``conn`` — when the caller calls
        :meth:`notify` after its transaction has committed (a listener may write too).
        """
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if done is not None:
            values["progress_done"] = done
        if total is not None:
            values["progress_total"] = total
        if message is not None:
            values["message"] = message
        stmt = t.jobs.update().where(t.jobs.c.id == self.job.id).values(**values)
        if conn is not None:
            conn.execute(stmt)
            return
        with self._service.db.write() as own:
            own.execute(stmt)
        self.notify()

    def update_result(self, partial: dict[str, Any]) -> None:
        """Publish intermediate results (training curves) before the job ends."""
        with self._service.db.write() as conn:
            conn.execute(t.jobs.update().where(t.jobs.c.id == self.job.id)
                         .values(result=partial, heartbeat_at=utcnow()))

    def notify(self) -> None:
        """Tell the listener (a progress bar) the job's current state."""
        if self._listener is not None:
            self._listener(self._service.get(self.job.id))

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if a cancel was asked for (checked at most 4×/s)."""
        if self.lost.is_set():
            raise JobCancelled(f"job {self.job.id} was taken over by another worker")
        now = time.monotonic()
        if now - self._last_cancel_check < 0.25:
            return
        self._last_cancel_check = now
        with self._service.db.read() as conn:
            flag = conn.execute(
                sa.select(t.jobs.c.cancel_requested).where(t.jobs.c.id == self.job.id)
            ).scalar_one()
        if flag:
            raise JobCancelled(f"job {self.job.id} was cancelled")


class JobService:
    """Queue, claim, run, cancel and read durable jobs."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db

    # -- queue -------------------------------------------------------------------------
    def submit(self, kind: str, params: dict[str, Any], conn: sa.Connection | None = None
               ) -> Job:
        """Queue a job; with ``conn``, in the caller's transaction (a rule's reaction is
        queued together with the rules engine's cursor)."""
        if kind not in JOB_KINDS:
            raise ValidationError(f"unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}")
        job_id = new_id("job")
        if conn is not None:
            self._insert(conn, job_id, kind, params)
            return job_from_row(self.db.find(t.jobs, job_id, conn))
        with self.db.write() as own:
            self._insert(own, job_id, kind, params)
        return self.get(job_id)

    def _insert(self, conn: sa.Connection, job_id: str, kind: str, params: dict[str, Any]
                ) -> None:
        conn.execute(
            t.jobs.insert().values(
                id=job_id,
                kind=kind,
                params=params,
                status="queued",
                progress_done=0,
                progress_total=0,
                message="queued",
                cancel_requested=False,
                created_at=utcnow(),
            )
        )

    def get(self, job_id: str) -> Job:
        """A job by id; NotFoundError if there is none."""
        row = self.db.find(t.jobs, job_id)
        if row is None:
            raise NotFoundError(f"no job with id {job_id!r}; list jobs with `workbench jobs`")
        return job_from_row(row)

    def list(self, statuses: tuple[str, ...] | None = None, limit: int = 50) -> list[Job]:
        """The newest ``limit`` jobs (with one of ``statuses``, if given): the first
        :meth:`page`, which also says how many there are and pages on."""
        return self.page(statuses, limit=limit).items

    def page(self, statuses: tuple[str, ...] | None = None, cursor: str | None = None,
             limit: int = 50) -> Page[Job]:
        """A page of jobs (with one of ``statuses``, if given), newest first, with how many
        there are and the cursor of the next page."""
        with self.db.read() as conn:
            return _JOB_ORDER.page(conn, _jobs_with(statuses), cursor, limit, job_from_row,
                                   {"statuses": sorted(statuses or ())})

    def active(self) -> list[Job]:
        """Every queued and running job, newest first (there is no cap: what is waiting to
        run is never hidden)."""
        with self.db.read() as conn:
            return [job_from_row(r) for r in conn.execute(
                _JOB_ORDER.ordered(_jobs_with(ACTIVE_STATUSES)))]

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; ask a running one to stop at its next check."""
        job = self.get(job_id)
        if job.finished:
            return job
        with self.db.write() as conn:
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.id == job_id, t.jobs.c.status == "queued")
                .values(status="cancelled", message="cancelled", finished_at=utcnow())
            )
            conn.execute(
                t.jobs.update().where(t.jobs.c.id == job_id).values(cancel_requested=True)
            )
        return self.get(job_id)

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 0.2) -> Job:
        """Poll until the job ends or ``timeout`` seconds pass; returns it either way."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.finished or time.monotonic() > deadline:
                return job
            time.sleep(poll)

    # -- claiming and running ----------------------------------------------------------
    def claim(self, worker_id: str, job_id: str | None = None) -> Job | None:
        """Take the oldest runnable job (or ``job_id``): queued, or running with a dead worker.

        Workers on any number of machines may share a Postgres database: a job is locked
        (``FOR UPDATE SKIP LOCKED``) and looked at again before it is taken, so that one
        another worker is taking is passed over, and one taken since the list was read is
        seen as taken. SQLite's writers take turns (``BEGIN IMMEDIATE``), and SQLAlchemy
        writes no locking clause for it.
        """
        stale_before = utcnow() - timedelta(seconds=self.wb.settings.job_stale_after_s)
        with self.db.write() as conn:
            query = sa.select(t.jobs).where(t.jobs.c.status.in_(ACTIVE_STATUSES))
            if job_id is not None:
                query = query.where(t.jobs.c.id == job_id)
            for row in conn.execute(query.order_by(t.jobs.c.created_at)).all():
                if not _claimable(row, stale_before):
                    continue
                row = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == row.id)
                                   .with_for_update(skip_locked=True)).first()
                if row is None or not _claimable(row, stale_before):
                    continue  # another worker is taking it, or has taken it
                if row.cancel_requested:
                    conn.execute(
                        t.jobs.update()
                        .where(t.jobs.c.id == row.id)
                        .values(status="cancelled", message="cancelled", finished_at=utcnow())
                    )
                    continue
                resumed = row.status == "running"
                conn.execute(
                    t.jobs.update()
                    .where(t.jobs.c.id == row.id)
                    .values(
                        status="running",
                        worker_id=worker_id,
                        heartbeat_at=utcnow(),
                        started_at=row.started_at or utcnow(),
                        message="resuming" if resumed else "starting",
                    )
                )
                if resumed:
                    log.info("resuming job %s left by %s", row.id, row.worker_id)
                return job_from_row(self.db.find(t.jobs, row.id, conn))
        return None

    def run_claimed(
        self, job: Job, worker_id: str, listener: ProgressListener | None = None
    ) -> Job:
        """Run a job this worker has claimed, keeping its heartbeat, and record the outcome."""
        ctx = JobContext(self, job, listener)
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(job.id, worker_id, stop, ctx.lost), daemon=True
        )
        beat.start()
        try:
            result = JOB_KINDS[job.kind](self.wb)(ctx)
            self._finish(job.id, worker_id, "done", message="done", result=result)
        except JobCancelled as exc:
            self._finish(job.id, worker_id, "cancelled", message=str(exc))
        except Exception as exc:  # a failed job is recorded, never lost
            log.exception("job %s failed", job.id)
            self._finish(
                job.id,
                worker_id,
                "failed",
                message=f"{type(exc).__name__}: {exc}",
                error=traceback.format_exc(),
            )
        finally:
            stop.set()
            beat.join(timeout=5)
        final = self.get(job.id)
        if listener is not None:
            listener(final)
        return final

    def run_inline(
        self, kind: str, params: dict[str, Any], listener: ProgressListener | None = None
    ) -> Job:
        """Submit and run a job in this process (the CLI and small app actions do this).

        The job is durable all the same: if this process dies, a worker resumes it.
        """
        job = self.submit(kind, params)
        worker_id = make_worker_id("inline")
        claimed = self.claim(worker_id, job_id=job.id)
        assert claimed is not None, "a freshly submitted job is always claimable"
        return self.run_claimed(claimed, worker_id, listener)

    def _finish(self, job_id: str, worker_id: str, status: str, **values: Any) -> None:
        with self.db.write() as conn:
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.id == job_id, t.jobs.c.worker_id == worker_id)
                .values(status=status, finished_at=utcnow(), heartbeat_at=utcnow(), **values)
            )

    def _heartbeat(
        self, job_id: str, worker_id: str, stop: threading.Event, lost: threading.Event
    ) -> None:
        interval = max(0.2, min(5.0, self.wb.settings.job_stale_after_s / 3))
        while not stop.wait(interval):
            try:
                with self.db.write() as conn:
                    updated = conn.execute(
                        t.jobs.update()
                        .where(t.jobs.c.id == job_id, t.jobs.c.worker_id == worker_id)
                        .values(heartbeat_at=utcnow())
                    ).rowcount
                if not updated:
                    lost.set()
                    return
            except Exception:  # a busy database must not kill the job; try again next beat
                log.warning("heartbeat for %s failed", job_id, exc_info=True)


ACTIVE_STATUSES = ("queued", "running")
_JOB_ORDER = Keyset("jobs", ((t.jobs.c.created_at, True), (t.jobs.c.id, True)))


def _jobs_with(statuses: tuple[str, ...] | None) -> sa.Select:
    query = sa.select(t.jobs)
    return query.where(t.jobs.c.status.in_(statuses)) if statuses else query


def make_worker_id(role: str = "worker") -> str:
    """``host:pid:role:random``; host and pid let a claim tell that the worker has died."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}:{uuid.uuid4().hex[:6]}"


def _claimable(row, stale_before) -> bool:
    """Whether a worker may take the job: queued, or running with its worker gone."""
    return row.status == "queued" or (row.status == "running" and _orphaned(row, stale_before))


def _orphaned(row, stale_before) -> bool:
    """A running job whose worker is gone: a dead process on this host, or a stale heartbeat."""
    if row.heartbeat_at is None or row.heartbeat_at < stale_before:
        return True
    host, _, rest = (row.worker_id or "").partition(":")
    pid_text = rest.split(":", 1)[0]
    if host == socket.gethostname() and pid_text.isdigit():
        return not _pid_alive(int(pid_text))
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def job_from_row(row) -> Job:
    """The Job a row of the jobs table describes."""
    return Job(
        id=row.id,
        kind=row.kind,
        params=row.params,
        status=row.status,
        progress_done=row.progress_done,
        progress_total=row.progress_total,
        message=row.message,
        error=row.error,
        result=row.result,
        worker_id=row.worker_id,
        cancel_requested=bool(row.cancel_requested),
        heartbeat_at=as_utc(row.heartbeat_at),
        created_at=as_utc(row.created_at),
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at),
    )


INDEX_STEP = 5_000  # vectors indexed between two looks at the job queue


class Worker:
    """Runs jobs one after another. One worker per workspace holds ``worker.lock``."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        # what a worker drives: the job queue, and beside it the webhook dispatcher and the
        # rules engine (each on a thread of its own)
        self.jobs, self.webhooks, self.rules = wb.jobs, wb.webhooks, wb.rules
        self.worker_id = make_worker_id("worker")
        self._lock_handle = None

    def acquire_lock(self) -> bool:
        """Take the worker lock without waiting and write this pid in it; False if it is held."""
        path = worker_lock_path(self.wb.settings.home)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # not "w": a loser must not wipe the winner's pid
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_handle = handle
        return True

    def run(
        self,
        exit_when_idle: bool = False,
        idle_exit_s: float | None = None,
        listener: ProgressListener | None = None,
    ) -> int:
        """Run jobs until stopped; returns the number of jobs run. Webhook deliveries go
        out meanwhile from a thread of their own, so a long training job holds none back;
        the automation rules consume events on another."""
        stop = threading.Event()
        poll = {"poll_s": self.wb.settings.worker_poll_s}
        threads = [threading.Thread(target=self.webhooks.run_dispatcher, args=(stop,),
                                    kwargs=poll, name="webhooks", daemon=True),
                   threading.Thread(target=self.rules.run_engine, args=(stop,),
                                    kwargs=poll, name="rules", daemon=True)]
        for thread in threads:
            thread.start()
        try:
            return self._run_jobs(exit_when_idle, idle_exit_s, listener)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=15)

    def _run_jobs(self, exit_when_idle: bool, idle_exit_s: float | None,
                  listener: ProgressListener | None) -> int:
        jobs = self.jobs
        ran = 0
        idle_since = time.monotonic()
        while True:
            job = jobs.claim(self.worker_id)
            if job is None and exit_when_idle:
                # The last events may queue reactions (here, or on the rules thread, whose
                # pass is committed once this one has the engine's lock): run them first,
                # then send the webhook deliveries that are due (a later retry waits for the
                # next worker).
                self.rules.process_pending()
                job = jobs.claim(self.worker_id)
                if job is None and self.webhooks.deliver_all_due():
                    job = jobs.claim(self.worker_id)
            if job is None and self._index_some():
                continue  # the queue is looked at again between batches of the index
            if job is None:
                if exit_when_idle:
                    return ran
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    return ran
                time.sleep(self.wb.settings.worker_poll_s)
                continue
            log.info("running job %s (%s)", job.id, job.kind)
            jobs.run_claimed(job, self.worker_id, listener)
            ran += 1
            idle_since = time.monotonic()


    def _index_some(self, rows: int = INDEX_STEP) -> int:
        """With nothing queued, take up to ``rows`` written vectors into the nearest-neighbour
        index (searches stay exact without it, only slower as the unindexed rows grow)."""
        for feature_uri in self.wb.vectors.unindexed():
            return self.wb.vectors.index(feature_uri, limit=rows)
        return 0


def worker_lock_path(home: Path) -> Path:
    """The workspace's worker lock file."""
    return Path(home) / "worker.lock"


def worker_running(home: Path) -> bool:
    """Whether a worker holds the workspace's lock."""
    path = worker_lock_path(home)
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def stop_worker(home: Path, timeout: float = 10.0) -> bool:
    """Stop the workspace's background worker (SIGTERM to the pid in its lock file)."""
    path = worker_lock_path(home)
    if not worker_running(home):
        return False
    pid = int(path.read_text().split()[0])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while worker_running(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not worker_running(home)


def ensure_worker(home: Path, idle_exit_s: float = 900.0) -> bool:
    """Start a background worker for this workspace unless one runs; True if one was started."""
    home = Path(home).resolve()
    if worker_running(home):
        return False
    # Every page rerun calls this; a worker just spawned needs a moment to take its lock.
    stamp = home / "worker.spawned"
    if stamp.exists() and time.time() - stamp.stat().st_mtime < 20:
        return False
    stamp.touch()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, WORKBENCH_HOME=str(home))
    with open(logs / "worker.log", "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "workbench", "worker", "--idle-exit", str(idle_exit_s)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return True
