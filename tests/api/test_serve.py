"""``workbench serve`` as a real process on a free loopback port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import httpx
from typer.testing import CliRunner

from tests.api.conftest import wait_for_docs
from workbench.cli import app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_on_loopback(home):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "workbench", "--home", str(home), "serve", "--port", str(port),
         "--no-worker"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_docs(server, base, lambda: server.stdout.read())
        made = httpx.post(f"{base}/v1/buckets", json={"name": "cams"})
        assert made.status_code == 201 and made.json()["name"] == "cams"
        missing = httpx.get(f"{base}/v1/buckets/nope")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_keys_commands(home):
    runner = CliRunner()

    def cli(*args):
        result = runner.invoke(app, ["--home", str(home), *args])
        assert result.exit_code == 0, result.output
        return result.output

    made = json.loads(cli("--json", "keys", "create", "--name", "ci", "--role", "admin"))
    assert made["name"] == "ci" and made["key"].startswith("wbk_")
    listed = json.loads(cli("--json", "keys", "list"))
    assert [k["name"] for k in listed] == ["ci"] and "key" not in listed[0]
    assert "revoked" in cli("keys", "revoke", "ci")
    assert json.loads(cli("--json", "keys", "list")) == []
    assert len(json.loads(cli("--json", "keys", "list", "--all"))) == 1
    bad = runner.invoke(app, ["--home", str(home), "keys", "create", "--name", "x",
                              "--role", "owner"])
    assert bad.exit_code != 0
