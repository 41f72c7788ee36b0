"""In a real browser: names, file names, metadata and errors that hold Markdown show as the
characters they are, and the images they point to are never fetched."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import noise_image_bytes
from workbench import Workbench
from workbench.ingest import Source

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def tracker():
    """A local web server that records every path a browser asks it for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(noise_image_bytes(0, fmt="PNG"))

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()
    server.server_close()


def test_user_strings_are_shown_as_text_and_load_nothing(app_server, page, home, tmp_path,
                                                         tracker):
    base, asked = tracker
    note = f"![pixel]({base}/metadata.png) :red[alarm] **bold**"
    wb = Workbench.open(home)
    wb.buckets.create("cams", {"properties": {"image": {"type": "image"},
                                              "note": {"type": "text"}}})
    image = tmp_path / "frame_01.png"
    image.write_bytes(noise_image_bytes(1, fmt="PNG"))
    wb.ingest.run("cams", [Source(str(image), label="[site](mailto:me)_frame_01.png")],
                  metadata={"note": note})

    page.goto(f"{app_server}/Ingest")
    page.get_by_text("1 images · page 1 of 1").wait_for()
    page.get_by_text(f"note: {note}").wait_for()  # literally, not an image or red text
    page.get_by_text("[site](mailto:me)_frame_01.png").wait_for()
    assert page.locator(f"img[src^='{base}']").count() == 0
    assert page.locator("a[href^='mailto']").count() == 0

    # An error that quotes what was typed shows it as typed, too.
    page.get_by_text("Create a bucket").click()
    page.get_by_label("Bucket name").fill(f"![e]({base}/error.png)")
    page.get_by_role("button", name="Create bucket").click()
    page.get_by_text(f"bucket name '![e]({base}/error.png)' is not valid").wait_for()
    page.wait_for_timeout(1000)
    assert asked == []
