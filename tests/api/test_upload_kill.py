"""A server SIGKILLed while it receives an upload leaves no partial object: the upload was
only staged (an image becomes an object once its request has arrived whole), and the next
server removes what was staged."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx

from tests.api.conftest import wait_for_docs
from tests.api.test_serve import _free_port
from workbench import Workbench


def _serve(home, port):
    server = subprocess.Popen(
        [sys.executable, "-m", "workbench", "--home", str(home), "serve", "--port", str(port),
         "--no-worker"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_docs(server, f"http://127.0.0.1:{port}", lambda: server.stdout.read())
    return server


def _staged_bytes(staging) -> int:
    return sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()) \
        if staging.exists() else 0


def test_a_server_killed_during_an_upload_leaves_no_partial_object(home):
    port = _free_port()
    server = _serve(home, port)
    try:
        assert httpx.post(f"http://127.0.0.1:{port}/v1/buckets",
                          json={"name": "cams"}).status_code == 201
        boundary = "wbtestboundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                "filename=\"big.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
        body_length = len(head) + 8_000_000 + len(f"\r\n--{boundary}--\r\n")
        request = (f"POST /v1/buckets/cams/objects HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                   f"Content-Length: {body_length}\r\n\r\n").encode()
        staging = Workbench.open(home).settings.staging_dir
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request + head + b"\xff\xd8" + b"\x00" * 1_000_000)
            deadline = time.monotonic() + 30
            while _staged_bytes(staging) < 500_000:  # the server is writing it
                assert time.monotonic() < deadline, "the upload never reached the staging"
                time.sleep(0.05)
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    wb = Workbench.open(home)
    assert wb.buckets.count_objects(wb.buckets.get("cams")) == 0
    assert not [f for f in wb.settings.blobs_dir.rglob("*") if f.is_file()]
    assert any(staging.iterdir())  # the half-received upload, staged only
    wb.close()

    again = _serve(home, port)  # the next server removes it
    try:
        assert not any(staging.iterdir())
    finally:
        again.terminate()
        again.wait(timeout=30)


def test_the_sweep_leaves_an_upload_a_live_request_holds(tmp_path):
    from workbench.api.uploads import Upload, sweep

    live = Upload(tmp_path / "staging" / "live")
    live.hold()
    (live.folder / "part").write_bytes(b"x")
    assert sweep(tmp_path / "staging") == 0 and live.folder.exists()
    live._held.close()  # what a killed process's lock becomes
    live._held = None
    assert sweep(tmp_path / "staging") == 1 and not live.folder.exists()
