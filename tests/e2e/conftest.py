"""A real app server and a real headless Chromium (Debian's; Playwright never downloads one)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_server(home: Path, request):
    """Serve app.py on a free port of 127.0.0.1 for one test; yield its base URL.

    Tests marked ``with_worker`` let the app start its background worker, as for a user.
    """
    port = _free_port()
    autostart = request.node.get_closest_marker("with_worker") is not None
    env = dict(os.environ, WORKBENCH_HOME=str(home),
               WORKBENCH_AUTOSTART_WORKER="true" if autostart else "false")
    log = open(home.parent / "streamlit.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError((home.parent / "streamlit.log").read_text()[-3000:])
        time.sleep(0.3)
    yield url
    if autostart:
        from workbench.jobs import stop_worker

        stop_worker(home)
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture
def browser():
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run must apt-get install chromium")
        pytest.skip("no Chromium here: apt-get install -y chromium to run browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, tmp_path, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(60_000)  # a busy 2-core CI machine
    yield tab
    shots = Path(os.environ.get("WORKBENCH_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(shots / f"{request.node.name}.png"), full_page=True)
    context.close()


def wait_idle(page) -> None:
    """Wait until the app has finished its run: a click or a key during a run may be lost,
    and an element found then may be replaced by the run's next render."""
    page.wait_for_function("() => !document.querySelector(\"[data-testid='stStatusWidget']\")"
                           " || !document.querySelector(\"[data-testid='stStatusWidget']\")"
                           ".innerText.includes('Running')")


def detected_scenes(home: Path, tmp_path: Path, images: int = 8, seed: int = 4):
    """The workspace at ``home`` with ``images`` cluttered ShapeWorld scenes in a bucket and
    a collection "scenes", detected by the starter at 320 px (what the search, retriever and
    image-review flows review)."""
    from tests.conftest import STARTER
    from workbench import Workbench
    from workbench.demo.shapeworld import SceneConfig, write_dataset
    from workbench.detection import DetectParams

    wb = Workbench.open(home)
    wb.buckets.create("scenes")
    scenes = write_dataset(tmp_path / "scenes", SceneConfig(clutter=3, min_objects=3), images,
                           seed=seed)
    wb.ingest.run("scenes", [scenes / "images"])
    wb.registry.register_yolo(STARTER, lineage={"imgsz": 320})
    wb.collections.create("scenes", ["scenes"])
    wb.detection.run("scenes", params=DetectParams(imgsz=320, conf=0.1))
    return wb
