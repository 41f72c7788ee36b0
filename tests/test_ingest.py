"""Ingest: every bad input gets its own clear reason and leaves nothing behind."""

from __future__ import annotations

import io
import struct
import threading
import time
import zipfile
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from tests.conftest import image_bytes, noise_image_bytes, write_images
from workbench.errors import ValidationError
from workbench.images import Rejected, inspect_image
from workbench.ingest import Source
from workbench.store import tables as t

SCHEMA = {
    "properties": {
        "image": {"type": "image", "required": True},
        "camera_id": {"type": "text"},
        "frame": {"type": "integer"},
    }
}


def noisy_jpeg(size=(96, 64), seed=0) -> bytes:
    pixels = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def noisy_png(size=(96, 64), seed=0) -> bytes:
    pixels = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def zero_width_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 0, 10, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (noisy_jpeg(), None),
        (noisy_png(), None),
        (b"", "empty file"),
        (b"just some text, not pixels", "not an image"),
        (noisy_jpeg()[: len(noisy_jpeg()) // 2], "truncated or corrupt"),
        (noisy_png()[: len(noisy_png()) // 2], "truncated or corrupt"),
        (zero_width_png(), "no pixels"),
        (image_bytes(size=(300, 300)), "over the limit of 50,000"),
        (image_bytes(fmt="GIF"), "format GIF is not supported"),
    ],
    ids=["jpeg", "png", "zero-byte", "text", "truncated-jpeg", "truncated-png", "zero-px",
         "bomb", "gif"],
)
def test_inspect_image(data, reason):
    if reason is None:
        info = inspect_image(data, max_pixels=50_000)
        assert (info.width, info.height) == (96, 64)
    else:
        with pytest.raises(Rejected, match=reason):
            inspect_image(data, max_pixels=50_000)


def test_exif_orientation_swaps_the_stored_size(wb, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "portrait.jpg"
    path.write_bytes(image_bytes(size=(40, 20), exif=exif))
    wb.buckets.create("b")
    report = wb.ingest.run("b", [path])
    obj = wb.buckets.get_object(report.items[0].object_id)
    assert (obj.width, obj.height) == (20, 40)
    from workbench.images import load_image

    assert load_image(wb.image_path(obj)).size == (20, 40)


def _counts(wb):
    with wb.db.read() as conn:
        objects = conn.execute(sa.select(sa.func.count()).select_from(t.objects)).scalar()
    root = wb.settings.blobs_dir
    blobs = [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "tmp"]
    return objects, len(blobs)


def test_every_bad_input_is_reported_and_the_rest_of_the_batch_goes_in(wb, tmp_path):
    good = write_images(tmp_path / "good", 2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.txt").write_text("not an image")
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "cut.jpg").write_bytes(noisy_jpeg()[:500])
    (bad / "zero.png").write_bytes(zero_width_png())
    (bad / "huge.png").write_bytes(image_bytes(size=(400, 400), fmt="PNG"))
    link = bad / "dangling.jpg"
    link.symlink_to(bad / "gone.jpg")
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.jpg", noise_image_bytes(1))
        zf.writestr("/abs/path.jpg", noise_image_bytes(2))
        zf.writestr("fine/inside.jpg", noise_image_bytes(3))
    wb.settings.max_image_pixels = 100_000
    wb.buckets.create("b", SCHEMA)
    sources = [*good, bad / "notes.txt", bad / "empty.jpg", bad / "cut.jpg", bad / "zero.png",
               bad / "huge.png", link, tmp_path / "missing.jpg", archive,
               "ftp://example.com/x.jpg",
               Source(str(good[0]).replace("0000", "0001"), "wrong-type",
                      {"frame": "not-a-number"}),
               Source(str(good[0]), "unknown-field", {"camra_id": "x"})]
    report = wb.ingest.run("b", sources, metadata={"camera_id": "cam_1"})
    def by_source(name):
        (item,) = [i for i in report.items if i.source.endswith(name)]
        return item

    expected = {
        "notes.txt": "not an image",
        "empty.jpg": "empty file",
        "cut.jpg": "truncated or corrupt",
        "zero.png": "no pixels",
        "huge.png": "over the limit",
        "dangling.jpg": "no such file",
        "missing.jpg": "no such file",
        "evil.zip!../escape.jpg": "unsafe path in zip",
        "evil.zip!/abs/path.jpg": "unsafe path in zip",
        "example.com/x.jpg": "unsupported URL scheme 'ftp'",
        "wrong-type": "'frame' should be integer",
        "unknown-field": "'camra_id' is not in the schema",
    }
    for name, reason in expected.items():
        item = by_source(name)
        assert item.status == "rejected", (name, item)
        assert reason in item.reason, (name, item.reason)
    assert by_source("evil.zip!fine/inside.jpg").status == "accepted"
    assert report.accepted == 3 and report.rejected == len(expected)
    assert len(report.items) == len(sources) + 2  # the zip stands for three entries
    # Nothing rejected left a row or a blob; every stored object has its metadata.
    assert _counts(wb) == (3, 3)
    for obj in wb.buckets.objects(wb.buckets.get("b")):
        assert obj.metadata == {"camera_id": "cam_1"}


def test_bad_batch_metadata_fails_the_whole_call_before_anything_is_stored(wb, tmp_path):
    paths = write_images(tmp_path / "imgs", 2)
    wb.buckets.create("b", SCHEMA)
    with pytest.raises(ValidationError, match="'camra' is not in the schema"):
        wb.ingest.run("b", paths, metadata={"camra": "x"})
    with pytest.raises(ValidationError, match="should be integer"):
        wb.ingest.run("b", paths, metadata={"frame": "x"})
    wb.buckets.create("strict", {"properties": {"image": {"type": "image"},
                                                "site": {"type": "text", "required": True}}})
    with pytest.raises(ValidationError, match="required metadata field 'site' is missing"):
        wb.ingest.run("strict", paths)
    assert _counts(wb) == (0, 0)
    assert wb.jobs.list() == []


def test_same_bytes_are_one_blob_and_one_object_per_bucket(wb, tmp_path):
    paths = write_images(tmp_path / "imgs", 3)
    copy = tmp_path / "copy_of_first.jpg"
    copy.write_bytes(paths[0].read_bytes())
    wb.buckets.create("a")
    wb.buckets.create("b")
    first = wb.ingest.run("a", [*paths, copy])
    assert (first.accepted, first.duplicates) == (3, 1)
    assert first.items[-1].object_id == first.items[0].object_id
    again = wb.ingest.run("a", paths)
    assert (again.accepted, again.duplicates) == (0, 3)
    other = wb.ingest.run("b", paths[:1])
    assert other.accepted == 1  # another bucket gets its own object ...
    assert _counts(wb) == (4, 3)  # ... over the same blob


def test_folders_recurse_with_include_patterns_and_zips_are_read(wb, tmp_path):
    write_images(tmp_path / "root", 2, "a")
    write_images(tmp_path / "root" / "sub" / "deeper", 2, "b", fmt="PNG")
    (tmp_path / "root" / "readme.md").write_text("skip me")
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"frames/f{i}.JPG", noise_image_bytes(1000 + i))
        zf.writestr("frames/meta.csv", "a,b")
        zf.writestr("__MACOSX/frames/._f0.JPG", b"junk")
    wb.buckets.create("b")
    report = wb.ingest.run("b", [tmp_path / "root", archive])
    assert report.accepted == 7 and report.rejected == 0
    only_png = wb.ingest.run("b", [tmp_path / "root"], include=("*.png",))
    assert len(only_png.items) == 2 and only_png.duplicates == 2


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/slow.jpg":
            time.sleep(2)
        if self.path in ("/ok.jpg", "/slow.jpg"):
            body = image_bytes(color=(10, 200, 10))
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_urls_are_downloaded_and_failures_are_explained(wb, http_server, tmp_path):
    local = write_images(tmp_path / "imgs", 1)[0]
    wb.settings.url_timeout_s = 0.5
    wb.buckets.create("b")
    report = wb.ingest.run("b", [f"{http_server}/ok.jpg", f"{http_server}/missing.jpg",
                                 f"{http_server}/slow.jpg", local.as_uri()])
    status = [(i.status, i.reason) for i in report.items]
    assert status[0] == ("accepted", "")
    assert status[1][0] == "rejected" and "HTTP 404" in status[1][1]
    assert status[2][0] == "rejected" and "timed out after 0.5 s" in status[2][1]
    assert status[3] == ("accepted", "")


def test_an_unreadable_file_is_rejected_with_the_reason(wb, tmp_path, monkeypatch):
    # Tests run as root in CI, where chmod 000 does not stop a read: make the read fail.
    paths = write_images(tmp_path / "imgs", 2)
    original = Path.read_bytes

    def read_bytes(self):
        if self == paths[0]:
            raise PermissionError(13, "Permission denied")
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    wb.buckets.create("b")
    report = wb.ingest.run("b", paths)
    assert report.items[0].status == "rejected"
    assert "permission denied" in report.items[0].reason
    assert report.items[1].status == "accepted"


def test_submitted_ingest_runs_in_the_worker(wb, tmp_path):
    from workbench.jobs import Worker

    paths = write_images(tmp_path / "imgs", 5)
    wb.buckets.create("b")
    job = wb.ingest.submit("b", [tmp_path / "imgs"])
    assert job.status == "queued"
    assert Worker(wb).run(exit_when_idle=True) == 1
    finished = wb.jobs.get(job.id)
    assert finished.status == "done"
    assert finished.result == {"accepted": 5, "duplicate": 0, "rejected": 0}
    assert (finished.progress_done, finished.progress_total) == (5, 5)
    assert wb.ingest.report(job.id).accepted == len(paths)
