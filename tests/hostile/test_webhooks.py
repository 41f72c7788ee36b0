"""Webhooks against hostile URLs and receivers: refused at creation, or failing one delivery
alone; disabled, enabled and deleted; nothing due is left behind by a worker that exits."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import sqlalchemy as sa

from tests.conftest import REPO, fill_review
from tests.test_webhooks import Receiver, _annotate
from workbench import Workbench
from workbench.errors import ValidationError
from workbench.store import tables as t

ROWS = [
    ("newline", "http://127.0.0.1:9/a\nb", "must not hold whitespace or control characters"),
    ("carriage-return-header-injection", "http://127.0.0.1:9/a\r\nX-Evil: 1",
     "must not hold whitespace or control characters"),
    ("tab", "http://127.0.0.1:9/\tx", "must not hold whitespace or control characters"),
    ("space", "http://exa mple.com/x", "must not hold whitespace or control characters"),
    ("null-byte", "http://127.0.0.1:9/\x00", "must not hold whitespace or control characters"),
    ("delete-char", "http://127.0.0.1:9/\x7f", "must not hold whitespace or control characters"),
    ("no-host", "http:///path", "with a host"),
    ("javascript", "javascript:alert(1)", "http:// or https://"),
    ("file", "file:///etc/passwd", "http:// or https://"),
    ("no-scheme", "example.com/hook", "http:// or https://"),
    ("port-out-of-range", "http://127.0.0.1:70000/", "cannot be used"),
    ("port-not-a-number", "http://127.0.0.1:http/", "cannot be used"),
    ("broken-ipv6", "http://[::1/hook", "cannot be used"),
    ("too-long", "http://127.0.0.1:9/" + "a" * 2100, "at most 2000 characters"),
    ("empty", "", "needs a URL"),
]


@pytest.mark.parametrize(("url", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_a_url_that_cannot_be_sent_to_is_refused_at_creation(review_wb, url, message):
    with pytest.raises(ValidationError, match=message):
        review_wb.webhooks.create("bad", url)
    assert review_wb.webhooks.list() == []


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def test_a_bad_stored_url_fails_its_own_delivery_and_stalls_no_other(review_wb, receiver):
    """A URL stored before validation existed raised httpx.InvalidURL in the dispatcher:
    nothing was recorded and the healthy receiver got the same delivery every 30 s."""
    wb = review_wb
    wb.webhooks.create("good", receiver.url)
    bad, _ = wb.webhooks.create("bad", "http://127.0.0.1:9/x")
    with wb.db.write() as conn:  # as an older version let it in
        conn.execute(t.webhooks.update().where(t.webhooks.c.id == bad.id)
                     .values(url="http://127.0.0.1:9/a\nb"))
    _annotate(wb)
    assert wb.webhooks.deliver_due() == 2
    assert wb.webhooks.deliver_due() == 0  # nothing claimed twice
    (good,) = wb.webhooks.deliveries("good")
    (failed,) = wb.webhooks.deliveries("bad")
    assert good["status"] == "delivered" and len(receiver.requests) == 1
    assert failed["status"] == "pending" and failed["attempts"] == 1
    assert "InvalidURL" in failed["last_error"]
    (attempt,) = wb.webhooks.attempts(failed["id"])
    assert "InvalidURL" in attempt["error"]


def test_disable_holds_deliveries_enable_sends_them_delete_removes_the_log(review_wb, receiver):
    wb = review_wb
    wb.webhooks.create("w", receiver.url)
    wb.webhooks.set_active("w", False)
    wb.webhooks.ping("w")
    assert wb.webhooks.deliver_due() == 0 and receiver.requests == []
    wb.webhooks.set_active("w", True)
    assert wb.webhooks.deliver_due() == 1 and len(receiver.requests) == 1
    _annotate(wb, 2)
    wb.webhooks.deliver_due()
    with wb.db.read() as conn:
        events_before = len(conn.execute(sa.select(t.events.c.id)).all())
    removed = wb.webhooks.delete("w")
    assert removed == {"deliveries": 3, "attempts": 3}
    assert wb.webhooks.list() == []
    with wb.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(
            t.webhook_deliveries)).scalar_one() == 0
        assert len(conn.execute(sa.select(t.events.c.id)).all()) == events_before


def test_the_cli_disables_enables_and_deletes(review_wb, receiver):
    wb = review_wb
    wb.webhooks.create("w", receiver.url)
    base = [sys.executable, "-m", "workbench", "--home", str(wb.home), "webhooks"]

    def run(*args):
        return subprocess.run([*base, *args], capture_output=True, text=True, cwd=REPO)

    assert "disabled" in run("disable", "w").stdout
    assert not wb.webhooks.get("w").active
    assert "enabled" in run("enable", "w").stdout
    assert wb.webhooks.get("w").active
    assert "deleted webhook 'w'" in run("delete", "w", "--yes").stdout
    assert wb.webhooks.list() == []


def test_a_receiver_that_answers_again_gets_its_backlog_at_once(review_wb):
    wb = review_wb
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    wb.webhooks.create("later", f"http://127.0.0.1:{port}/hook")
    _annotate(wb, 5)
    wb.webhooks.deliver_due()  # refused: each waits its own backoff
    assert {d["status"] for d in wb.webhooks.deliveries("later")} == {"pending"}
    receiver = Receiver(port=port)
    try:
        wb.webhooks.ping("later")  # a fresh one, due now: it gets through...
        wb.webhooks.deliver_due()
        wb.webhooks.deliver_due()  # ...and the backlog follows without waiting
        assert {d["status"] for d in wb.webhooks.deliveries("later")} == {"delivered"}
        assert len(receiver.requests) == 6
    finally:
        receiver.close()


def test_worker_exit_when_idle_sends_what_is_due_first(tmp_path, receiver):
    wb = fill_review(Workbench.open(tmp_path / "ws"))
    wb.webhooks.create("w", receiver.url)
    _annotate(wb, 3)
    result = subprocess.run([sys.executable, "-m", "workbench", "--home", str(wb.home),
                             "worker", "--exit-when-idle"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(receiver.requests) == 3
    assert {json.loads(r["body"])["type"] for r in receiver.requests} == {"annotation.created"}
    assert {d["status"] for d in wb.webhooks.deliveries("w")} == {"delivered"}
