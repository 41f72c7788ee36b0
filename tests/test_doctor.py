"""``workbench doctor`` through the command line: one line per check, what to do on a
failure, exit code 1 when any fails, ``--json`` for scripts; and it changes nothing."""

from __future__ import annotations

import json
import socket

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from workbench.cli import app

CHECKS = ["metadata", "models", "vectors", "blobs", "executor", "device"]


@pytest.fixture
def doctor(home, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(app, ["doctor", *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            result.output
        return result

    return invoke


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lines(result) -> dict[str, str]:
    """Each check's line, by the check's name."""
    found = {}
    for line in result.stdout.splitlines():
        status, name, *_ = line.split() + ["", ""]
        if status in ("ok", "FAIL") and name in CHECKS:
            found[name] = line
    return found


def test_a_healthy_workspace_passes_every_check(wb, doctor):
    result = doctor()
    assert result.exit_code == 0, result.output
    lines = _lines(result)
    assert list(lines) == CHECKS and all(line.startswith("ok ") for line in lines.values())
    assert "sqlite" in lines["metadata"] and "migrations current" in lines["metadata"]
    assert "embedded Chroma" in lines["vectors"]
    assert f"in the workspace {(wb.home / 'blobs').resolve()} writable" in lines["blobs"]
    assert lines["executor"].split()[2] == "local:"
    assert result.stdout.rstrip().endswith("all checks passed")

    report = json.loads(doctor("--json").stdout)
    assert report["ok"] is True and [c["name"] for c in report["checks"]] == CHECKS
    metadata, models = report["checks"][:2]
    assert metadata["ok"] and metadata["detail"].endswith(f"({wb.schema_version})")
    assert models["ok"] and models["detail"].startswith("0 registered version(s)")
    # Nothing was left behind: the blob root holds no probe file.
    assert list((wb.home / "blobs").rglob("*doctor*")) == []


def test_a_folder_with_no_workspace_says_init_and_creates_no_database(home, doctor):
    result = doctor()
    assert result.exit_code == 1
    line = _lines(result)["metadata"]
    assert line.startswith("FAIL") and "no database at" in line
    assert "run `workbench init`" in line
    assert not (home / "workbench.db").exists()
    assert result.stdout.rstrip().endswith("1 check(s) failed")


@pytest.mark.parametrize("revision, says", [
    ("0001", "behind"),
    ("9999", "newer than this code knows"),
])
def test_migrations_not_at_the_head_are_explained(wb, doctor, revision, says):
    with wb.db.write() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    result = doctor()
    assert result.exit_code == 1
    line = _lines(result)["metadata"]
    assert line.startswith("FAIL") and f"revision {revision}" in line and says in line
    assert ("workbench init" if says == "behind" else "upgrade the workbench") in line


def test_an_unreachable_database_names_it_without_its_password(home, doctor, monkeypatch):
    port = _free_port()
    monkeypatch.setenv("WORKBENCH_DATABASE_URL",
                       f"postgresql://team:s3cret@127.0.0.1:{port}/workbench")
    result = doctor()
    assert result.exit_code == 1
    line = _lines(result)["metadata"]
    assert line.startswith("FAIL")
    assert f"cannot connect to postgresql+psycopg://team:***@127.0.0.1:{port}/workbench" in line
    assert "fix WORKBENCH_DATABASE_URL" in line
    assert "s3cret" not in result.output


def test_a_chroma_server_that_is_down_fails_the_vectors_check(wb, doctor, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("WORKBENCH_CHROMA_URL", url)
    result = doctor("--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert report["ok"] is False and [c["name"] for c in failed] == ["vectors"]
    assert failed[0]["detail"].startswith(f"cannot reach the Chroma server at {url}")
    assert "chroma run --path <folder>" in failed[0]["fix"]


def test_a_blob_root_this_host_cannot_write_fails(wb, doctor, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("WORKBENCH_BLOB_ROOT", str(tmp_path / "a-file" / "blobs"))
    line = _lines(doctor())["blobs"]
    assert line.startswith("FAIL") and "is not writable from this host" in line
    assert "fix WORKBENCH_BLOB_ROOT" in line


def test_a_ray_head_that_does_not_answer_fails_the_executor_check(wb, doctor, monkeypatch):
    pytest.importorskip("ray")
    port = _free_port()
    monkeypatch.setenv("WORKBENCH_EXECUTOR", "ray")
    monkeypatch.setenv("WORKBENCH_RAY_ADDRESS", f"127.0.0.1:{port}")
    line = _lines(doctor())["executor"]
    assert line.startswith("FAIL") and f"cannot reach the Ray head at 127.0.0.1:{port}" in line
    assert f"ray start --head --port {port}" in line


def test_a_device_that_does_not_exist_fails_and_says_what_does(wb, doctor, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DEVICE", "cuda:7")
    result = doctor()
    assert result.exit_code == 1
    line = _lines(result)["device"]
    assert line.startswith("FAIL") and "'cuda:7' was asked for" in line


def test_a_setting_that_cannot_be_read_is_one_failed_line(home, doctor, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CHROMA_URL", "chroma.internal:8000")
    result = doctor()
    assert result.exit_code == 1
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("FAIL")]
    assert line.startswith("FAIL  settings") and "write it as http://host:port" in line


def test_a_registered_model_whose_files_are_not_on_this_host_fails(wb, doctor, tmp_path,
                                                                   starter_weights):
    """Another host registered it (its weights are under that host's WORKBENCH_HOME): this
    one cannot run it until the shared models folder is linked in."""
    import shutil

    wb.registry.register_yolo(starter_weights, version="1.0.0")
    shared = tmp_path / "shared-models"
    shutil.move(wb.home / "models", shared)  # as if registered on another host
    line = _lines(doctor())["models"]
    assert line.startswith("FAIL") and "1 registered model file(s) are not on this host" in line
    assert "yolo_detector@1.0.0 (models/yolo_detector/1.0.0/weights.pt)" in line
    assert f"link {(wb.home / 'models').resolve()} to the models folder" in line
    (wb.home / "models").symlink_to(shared, target_is_directory=True)
    line = _lines(doctor())["models"]
    assert line.startswith("ok") and "1 registered version(s), every file present" in line
