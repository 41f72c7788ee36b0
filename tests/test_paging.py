"""No silent caps (issue 15): every listing says how many rows it matched and pages on with a
cursor — every row exactly once, in order, ties on the time included — and refuses a cursor
it did not hand out."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import KEY
from workbench import paging
from workbench.cli import app
from workbench.errors import ValidationError
from workbench.store import tables as t
from workbench.store.metadata import new_id

ROWS = 130  # more than any listing's old default cap (100), and several pages
PAGE = 25  # not a multiple of 3: ties on the time straddle page boundaries
CLI_PAGE = 50
BASE = datetime(2025, 1, 1)


def _stamp(i: int) -> datetime:
    return BASE + timedelta(seconds=i // 3)  # three rows to a second


def _newest_first(rows: list[tuple[datetime, str]]) -> list[str]:
    return [row_id for _, row_id in sorted(rows, reverse=True)]


def fill_jobs(wb) -> list[str]:
    rows = [(_stamp(i), new_id("job")) for i in range(ROWS)]
    with wb.db.write() as conn:
        conn.execute(t.jobs.insert(), [
            {"id": row_id, "kind": "ingest", "params": {}, "status": "queued",
             "progress_done": 0, "progress_total": 0, "message": "queued",
             "cancel_requested": False, "created_at": at} for at, row_id in rows])
    return _newest_first(rows)


def _events(conn, kind: str = "ping") -> list[tuple[datetime, str]]:
    rows = [(_stamp(i), new_id("evt")) for i in range(ROWS)]
    conn.execute(t.events.insert(), [{"id": row_id, "type": kind, "payload": {},
                                      "created_at": at} for at, row_id in rows])
    return rows


def fill_events(wb) -> list[str]:
    with wb.db.write() as conn:
        return _newest_first(_events(conn))


def fill_deliveries(wb) -> list[str]:
    hook, _ = wb.webhooks.create("ci", "http://127.0.0.1:9/hook")
    with wb.db.write() as conn:
        events = _events(conn)
        rows = [(at, new_id("dlv")) for at, _ in events]
        conn.execute(t.webhook_deliveries.insert(), [
            {"id": row_id, "webhook_id": hook.id, "event_id": event_id, "status": "pending",
             "attempts": 0, "next_attempt_at": at, "created_at": at}
            for (at, row_id), (_, event_id) in zip(rows, events, strict=True)])
    return _newest_first(rows)


def fill_rule_runs(wb) -> list[str]:
    with wb.db.write() as conn:
        events = _events(conn, "annotation.created")
        rows = [(at, new_id("run"), event_id) for at, event_id in events]
        conn.execute(t.rule_runs.insert(), [
            {"id": row_id, "rule": "hard_negative", "event_id": event_id, "status": "done",
             "message": "", "created_at": at, "updated_at": at} for at, row_id, event_id in rows])
    # newest first; runs of the same moment by id, as the rules' log always read
    return [row_id for _, row_id, _ in sorted(rows, key=lambda r: (-r[0].timestamp(), r[1]))]


def fill_cluster_runs(wb) -> list[str]:
    rows = [(_stamp(i), new_id("clu")) for i in range(ROWS)]
    with wb.db.write() as conn:
        conn.execute(t.cluster_runs.insert(), [
            {"id": row_id, "collection_id": "col_x", "feature_uri": "f", "algorithm": "kmeans",
             "params": {}, "projection": "pca", "n_members": 0, "clusters": {}, "noise": 0,
             "seconds": {}, "created_at": at} for at, row_id in rows])
    return _newest_first(rows)


def fill_assignments(wb) -> list[str]:
    wb.references.create("refs", "x")
    taxonomy = wb.taxonomies.create("shapes", "refs", "flat", ["circle", "square"], 0.5, 1)
    ids = [f"det_{i:04d}" for i in range(ROWS)]
    with wb.db.write() as conn:
        conn.execute(t.taxonomy_assignments.insert(), [
            {"taxonomy_id": taxonomy.id, "detection_id": det, "collection_id": "col_x",
             "extractor_key": KEY, "label": "circle", "path": ["circle"], "score": 0.9,
             "fields": {}, "taxonomy_version": 1, "assigned_at": BASE}
            for det in reversed(ids)])  # inserted backwards: the order is the listing's own
    return ids


@dataclass(frozen=True)
class Listing:
    name: str
    fill: Callable[[Any], list[str]]  # the rows, in the order the listing serves them
    page: Callable[..., paging.Page]  # (wb, cursor, limit)
    first: Callable[..., list]  # the list the old method returns: (wb, limit)
    key: Callable[[Any], str]
    command: tuple[str, ...]  # the CLI listing


def _id(item) -> str:
    return item["id"] if isinstance(item, dict) else item.id


LISTINGS = [
    Listing("jobs", fill_jobs, lambda wb, c, n: wb.jobs.page(cursor=c, limit=n),
            lambda wb, n: wb.jobs.list(limit=n), _id, ("jobs", "--all")),
    Listing("events", fill_events, lambda wb, c, n: wb.events.page(cursor=c, limit=n),
            lambda wb, n: wb.events.recent(limit=n), _id, ("events",)),
    Listing("deliveries", fill_deliveries,
            lambda wb, c, n: wb.webhooks.deliveries_page("ci", cursor=c, limit=n),
            lambda wb, n: wb.webhooks.deliveries("ci", limit=n), _id,
            ("webhooks", "deliveries", "ci")),
    Listing("rule runs", fill_rule_runs,
            lambda wb, c, n: wb.rules.runs_page("hard_negative", cursor=c, limit=n),
            lambda wb, n: wb.rules.runs("hard_negative", limit=n), _id,
            ("rules", "runs", "hard_negative")),
    Listing("cluster runs", fill_cluster_runs,
            lambda wb, c, n: wb.clusters.page("x", cursor=c, limit=n),
            lambda wb, n: wb.clusters.list("x", limit=n), _id, ("cluster", "-c", "x")),
    Listing("assignments", fill_assignments,
            lambda wb, c, n: wb.taxonomies.assignments_page("shapes", cursor=c, limit=n),
            lambda wb, n: wb.taxonomies.assignments("shapes", limit=n),
            lambda item: item["detection_id"], ("taxonomy", "assignments", "shapes")),
]


@pytest.fixture(params=LISTINGS, ids=lambda listing: listing.name)
def filled(request, review_wb):
    """A workspace (with the hand-made collection ``x``) and ROWS rows of one listing."""
    return review_wb, request.param, request.param.fill(review_wb)


def test_paging_serves_every_row_once_in_order_with_the_total(filled):
    wb, listing, expected = filled
    seen, cursor, pages = [], None, 0
    while True:
        page = listing.page(wb, cursor, PAGE)
        assert (page.total, page.exact, page.start) == (ROWS, True, len(seen))
        seen += [listing.key(item) for item in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(page.items) == PAGE
    assert seen == expected
    assert pages == math.ceil(ROWS / PAGE)
    # the list the old method returns is the first page, whatever its length
    assert [listing.key(item) for item in listing.first(wb, ROWS)] == expected
    assert [listing.key(item) for item in listing.first(wb, 3)] == expected[:3]


def test_the_command_line_says_how_many_and_prints_the_next_cursor(filled):
    wb, listing, expected = filled
    runner, shown, cursor = CliRunner(), [], []
    for number in range(math.ceil(ROWS / CLI_PAGE) + 1):
        human = runner.invoke(app, ["--home", str(wb.home), *listing.command,
                                    "--limit", str(CLI_PAGE), *cursor])
        assert human.exit_code == 0, human.output
        first = number * CLI_PAGE
        assert f"{min(CLI_PAGE, ROWS - first)} of {ROWS} " in human.stdout
        assert (f", after the first {first}" in human.stdout) == bool(first)
        # --json: the rows alone on stdout, the count and the cursor beside them on stderr
        scripted = runner.invoke(app, ["--home", str(wb.home), "--json", *listing.command,
                                       "--limit", str(CLI_PAGE), *cursor])
        shown += [listing.key(row) for row in json.loads(scripted.stdout)]
        more = [line for line in human.stdout.splitlines() if line.startswith("more: --cursor ")]
        assert [line for line in scripted.stderr.splitlines()
                if line.startswith("more: --cursor ")] == more
        if not more:
            break
        cursor = ["--cursor", more[0].removeprefix("more: --cursor ")]
    assert shown == expected
    assert number == math.ceil(ROWS / CLI_PAGE) - 1  # the last page offers no cursor


def _cursor(state: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def test_a_job_submitted_while_paging_moves_no_row_between_pages(wb):
    expected = fill_jobs(wb)
    first = wb.jobs.page(limit=PAGE)
    wb.jobs.submit("ingest", {})  # newest: it belongs before the first page, not in the next
    second = wb.jobs.page(cursor=first.next_cursor, limit=PAGE)
    assert [j.id for j in first.items + second.items] == expected[:2 * PAGE]
    assert second.total == ROWS + 1


def test_active_jobs_are_never_capped(wb):
    expected = fill_jobs(wb)
    with wb.db.write() as conn:
        conn.execute(t.jobs.update().where(t.jobs.c.id == expected[0]).values(status="done"))
    assert [j.id for j in wb.jobs.active()] == expected[1:]  # 129, past the old cap of 100
    page = wb.jobs.page(("queued", "running"), limit=PAGE)
    assert page.total == ROWS - 1


@pytest.mark.parametrize(("cursor", "message"), [
    ("abc", "not one this workbench handed out"),
    ("!!!", "not one this workbench handed out"),
    (_cursor([1, 2]), "not one this workbench handed out"),
    (_cursor({"of": "jobs:x", "after": []}), "not one this workbench handed out"),
    (_cursor({"of": "jobs:x", "after": [], "seen": -1}), "not one this workbench handed out"),
    (_cursor({"of": "jobs:x", "after": [], "seen": True}), "not one this workbench handed out"),
    (_cursor({"of": "jobs:x", "after": "2025", "seen": 0}), "not one this workbench handed"),
    (_cursor({"of": "jobs:x", "after": [], "seen": 0}), "pages jobs under other filters"),
    (_cursor({"of": "events:x", "after": [], "seen": 0}), "pages events, not jobs"),
    ("FOREIGN", "pages events, not jobs"),
    ("OTHER_FILTER", "pages jobs under other filters"),
    ("SHORT", "names 1 sort keys; jobs pages by 2"),
    ("NUMBER_TIME", "its sort keys are not jobs'"),
    ("AWARE_TIME", "its sort keys are not jobs'"),
    ("NOT_A_TIME", "its sort keys are not jobs'"),
    ("NUMBER_ID", "its sort keys are not jobs'"),
])
def test_a_cursor_it_did_not_hand_out_is_refused(wb, cursor, message):
    wb.jobs.submit("ingest", {})
    wb.jobs.submit("ingest", {})
    real = wb.jobs.page(limit=1).next_cursor
    state = json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))
    at, job_id = state["after"]
    forged = {
        "FOREIGN": _cursor({**state, "of": "events:" + state["of"].partition(":")[2]}),
        "OTHER_FILTER": _cursor({**state, "of": "jobs:000000000000"}),
        "SHORT": _cursor({**state, "after": [at]}),
        "NUMBER_TIME": _cursor({**state, "after": [1735689600, job_id]}),
        "AWARE_TIME": _cursor({**state, "after": [at + "+02:00", job_id]}),
        "NOT_A_TIME": _cursor({**state, "after": ["yesterday", job_id]}),
        "NUMBER_ID": _cursor({**state, "after": [at, 7]}),
    }
    with pytest.raises(ValidationError, match=re.escape(message)):
        wb.jobs.page(cursor=forged.get(cursor, cursor), limit=1)
    assert [j.id for j in wb.jobs.page(cursor=real, limit=1).items]  # the real one pages


def test_a_cursor_of_other_filters_is_refused_on_every_listing(review_wb):
    wb = review_wb
    fill_events(wb)
    cursor = wb.events.page(limit=1).next_cursor
    with pytest.raises(ValidationError, match="pages events under other filters"):
        wb.events.page("batch.completed", cursor=cursor)
    with pytest.raises(ValidationError, match="pages events, not webhook deliveries"):
        wb.webhooks.deliveries_page(cursor=cursor)


def test_past_the_count_limit_a_page_says_more_than(wb, monkeypatch):
    monkeypatch.setattr(paging, "COUNT_LIMIT", 40)
    expected = fill_jobs(wb)
    page = wb.jobs.page(limit=PAGE)
    assert (page.total, page.exact) == (40, False)
    assert page.summary("jobs") == f"{PAGE} of more than 40 jobs"
    seen, cursor = [], None
    while True:  # the count is bounded, the paging is not
        page = wb.jobs.page(cursor=cursor, limit=PAGE)
        seen += [j.id for j in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == expected


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_a_page_holds_at_least_one_row(wb, limit):
    with pytest.raises(ValidationError, match="at least one row"):
        wb.jobs.page(limit=limit)


def test_an_empty_listing_has_no_footer(wb):
    page = wb.events.page()
    assert (page.items, page.total, page.next_cursor, page.footer("events")) == (
        [], 0, None, "")


def test_a_page_without_its_count_says_only_what_it_served(wb):
    """A caller that knows the total another way (the Detect grid, from the documents) pages
    without the count: the same rows, and a total that is a lower bound until the end."""
    import sqlalchemy as sa

    from workbench.jobs import _JOB_ORDER

    expected = fill_jobs(wb)
    served, cursor = [], None
    with wb.db.read() as conn:
        while True:
            page = _JOB_ORDER.page(conn, sa.select(t.jobs), cursor, PAGE,
                                   item=lambda row: row.id, count=False)
            served += page.items
            assert (page.total, page.exact) == (len(served), page.next_cursor is None)
            if (cursor := page.next_cursor) is None:
                break
    assert served == expected
    assert page.summary("jobs") == f"{ROWS % PAGE or PAGE} of {ROWS} jobs, after the " \
                                   f"first {ROWS - (ROWS % PAGE or PAGE)}"
