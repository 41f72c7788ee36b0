"""docs/tutorial.md, replayed: its requests, read from the document itself, run with curl
against a real ``workbench serve`` (uvicorn, keys required, with its worker) on a demo
workspace; each answer's status and shape are checked against what the document says.

The document's conventions (what this test reads):

- a ```bash block holds one step: ``curl …`` or ``VAR=$(curl … | jq -r PATH)`` (a request,
  the answer's PATH kept as ``$VAR`` for later steps), ``VAR=$(jq -r PATH FILE)`` (a value
  from a saved answer), ``wait_for /v1/…`` (poll until ``status`` is done), and comments;
  ``# → 201`` says the status the request answers;
- a ```json block right after a request's block is the shape of its answer: every key it
  shows must be in the real answer (nested objects and the first item of lists too);
- ```python blocks are the facade's calls beside each step (they must compile); ```console
  blocks are set-up and variations, not replayed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import wait_for_docs
from tests.api.test_serve import _free_port
from tests.conftest import noise_image_bytes

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
STATUS = re.compile(r"#\s*→\s*(\d{3})")
CAPTURE = re.compile(r"^(\w+)=\$\((.*)\s*\|\s*jq -r '?([^')]+)'?\s*\)$", re.S)
FROM_FILE = re.compile(r"^(\w+)=\$\(jq -r '?([^' ]+)'? (\S+)\)$")
WAIT = re.compile(r"^wait_for (\S+)$")
PATH_PART = re.compile(r"\.(\w+)|\[(\d+)\]")
DEMO_SCALE = 0.1  # 15 scenes: every step of the tutorial, in seconds


def steps(text: str) -> list[dict]:
    """The document's bash blocks as steps, each with the json block that follows it (with
    no other block between them)."""
    found: list[dict] = []
    previous = None
    for match in BLOCK.finditer(text):
        kind, body = match.group(1), match.group(2)
        if kind == "bash":
            status = STATUS.search(body)
            found.append({"lines": commands(body),
                          "status": int(status.group(1)) if status else None,
                          "shape": None, "at": text[:match.start()].count("\n") + 1})
        elif kind == "json" and previous == "bash":
            found[-1]["shape"] = json.loads(body)
        previous = kind
    return found


def commands(body: str) -> list[str]:
    """A block's commands: comment lines dropped, a command running on over backslashed line
    ends, open quotes (a JSON body over several lines) or an open ``$(``."""
    found, current = [], ""
    for line in body.replace("\\\n", " ").splitlines():
        if not current and (not line.strip() or line.strip().startswith("#")):
            continue
        current += line + "\n"
        try:
            shlex.split(current)
        except ValueError:  # a quote is still open
            continue
        if re.match(r"\w+=\$\(", current) and not current.rstrip().endswith(")"):
            continue
        found.append(current.strip())
        current = ""
    assert not current, f"an unfinished command: {current!r}"
    return found


def pick(value, path: str):
    """``.results[0].detection_id`` of an answer (jq's simplest paths)."""
    for name, index in PATH_PART.findall(path):
        value = value[name] if name else value[int(index)]
    return value


def has_shape(answer, shape, where="answer") -> None:
    """Every key the document shows is in the answer, nested objects and first items too."""
    if isinstance(shape, dict):
        assert isinstance(answer, dict), f"{where} is not an object: {answer!r:.200}"
        missing = sorted(set(shape) - set(answer))
        assert not missing, f"{where} lacks {missing}; it has {sorted(answer)}"
        for key, inner in shape.items():
            if isinstance(inner, dict | list) and inner and answer[key] is not None:
                has_shape(answer[key], inner, f"{where}.{key}")
    elif isinstance(shape, list) and shape:
        assert isinstance(answer, list) and answer, f"{where} is not a non-empty list"
        has_shape(answer[0], shape[0], f"{where}[0]")


def test_every_syntax_of_the_tutorial_is_understood():
    """Each bash line is one this test runs, each python block compiles: the document can
    only say what the replay checks."""
    text = TUTORIAL.read_text()
    found = steps(text)
    assert len(found) >= 30
    for step in found:
        for line in step["lines"]:
            assert (line.startswith("curl ") or CAPTURE.match(line) or FROM_FILE.match(line)
                    or WAIT.match(line)), f"line {step['at']}: cannot replay {line!r}"
        if any("curl " in line for line in step["lines"]):
            assert step["status"], f"line {step['at']}: a request without '# → STATUS'"
    for match in BLOCK.finditer(text):
        if match.group(1) == "python":
            compile(match.group(2), "tutorial", "exec")
    assert "## 10." in text


@pytest.fixture
def demo(home):
    """A demo workspace (the tutorial's `workbench demo`, smaller) and an admin key."""
    from workbench import Workbench
    from workbench.api.keys import KeyService

    wb = Workbench.open(home)
    wb.demo.setup(scale=DEMO_SCALE)
    _, key = KeyService(wb.db).create("tutorial", "admin")
    wb.close()
    return home, key


def test_the_tutorial_replays_against_a_real_server(demo, tmp_path, starter_weights):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (the tutorial's requests are curl commands)")
    from workbench.jobs import stop_worker

    demo_home, key = demo
    # The files the tutorial uploads, where it says they are.
    cwd = tmp_path / "tutorial"
    (cwd / "runs/detect/yolo_v2_finetuned/weights").mkdir(parents=True)
    shutil.copy(starter_weights, cwd / "runs/detect/yolo_v2_finetuned/weights/best.pt")
    (cwd / "frame_001.jpg").write_bytes(noise_image_bytes(1, (320, 240)))

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "workbench", "--home", str(demo_home), "serve", "--port",
         str(port), "--require-key", "--worker"], stdout=log, stderr=subprocess.STDOUT)
    env = {**os.environ, "WB": base, "WB_KEY": key}
    try:
        wait_for_docs(server, base, lambda: (tmp_path / "serve.log").read_text()[-3000:])
        for step in steps(TUTORIAL.read_text()):
            for line in step["lines"]:
                _replay(line, step, env, cwd)
    finally:
        server.terminate()
        server.wait(timeout=30)
        stop_worker(demo_home)
        log.close()


def _replay(line: str, step: dict, env: dict, cwd: Path) -> None:
    where = f"docs/tutorial.md line {step['at']}"
    if wait := WAIT.match(line):
        path = _expand(wait.group(1), env)
        deadline = time.monotonic() + 120
        while True:
            answer = httpx.get(env["WB"] + path, headers={"X-API-Key": env["WB_KEY"]}).json()
            if answer.get("status") == "done":
                return
            assert answer.get("status") in ("queued", "running"), \
                f"{where}: {path} is {answer.get('status')}: {answer.get('message')}; " \
                f"{answer.get('error') or ''}"[-3000:]
            assert time.monotonic() < deadline, f"{where}: {path} not done in 120 s"
            time.sleep(0.5)
    if found := FROM_FILE.match(line):
        name, path, file = found.groups()
        env[name] = str(pick(json.loads((cwd / file).read_text()), path))
        return
    capture = CAPTURE.match(line)
    command, name, path = (capture.group(2), capture.group(1), capture.group(3)) if capture \
        else (line, None, None)
    done = subprocess.run(["bash", "-c", f"{command} -w '\\n%{{http_code}}'"], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{where}: curl failed: {done.stderr}"
    body, _, status = done.stdout.rpartition("\n")
    if " -o " in f" {command} ":
        out = shlex.split(command)[shlex.split(command).index("-o") + 1]
        body = "" if out.endswith(".zip") else (cwd / out).read_text()
    answer = json.loads(body) if body.strip() else None
    assert int(status) == step["status"], f"{where}: {status} instead of {step['status']}: " \
                                          f"{body[:2000]}"
    if step["shape"] is not None:
        has_shape(answer, step["shape"])
    if name is not None:
        env[name] = str(pick(answer, path))


def _expand(text: str, env: dict) -> str:
    return re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: env[m.group(1) or m.group(2)], text)
