"""Workers on several machines share one queue on Postgres: each job is claimed by exactly
one of them (``SELECT … FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from workbench import Workbench
from workbench.jobs import JOB_KINDS, Worker

pytestmark = pytest.mark.postgres


def test_two_workers_on_one_database_run_each_of_50_jobs_exactly_once(tmp_path, monkeypatch):
    runs: list[tuple[str, str]] = []  # (job, worker)

    def recording_handler(ctx):
        runs.append((ctx.job.id, ctx.job.worker_id))
        time.sleep(0.05)  # long enough that both workers are busy at once
        return {}

    monkeypatch.setitem(JOB_KINDS, "record", lambda wb: recording_handler)
    # two workspaces (as on two machines) with one metadata database
    first, second = Workbench.open(tmp_path / "a"), Workbench.open(tmp_path / "b")
    jobs = [first.jobs.submit("record", {"n": i}) for i in range(50)]
    workers = [Worker(first), Worker(second)]
    threads = [threading.Thread(target=w.run, kwargs={"exit_when_idle": True}) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert Counter(job for job, _ in runs) == {job.id: 1 for job in jobs}
        assert {first.jobs.get(job.id).status for job in jobs} == {"done"}
        by_worker = Counter(worker for _, worker in runs)
        assert set(by_worker) == {w.worker_id for w in workers}, by_worker  # both took part
    finally:
        first.close()
        second.close()


def test_a_job_of_a_worker_on_another_machine_is_taken_over_once_its_heartbeat_is_stale(wb):
    """No pid is checked across machines (pid 999999 is dead here, but the worker is
    elsewhere): only a heartbeat older than ``job_stale_after_s`` frees its job."""
    from datetime import timedelta

    from workbench.store import tables as t
    from workbench.store.metadata import utcnow

    job = wb.jobs.submit("ingest", {})
    elsewhere = "another-machine:999999:worker:abcdef"

    def running_since(seconds_ago):
        with wb.db.write() as conn:
            conn.execute(t.jobs.update().where(t.jobs.c.id == job.id).values(
                status="running", worker_id=elsewhere,
                heartbeat_at=utcnow() - timedelta(seconds=seconds_ago)))

    running_since(1)
    assert wb.jobs.claim("here:1:worker:000000") is None
    running_since(wb.settings.job_stale_after_s + 1)
    taken = wb.jobs.claim("here:1:worker:000000")
    assert (taken.id, taken.worker_id, taken.message) == (job.id, "here:1:worker:000000",
                                                          "resuming")
