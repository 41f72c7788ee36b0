"""The command line: human output by default, JSON with --json, one-line errors."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.conftest import write_images
from workbench.cli import app


@pytest.fixture
def cli(home):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, ["--home", str(home), *map(str, args)])

    return invoke


def test_init_then_ingest_then_list(cli, tmp_path):
    assert "(schema 00" in cli("init").output
    paths = write_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"nope")
    result = cli("ingest", tmp_path / "imgs", "--bucket", "cams", "--meta", "camera_id=c1")
    assert result.exit_code == 0, result.output
    assert "created bucket 'cams' with text fields camera_id" in result.output
    assert "broken.jpg: not an image" in result.output
    assert "3 accepted, 0 duplicate, 1 rejected (of 4)" in result.output
    listed = json.loads(cli("--json", "buckets").output)
    assert listed[0]["name"] == "cams" and listed[0]["images"] == len(paths)
    jobs = json.loads(cli("--json", "jobs", "--all").output)
    assert jobs[0]["status"] == "done" and jobs[0]["result"]["accepted"] == 3


def test_json_report_lists_every_input(cli, tmp_path):
    write_images(tmp_path / "imgs", 2)
    report = json.loads(cli("--json", "ingest", tmp_path / "imgs", "-b", "x").output)
    assert [item["status"] for item in report["items"]] == ["accepted", "accepted"]


def test_buckets_create_with_typed_fields(cli):
    result = cli("buckets", "create", "cams", "--field", "camera_id:text:required",
                 "--field", "frame:integer")
    assert result.exit_code == 0
    schema = json.loads(cli("--json", "buckets").output)[0]["schema"]
    assert schema["properties"]["camera_id"] == {"type": "text", "required": True}


def test_errors_exit_non_zero_with_one_line(home, tmp_path):
    write_images(tmp_path / "imgs", 1)
    base = [sys.executable, "-m", "workbench", "--home", str(home)]
    subprocess.run([*base, "buckets", "create", "cams", "--field", "frame:integer"], check=True,
                   capture_output=True)
    result = subprocess.run([*base, "ingest", str(tmp_path / "imgs"), "-b", "cams",
                             "--meta", "frame=abc"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: metadata field 'frame' should be integer, got 'abc'"]
    missing = subprocess.run([*base, "jobs", "show", "job_nope"], capture_output=True, text=True)
    assert missing.returncode == 1 and "no job with id 'job_nope'" in missing.stderr


def test_queue_then_worker(cli, tmp_path):
    write_images(tmp_path / "imgs", 4)
    cli("buckets", "create", "b")
    queued = json.loads(cli("--json", "ingest", tmp_path / "imgs", "-b", "b", "--queue").output)
    assert queued["status"] == "queued"
    assert cli("worker", "--exit-when-idle").exit_code == 0
    done = json.loads(cli("--json", "jobs", "show", queued["id"]).output)
    assert done["status"] == "done" and done["progress_done"] == 4
