"""Several reviewers, one queue: a page of a review queue is leased to whoever opened it."""

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from workbench.cli import app
from workbench.leases import LeaseConflict, LeaseService
from workbench.store import tables as t
from workbench.store.metadata import utcnow


def page(wb, reviewer, limit=2):
    queue = wb.retrievers.review_queue("x", limit)
    return wb.retrievers.execute(queue.name, {"limit": limit}, reviewer=reviewer)


def ids(execution):
    return [h.detection_id for h in execution.hits]


def expire(wb, holder):
    with wb.db.write() as conn:
        conn.execute(t.leases.update().where(t.leases.c.holder == holder).values(
            expires_at=utcnow() - timedelta(seconds=1)))


def test_two_reviewers_never_get_the_same_item(review_wb):
    alice, bob = page(review_wb, "alice"), page(review_wb, "bob")
    carol = page(review_wb, "carol")
    assert len(ids(alice)) == 2 and len(ids(bob)) == 2  # pages stay full: 4 items in all
    assert not set(ids(alice)) & set(ids(bob))
    assert ids(carol) == []  # everything is leased
    assert ids(page(review_wb, "alice")) == ids(alice)  # her own page comes back, renewed
    assert review_wb.retrievers.execution(carol.id)["result_ids"] == []
    # without a reviewer nothing is leased or skipped (the bench, the simulated reviewer)
    unleased = ids(page(review_wb, None, 4))
    assert unleased and set(unleased) <= set(ids(alice)) | set(ids(bob))


def test_expiry_frees_items(review_wb):
    alice = ids(page(review_wb, "alice", 4))
    assert set(ids(page(review_wb, "bob", 4))).isdisjoint(alice)
    expire(review_wb, "alice")
    freed = set(ids(page(review_wb, "bob", 4))) & set(alice)
    assert freed
    leases = LeaseService(review_wb.db)
    assert {leases.holder_of("col_x", d).holder for d in freed} == {"bob"}


def test_the_holders_verdict_releases_and_another_is_refused(review_wb):
    wb = review_wb
    mine = ids(page(wb, "alice"))
    leases = LeaseService(wb.db)
    assert leases.holder_of("col_x", mine[0]).holder == "alice"
    with pytest.raises(LeaseConflict, match=r"leased to 'alice' until \d{4}-\d\d-\d\d"):
        wb.annotations.create(document_id=mine[0], collection_id="x", label="confirmed",
                              author="bob")
    refused = wb.annotations.bulk([{"document_id": mine[0], "collection_id": "x",
                                    "label": "confirmed", "author": "bob"}])
    assert not refused[0].ok and "leased to 'alice'" in refused[0].error
    assert wb.annotations.list(collection_id="col_x").total == 0
    made = wb.annotations.create(document_id=mine[0], collection_id="x", label="confirmed",
                                 author="alice")
    assert leases.holder_of("col_x", mine[0]) is None
    assert leases.holder_of("col_x", mine[1]).holder == "alice"
    # the judged item leaves the queue; nobody else gets her other one
    assert set(ids(page(wb, "bob", 4))).isdisjoint(mine)
    # a change of a verdict on an item someone else holds is refused too
    expire(wb, "alice")
    expire(wb, "bob")
    leases.acquire("col_x", [mine[0]], "bob")
    with pytest.raises(LeaseConflict, match="leased to 'bob'"):
        wb.annotations.update(made.id, author="alice", label="false_positive")


def test_acquire_takes_only_what_is_free(review_wb):
    leases = LeaseService(review_wb.db, ttl_s=60)
    assert leases.acquire("col_x", ["obj_a_0", "obj_a_1"], "alice") == ["obj_a_0", "obj_a_1"]
    assert leases.acquire("col_x", ["obj_a_1", "obj_b_0"], "bob") == ["obj_b_0"]
    assert leases.acquire("col_x", ["obj_a_1"], "alice") == ["obj_a_1"]  # a renewal
    assert leases.renew("col_x", "alice") == 2
    assert [lease.document_id for lease in leases.held_by("col_x", "alice")] == [
        "obj_a_0", "obj_a_1"]
    assert leases.release("col_x", "alice", ["obj_a_0"]) == 1
    assert leases.release("col_x", "bob") == 1
    assert leases.holder_of("col_x", "obj_b_0") is None
    expire(review_wb, "alice")
    assert leases.renew("col_x", "alice") == 0  # expired: open the queue again
    assert leases.acquire("col_x", ["obj_a_1"], "bob") == ["obj_a_1"]


def test_image_review_queues_are_disjoint(review_wb):
    wb = review_wb
    alice = wb.image_review.queue("x", limit=2, reviewer="alice")
    bob = wb.image_review.queue("x", limit=20, reviewer="bob")
    everyone = wb.image_review.queue("x", limit=20)
    mine = {r.document_id for r in alice.images}
    theirs = {r.document_id for r in bob.images}
    assert len(mine) == 2 and theirs and not mine & theirs
    assert mine | theirs == {r.document_id for r in everyone.images}
    first = sorted(mine)[0]
    with pytest.raises(LeaseConflict, match="leased to 'alice'"):
        wb.image_review.finish("x", first, [], author="bob")
    wb.image_review.finish("x", first, [], author="alice")
    assert LeaseService(wb.db).holder_of("col_x", first) is None


def invoke(wb, author, *args):
    return CliRunner().invoke(app, ["--home", str(wb.home), *map(str, args)],
                              env={"WORKBENCH_AUTHOR": author})


def test_cli_leases_the_page_and_refuses_in_one_line(review_wb):
    alice = json.loads(invoke(review_wb, "alice", "--json", "review-queue", "x", "--limit",
                              "2").output)
    bob = json.loads(invoke(review_wb, "bob", "--json", "review-queue", "x").output)
    mine = [h["detection_id"] for h in alice["hits"]]
    assert len(mine) == 2 and not set(mine) & {h["detection_id"] for h in bob["hits"]}
    assert bob["remaining"] == 2  # what is left for bob
    refused = subprocess.run(  # the real entry point: the error is one line on stderr
        [sys.executable, "-m", "workbench", "--home", str(review_wb.home), "annotate", mine[0],
         "-c", "x", "-l", "confirmed"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "WORKBENCH_AUTHOR": "bob"})
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert f"error: {mine[0]} is leased to 'alice' until" in refused.stderr
    done = invoke(review_wb, "alice", "annotate", mine[0], "-c", "x", "-l", "confirmed")
    assert done.exit_code == 0, done.output
    free = json.loads(invoke(review_wb, "carol", "--json", "review-queue", "x", "--no-lease"
                             ).output)
    assert free["remaining"] == 3  # --no-lease: counts everything not judged, leases nothing
    with review_wb.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.leases).where(
            t.leases.c.holder == "carol")).scalar_one() == 0


def test_the_review_page_leases_its_page_to_the_author(home, monkeypatch, tmp_path):
    from tests.app.conftest import populate, run_page
    from workbench import Workbench

    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.setenv("WORKBENCH_AUTHOR", "alice")
    wb = Workbench.open(home)
    try:
        populate(wb, tmp_path)
        at = run_page("pages/3_Review.py")  # opens on image review: alice's images
        assert not at.exception, [e.message for e in at.exception]
        leases = LeaseService(wb.db)
        images = at.session_state["image_review"].images
        assert images and {lease.document_id for lease in leases.held_by(
            wb.collections.get("cams").id, "alice")} == {i.document_id for i in images}
        at.selectbox(key="review_retriever").select("cams:review").run()
        hits = at.session_state["review"].hits
        assert hits and all(leases.holder_of(wb.collections.get("cams").id, h.detection_id)
                            .holder == "alice" for h in hits)
        other = wb.retrievers.execute("cams:review", reviewer="bob", count=True)
        assert not {h.detection_id for h in other.hits} & {h.detection_id for h in hits}
    finally:
        wb.close()


def test_racing_reviewers_never_share_an_item(wb):
    """Three threads lease random overlapping pages at once: each item goes to one of them.
    (Run against Postgres too while writing this: its multi-row INSERT … ON CONFLICT
    deadlocked until the rows went in id order.)"""
    import random
    import threading

    leases = LeaseService(wb.db, ttl_s=600)
    items = [f"det_{i}" for i in range(200)]
    got: dict[str, set[str]] = {"a": set(), "b": set(), "c": set()}
    start, errors = threading.Barrier(len(got)), []

    def work(name):
        rng = random.Random(name)
        start.wait()
        try:
            for _ in range(30):
                got[name] |= set(leases.acquire("col", rng.sample(items, 20), name))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(name,)) for name in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sum(len(held) for held in got.values()) == len(set().union(*got.values()))
    assert {lease.holder for d in set().union(*got.values())
            for lease in [leases.holder_of("col", d)]} <= set(got)
