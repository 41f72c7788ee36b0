"""Blobs on a shared path (``WORKBENCH_BLOB_ROOT``): the setting moves every image there,
workspaces on several hosts share its content-addressed files, and a write killed halfway
leaves no partial blob where a reader would find it. (Runs in the main suite: no engine.)"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import write_images
from workbench import Workbench
from workbench.store.blobs import BlobStore, sha256_of


def _blob_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp")


def test_the_setting_moves_blobs_to_the_shared_root(tmp_path, monkeypatch):
    shared = tmp_path / "nfs" / "blobs"
    monkeypatch.setenv("WORKBENCH_BLOB_ROOT", str(shared))
    images = write_images(tmp_path / "imgs", 3)
    host_a = Workbench.open(tmp_path / "host-a")
    host_a.buckets.create("cams")
    report = host_a.ingest.run("cams", [str(p) for p in images])
    assert report.accepted == 3
    files = _blob_files(shared)
    assert len(files) == 3
    assert not (tmp_path / "host-a" / "blobs").exists()  # nothing in the workspace
    objects = host_a.buckets.objects(host_a.buckets.get("cams"), limit=10)
    for obj in objects:
        path = host_a.image_path(obj)
        assert path in files and sha256_of(path.read_bytes()) == obj.sha256
    # Another host's workspace on the same root stores the same images once.
    stamps = {p: p.stat().st_mtime_ns for p in files}
    host_b = Workbench.open(tmp_path / "host-b")
    host_b.buckets.create("cams")
    assert host_b.ingest.run("cams", [str(p) for p in images]).accepted == 3
    assert {p: p.stat().st_mtime_ns for p in _blob_files(shared)} == stamps  # not rewritten
    assert not (tmp_path / "host-b" / "blobs").exists()


def test_a_write_killed_halfway_leaves_no_partial_blob(tmp_path):
    """SIGKILL in the middle of a blob's bytes: its path holds nothing (the half written is
    in a temporary file under tmp/, never renamed), and writing it again gives the whole."""
    root = tmp_path / "shared"
    data = os.urandom(200_000)
    sha = sha256_of(data)
    code = ("import sys\nfrom workbench.store.blobs import BlobStore, sha256_of\n"
            "data = sys.stdin.buffer.read()\n"
            f"BlobStore({str(root)!r}).put(data, sha256_of(data), '.jpg')\n")
    killed = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                            env={**os.environ, "WORKBENCH_CRASH_AT": "blobs.half_written"})
    assert killed.returncode == -9, killed.stderr.decode()
    store = BlobStore(root)
    assert not store.exists(sha, ".jpg") and not store.path_for(sha, ".jpg").exists()
    assert _blob_files(root) == []
    (partial,) = (root / "tmp").iterdir()  # the kill happened halfway, not before
    assert partial.suffix == ".part" and partial.stat().st_size == len(data) // 2
    assert store.put(data, sha, ".jpg").read_bytes() == data
    assert store.read(sha, ".jpg") == data
