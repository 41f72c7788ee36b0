"""Dispatchers on several machines share one outbox on Postgres: each delivery is claimed
by one of them (``SELECT … FOR UPDATE SKIP LOCKED``) and sent once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from tests.conftest import fill_review
from tests.test_webhooks import Receiver, _annotate
from workbench import Workbench

pytestmark = pytest.mark.postgres


def test_two_dispatchers_on_one_database_send_each_delivery_once(tmp_path):
    receiver = Receiver()
    first = fill_review(Workbench.open(tmp_path / "a"))
    second = Workbench.open(tmp_path / "b")  # another machine's workspace, same database
    try:
        first.webhooks.create("ci", receiver.url, ["annotation.created"])
        _annotate(first, 60)
        start = threading.Barrier(2)

        def dispatch(wb):
            start.wait()
            while wb.webhooks.deliver_due(limit=3):
                pass

        threads = [threading.Thread(target=dispatch, args=(wb,)) for wb in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        sent = Counter(r["headers"]["X-Workbench-Delivery"] for r in receiver.requests)
        deliveries = first.webhooks.deliveries("ci")
        assert len(deliveries) == 60
        assert {d["status"] for d in deliveries} == {"delivered"}
        assert sent == {d["id"]: 1 for d in deliveries}
    finally:
        receiver.close()
        first.close()
        second.close()
