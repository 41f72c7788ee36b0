"""Durable jobs: claimed, run, cancelled, failed — and resumed after a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from tests.conftest import write_images
from workbench import Workbench
from workbench.jobs import JOB_KINDS, Worker, worker_running
from workbench.store import tables as t


def failing_handler(ctx):
    ctx.progress(1, 3, "about to fail")
    raise ValueError("the handler broke")


def counting_handler(ctx):
    for i in range(ctx.params["n"]):
        ctx.check_cancelled()
        ctx.progress(i + 1, ctx.params["n"], f"step {i + 1}")
        time.sleep(ctx.params.get("sleep", 0))
    return {"steps": ctx.params["n"]}


@pytest.fixture
def test_kinds(monkeypatch):
    monkeypatch.setitem(JOB_KINDS, "fail", lambda wb: failing_handler)
    monkeypatch.setitem(JOB_KINDS, "count", lambda wb: counting_handler)


def test_a_job_runs_to_done_with_its_result(wb, test_kinds):
    job = wb.jobs.submit("count", {"n": 3})
    assert (job.status, job.progress_done) == ("queued", 0)
    assert Worker(wb).run(exit_when_idle=True) == 1
    done = wb.jobs.get(job.id)
    assert (done.status, done.result, done.progress_done, done.progress_total) == (
        "done", {"steps": 3}, 3, 3)
    assert done.started_at <= done.finished_at


def test_a_failing_job_is_recorded_with_its_traceback(wb, test_kinds):
    job = wb.jobs.submit("fail", {})
    Worker(wb).run(exit_when_idle=True)
    failed = wb.jobs.get(job.id)
    assert failed.status == "failed"
    assert failed.message == "ValueError: the handler broke"
    assert "failing_handler" in failed.error


def test_cancel_a_queued_and_a_running_job(wb, test_kinds):
    queued = wb.jobs.submit("count", {"n": 1})
    assert wb.jobs.cancel(queued.id).status == "cancelled"
    running = wb.jobs.submit("count", {"n": 200, "sleep": 0.02})
    worker = threading.Thread(target=Worker(wb).run, kwargs={"exit_when_idle": True})
    worker.start()
    deadline = time.monotonic() + 30
    while wb.jobs.get(running.id).progress_done < 5:
        assert time.monotonic() < deadline, "the job made no progress in 30 s"
        time.sleep(0.02)
    wb.jobs.cancel(running.id)
    worker.join(10)
    job = wb.jobs.get(running.id)
    assert job.status == "cancelled"
    assert 5 <= job.progress_done < 200


def test_unknown_job_kind_is_refused(wb):
    from workbench.errors import ValidationError

    with pytest.raises(ValidationError, match="unknown job kind 'nope'"):
        wb.jobs.submit("nope", {})


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["worker", "cli"])
def test_a_job_killed_with_sigkill_resumes_without_duplicates(home, tmp_path, runner):
    n = 300
    write_images(tmp_path / "imgs", n)
    env = dict(os.environ, WORKBENCH_HOME=str(home), WORKBENCH_INGEST_BATCH_SIZE="1")
    wb = Workbench.open(home)
    wb.buckets.create("b")
    if runner == "worker":
        job = wb.ingest.submit("b", [tmp_path / "imgs"])
        command = [sys.executable, "-m", "workbench", "worker"]
    else:
        job = None
        command = [sys.executable, "-m", "workbench", "ingest", str(tmp_path / "imgs"),
                   "--bucket", "b"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)

    def progressed():
        jobs = wb.jobs.list()
        return bool(jobs) and jobs[0].progress_done >= 40

    try:
        assert _wait_for(progressed), "the ingest never got going"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    job = wb.jobs.list()[0]
    assert job.status == "running" and 40 <= job.progress_done < n, job

    # A new worker sees that the old one is dead and takes the job over.
    subprocess.run([sys.executable, "-m", "workbench", "worker", "--exit-when-idle"],
                   env=env, check=True, timeout=120, capture_output=True)
    resumed = wb.jobs.get(job.id)
    assert resumed.status == "done", resumed.message
    assert resumed.result == {"accepted": n, "duplicate": 0, "rejected": 0}
    assert (resumed.progress_done, resumed.progress_total) == (n, n)
    with wb.db.read() as conn:
        objects = conn.execute(sa.select(sa.func.count()).select_from(t.objects)).scalar()
        distinct = conn.execute(sa.select(sa.func.count(sa.distinct(t.objects.c.sha256)))).scalar()
        items = conn.execute(sa.select(sa.func.count()).select_from(t.ingest_items)).scalar()
    assert objects == distinct == n
    assert items == n
    root = wb.settings.blobs_dir
    blobs = [p for p in root.rglob("*.jpg") if p.relative_to(root).parts[0] != "tmp"]
    assert len(blobs) == n
    from workbench.store.blobs import sha256_of

    assert all(sha256_of(p.read_bytes()) == p.stem for p in blobs)  # no half-written blob


def test_one_worker_per_workspace(wb, home):
    first = Worker(wb)
    assert first.acquire_lock()
    assert worker_running(home)
    assert not Worker(wb).acquire_lock()
