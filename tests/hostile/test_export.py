"""Export writes a new folder and renames it into place: an earlier export is replaced only
once the new one is whole, and a crash or a kill leaves it as it was."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.hostile.conftest import Snapshot
from workbench import Workbench
from workbench import export as exporting


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_an_earlier_export_is_replaced_and_an_empty_folder_filled(cli, own_copy, tmp_path):
    out = tmp_path / "dataset"
    assert cli(own_copy, "export", "c", "--out", out).code == 0
    (out / "stale.txt").write_text("from the old export")
    assert cli(own_copy, "export", "c", "--out", out, "--val", "0.5").code == 0
    assert not (out / "stale.txt").exists() and (out / "data.yaml").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    (tmp_path / "empty").mkdir()
    assert cli(own_copy, "export", "c", "--out", tmp_path / "empty").code == 0
    assert (tmp_path / "empty" / "manifest.json").exists()


def test_a_failure_while_writing_leaves_the_earlier_export_whole(own_copy, tmp_path,
                                                                monkeypatch):
    wb = Workbench.open(own_copy)
    out = tmp_path / "dataset"
    wb.export.yolo("c", out)
    before = _files(out)
    calls = []

    def fail_on_the_second(source, target, link):
        calls.append(target)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(source, target, link)

    original = exporting._place_image
    monkeypatch.setattr(exporting, "_place_image", fail_on_the_second)
    with pytest.raises(OSError, match="disk full"):
        wb.export.yolo("c", out)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "ws"]  # no partial left


def test_a_kill_before_the_rename_leaves_the_earlier_export_whole(cli, own_copy, tmp_path):
    out = tmp_path / "dataset"
    assert cli(own_copy, "export", "c", "--out", out).code == 0
    before = _files(out)
    workspace = Snapshot.of(own_copy)
    result = subprocess.run([sys.executable, "-m", "workbench", "--home", str(own_copy),
                             "export", "c", "--out", str(out), "--val", "0.5"], cwd=REPO,
                            env=dict(os.environ, WORKBENCH_CRASH_AT="outdir.complete"),
                            capture_output=True)
    assert result.returncode == -9
    assert _files(out) == before
    assert workspace.changes(Snapshot.of(own_copy)) == {}
    assert cli(own_copy, "export", "c", "--out", out, "--val", "0.5").code == 0
    assert _files(out) != before
