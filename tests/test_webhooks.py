"""Webhooks against a real local HTTP receiver: signatures, retries, a receiver that is down,
a dispatcher killed mid-delivery, the outbox written with the change."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from tests.conftest import REPO
from workbench import webhooks as hooks
from workbench.errors import ValidationError
from workbench.store import tables as t


class Receiver:
    """A threaded HTTP server that records every request; ``script`` gives status codes."""

    def __init__(self, port: int = 0, script: list[int] | None = None, delay_s: float = 0.0):
        self.requests: list[dict] = []
        self.script = list(script or [])
        self.delay_s = delay_s
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"headers": dict(self.headers), "body": body})
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                code = outer.script.pop(0) if outer.script else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def start(**kwargs):
        made.append(Receiver(**kwargs))
        return made[-1]

    yield start
    for r in made:
        r.close()


@pytest.fixture
def no_wait(monkeypatch):
    monkeypatch.setattr(hooks, "backoff_s", lambda attempt, cap_s=0.0: 0.0)


def _annotate(wb, n: int = 1):
    """Real changes that emit annotation.created (hand-made detections of review_wb)."""
    collection = wb.collections.get("x")
    ids = ["obj_a_0", "obj_a_1", "obj_b_0", "obj_b_1", "obj_c_0"]
    return [wb.annotations.create(document_id=ids[i % 5], collection_id=collection.id,
                                  label="confirmed") for i in range(n)]


def test_a_signed_event_verifies_with_the_documented_recipe(review_wb, receivers):
    wb = review_wb
    receiver = receivers()
    hook, secret = wb.webhooks.create("ci", receiver.url, ["annotation.created"])
    assert secret.startswith("whsec_") and hook.secret_hint == "…" + secret[-4:]
    assert secret not in repr(wb.webhooks.get("ci"))  # masked after creation
    (made,) = _annotate(wb)
    assert wb.webhooks.deliver_due() == 1
    (request,) = receiver.requests
    headers, body = request["headers"], request["body"]
    # The recipe from the module docstring, written out by hand:
    expected = "sha256=" + hmac.new(secret.encode(), headers["X-Workbench-Timestamp"].encode()
                                    + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, headers["X-Workbench-Signature"])
    assert hooks.verify_signature(secret, headers["X-Workbench-Timestamp"], body,
                                  headers["X-Workbench-Signature"])
    assert not hooks.verify_signature("wrong", headers["X-Workbench-Timestamp"], body,
                                      headers["X-Workbench-Signature"])
    assert not hooks.verify_signature(secret, headers["X-Workbench-Timestamp"], body + b" ",
                                      headers["X-Workbench-Signature"])
    payload = json.loads(body)
    assert payload["type"] == headers["X-Workbench-Event"] == "annotation.created"
    assert payload["data"]["annotation_id"] == made.id and payload["id"].startswith("evt_")
    (delivery,) = wb.webhooks.deliveries("ci")
    assert delivery["status"] == "delivered" and headers["X-Workbench-Delivery"] == delivery["id"]


def test_the_outbox_row_is_written_with_the_change_and_filtered_by_event(review_wb, receivers):
    wb = review_wb
    receiver = receivers()
    wb.webhooks.create("only-batches", receiver.url, ["batch.completed"])
    wb.webhooks.create("everything", receiver.url, ["*"])
    _annotate(wb, 2)
    by_hook = {h.name: len(wb.webhooks.deliveries(h.name)) for h in wb.webhooks.list()}
    assert by_hook == {"everything": 2, "only-batches": 0}
    # A change that is refused (rolled back) leaves no event and no delivery behind.
    with pytest.raises(ValidationError):
        wb.annotations.create(document_id="obj_a_0", collection_id="col_x", label="missed")
    assert len(wb.webhooks.deliveries("everything")) == 2


def test_two_500s_then_200_is_delivered_on_the_third_attempt(review_wb, receivers, no_wait):
    wb = review_wb
    receiver = receivers(script=[500, 500, 200])
    wb.webhooks.create("flaky", receiver.url)
    _annotate(wb)
    for _ in range(3):
        wb.webhooks.deliver_due()
    (delivery,) = wb.webhooks.deliveries("flaky")
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
    attempts = wb.webhooks.attempts(delivery["id"])
    assert [a["status_code"] for a in attempts] == [500, 500, 200]
    assert attempts[0]["error"].startswith("HTTP 500") and attempts[2]["error"] is None
    assert len({r["headers"]["X-Workbench-Delivery"] for r in receiver.requests}) == 1


def test_retries_for_the_window_then_gives_up_and_redelivers_by_hand(home, receivers, no_wait):
    from tests.conftest import fill_review
    from workbench import Workbench

    wb = fill_review(Workbench.open(home, webhook_retry_window_s=1.0))
    receiver = receivers(script=[503] * 50)
    wb.webhooks.create("down", receiver.url)
    _annotate(wb)
    wb.webhooks.deliver_due()
    (delivery,) = wb.webhooks.deliveries("down")
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)  # inside the window
    time.sleep(1.1)
    wb.webhooks.deliver_due()
    (delivery,) = wb.webhooks.deliveries("down")
    assert (delivery["status"], delivery["attempts"]) == ("failed", 2)
    assert "retry window closed" in delivery["last_error"]
    receiver.script.clear()
    wb.webhooks.redeliver(delivery["id"])  # a fresh window
    wb.webhooks.deliver_due()
    assert wb.webhooks.deliveries("down")[0]["status"] == "delivered"


def test_a_receiver_down_longer_than_six_attempts_is_still_retried(review_wb, receivers):
    """The default window is a day: the old policy gave up after six attempts (~35 s)."""
    wb = review_wb
    assert wb.settings.webhook_retry_window_s == 86_400
    receiver = receivers(script=[503] * 12)
    wb.webhooks.create("flaky", receiver.url)
    _annotate(wb)
    for _ in range(12):
        with wb.db.write() as conn:  # time passes: each retry falls due
            conn.execute(t.webhook_deliveries.update().values(
                next_attempt_at=sa.func.datetime("now", "-1 second")))
        wb.webhooks.deliver_due()
    (delivery,) = wb.webhooks.deliveries("flaky")
    assert (delivery["status"], delivery["attempts"]) == ("pending", 12)
    assert delivery["next_attempt_at"] > delivery["created_at"]
    with wb.db.write() as conn:
        conn.execute(t.webhook_deliveries.update().values(
            next_attempt_at=sa.func.datetime("now", "-1 second")))
    wb.webhooks.deliver_due()
    assert wb.webhooks.deliveries("flaky")[0]["status"] == "delivered"


def test_backoff_grows_with_jitter_and_a_cap():
    waits = [hooks.backoff_s(n, 300.0) for n in range(1, 12)]
    assert waits[0] < waits[3] < waits[6]
    assert max(waits) <= 300.0 + 1 + 1e-9


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_receiver_down_for_a_while_gets_every_event_when_it_returns(review_wb, receivers,
                                                                      no_wait):
    wb = review_wb
    port = _free_port()
    wb.webhooks.create("later", f"http://127.0.0.1:{port}/hook")
    _annotate(wb, 12)
    wb.webhooks.deliver_due()  # connection refused, twelve times
    pending = wb.webhooks.deliveries("later")
    assert {d["status"] for d in pending} == {"pending"}
    assert all("ConnectError" in (d["last_error"] or "") for d in pending)
    receiver = receivers(port=port)
    wb.webhooks.deliver_due()
    assert {d["status"] for d in wb.webhooks.deliveries("later")} == {"delivered"}
    got = {json.loads(r["body"])["id"] for r in receiver.requests}
    with wb.db.read() as conn:
        emitted = set(conn.execute(sa.select(t.events.c.id).where(
            t.events.c.type == "annotation.created")).scalars())
    assert got == emitted and len(got) == 12


def test_a_dispatcher_killed_mid_delivery_redelivers_with_the_same_id(review_wb, receivers):
    wb = review_wb
    receiver = receivers(delay_s=30)  # holds the first request open
    wb.webhooks.create("slow", receiver.url)
    _annotate(wb)
    script = ("import sys, threading; from workbench import Workbench; "
              "wb = Workbench.open(sys.argv[1]); wb.webhooks.deliver_due()")
    child = subprocess.Popen([sys.executable, "-c", script, str(wb.home)], cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    deadline = time.monotonic() + 60
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.1)
    assert receiver.requests, "the dispatcher never sent"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    (delivery,) = wb.webhooks.deliveries("slow")
    assert delivery["status"] == "delivering"  # claimed, never settled
    assert wb.webhooks.deliver_due() == 0  # its lease has not run out yet
    with wb.db.write() as conn:  # time passes: the lease runs out
        conn.execute(t.webhook_deliveries.update().values(
            lease_until=sa.func.datetime("now", "-1 minute")))
    receiver.delay_s = 0
    assert wb.webhooks.deliver_due() == 1
    ids = [r["headers"]["X-Workbench-Delivery"] for r in receiver.requests]
    assert ids == [delivery["id"], delivery["id"]]
    assert wb.webhooks.deliveries("slow")[0]["status"] == "delivered"


@pytest.mark.parametrize(("url", "events", "message"), [
    ("ftp://example.com/x", ["*"], "http:// or https://"),
    ("http://", ["*"], "with a host"),
    ("http://127.0.0.1:9/x", ["annotation.made"], "unknown event type"),
])
def test_bad_webhooks_are_refused(review_wb, url, events, message):
    with pytest.raises(ValidationError, match=message):
        review_wb.webhooks.create("bad", url, events)


def test_ping_and_inactive_hooks(review_wb, receivers):
    wb = review_wb
    receiver = receivers()
    wb.webhooks.create("p", receiver.url, ["batch.completed"])
    delivery_id = wb.webhooks.ping("p")
    wb.webhooks.deliver_due()
    (request,) = receiver.requests
    assert request["headers"]["X-Workbench-Event"] == "ping"
    assert request["headers"]["X-Workbench-Delivery"] == delivery_id
    wb.webhooks.set_active("p", False)
    wb.webhooks.ping("p")
    wb.webhooks.deliver_due()
    assert len(receiver.requests) == 1


def test_the_worker_delivers_while_it_waits_for_jobs(review_wb, receivers):
    from workbench.jobs import Worker

    wb = review_wb
    receiver = receivers()
    wb.webhooks.create("w", receiver.url)
    worker = threading.Thread(target=Worker(wb).run, kwargs={"idle_exit_s": 4}, daemon=True)
    worker.start()
    _annotate(wb, 3)
    deadline = time.monotonic() + 10
    while len(receiver.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(receiver.requests) == 3
    worker.join(timeout=15)
    assert not worker.is_alive()
