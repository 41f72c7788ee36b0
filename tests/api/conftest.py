"""An API client over the hand-made review workspace, and keys for it."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi.testclient import TestClient

from workbench.api import create_app
from workbench.api.app import ApiOptions
from workbench.api.keys import KeyService


def client_for(wb, **options) -> TestClient:
    """A TestClient over ``wb`` (raising server bugs instead of answering 500)."""
    return TestClient(create_app(wb, ApiOptions(**options)))


@pytest.fixture
def api(review_wb) -> TestClient:
    """An open loopback server: no key needed."""
    return client_for(review_wb)


@pytest.fixture
def keyed(review_wb):
    """A server that requires keys, and a token per role."""
    keys = KeyService(review_wb.db)
    _, admin = keys.create("ops", "admin")
    _, reviewer = keys.create("alice", "reviewer")
    client = client_for(review_wb, require_key=True)
    return client, {"admin": {"Authorization": f"Bearer {admin}"},
                    "reviewer": {"X-API-Key": reviewer}}


def wait_for_docs(server, base: str, output, seconds: float = 60) -> None:
    """Wait until a ``workbench serve`` process answers ``base``/docs; fail with
    ``output()`` (its log) if it exits first, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, output()
        try:
            if httpx.get(f"{base}/docs", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the server did not answer /docs in {seconds:.0f} s"
        time.sleep(0.2)
