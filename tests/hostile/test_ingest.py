"""Hostile inputs to ``workbench ingest``: each row is one file, folder or zip entry and the
report line it must get; nothing it refuses leaves an object or a blob behind."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import noise_image_bytes
from tests.hostile.conftest import Snapshot
from workbench import Workbench

LIMIT = 1_000_000  # bytes (WORKBENCH_MAX_DOWNLOAD_BYTES, the limit of every file)
PIXELS = 4_000_000  # WORKBENCH_MAX_IMAGE_PIXELS


def _bmp(size=(800, 600)) -> bytes:  # 1.44 MB: over LIMIT, and compresses to almost nothing
    buffer = io.BytesIO()
    Image.new("RGB", size, (40, 90, 200)).save(buffer, format="BMP")
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size in a few bytes (a pixel bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _lying_zip(path: Path) -> Path:
    """A zip whose headers say its entry is 1,000 bytes while it inflates to 5 MB."""
    _zip(path, {"liar.png": b"\0" * 5_000_000})
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        struct.pack_into("<I", data, at + offset, 1000)  # uncompressed size
    path.write_bytes(bytes(data))
    return path


def _outside_link(tmp: Path, kind: str) -> Path:
    folder = tmp / "photos"
    folder.mkdir(exist_ok=True)
    secret = tmp / "private"
    secret.mkdir(exist_ok=True)
    (secret / "id.png").write_bytes(noise_image_bytes(7, fmt="PNG"))
    link = folder / ("linked.png" if kind == "file" else "linked")
    link.symlink_to(secret / "id.png" if kind == "file" else secret)
    return folder


# (id, make the input in a temp folder, the report line it must get)
ROWS = [
    ("zip-bomb-entry", lambda tmp: _zip(tmp / "bomb.zip", {"zeros.png": b"\0" * 50_000_000}),
     "zip entry is 50,000,000 bytes uncompressed, over the 1,000,000 limit"),
    ("zip-entry-lies-about-its-size", lambda tmp: _lying_zip(tmp / "liar.zip"),
     "cannot read zip entry"),
    ("zip-bmp-over-the-limit", lambda tmp: _zip(tmp / "bmp.zip", {"big.bmp": _bmp()}),
     "over the 1,000,000 limit"),
    ("file-bmp-over-the-limit", lambda tmp: (tmp / "big.bmp").write_bytes(_bmp()) and
     tmp / "big.bmp", "over the 1,000,000 limit"),
    ("zip-pixel-bomb", lambda tmp: _zip(tmp / "px.zip", {"px.png": _png_header_only(
        3_000, 3_000)}), "9,000,000 pixels, over the limit of 4,000,000"),
    ("file-pixel-bomb", lambda tmp: (tmp / "px.png").write_bytes(_png_header_only(
        3_000, 3_000)) and tmp / "px.png", "9,000,000 pixels, over the limit of 4,000,000"),
    ("zip-slip", lambda tmp: _zip(tmp / "slip.zip", {"../../evil.png": noise_image_bytes(
        1, fmt="PNG")}), "unsafe path in zip archive"),
    ("zip-absolute-entry", lambda tmp: _zip(tmp / "abs.zip", {"/etc/evil.png":
                                                               noise_image_bytes(2, fmt="PNG")}),
     "unsafe path in zip archive"),
    ("zip-windows-drive", lambda tmp: _zip(tmp / "drive.zip", {"C:/evil.png":
                                                                noise_image_bytes(3, fmt="PNG")}),
     "unsafe path in zip archive"),
    ("not-a-zip", lambda tmp: (tmp / "fake.zip").write_text("nope") and tmp / "fake.zip",
     "not a readable zip archive"),
    ("link-to-a-file-outside", lambda tmp: _outside_link(tmp, "file"),
     "symbolic link to a file outside the folder"),
    ("link-to-a-folder-outside", lambda tmp: _outside_link(tmp, "folder"),
     "symbolic link to a folder outside the folder"),
    ("ftp-url", lambda tmp: "ftp://example.com/a.png", "unsupported URL scheme 'ftp'"),
    ("javascript-url", lambda tmp: "javascript://alert(1)", "unsupported URL scheme"),
    ("missing-path", lambda tmp: tmp / "absent.png", "no such file or folder"),
    ("empty-file", lambda tmp: (tmp / "e.png").write_bytes(b"") == 0 and tmp / "e.png",
     "empty file (0 bytes)"),
    ("text-named-jpg", lambda tmp: (tmp / "t.jpg").write_text("hello") and tmp / "t.jpg",
     "not an image"),
    ("truncated-png", lambda tmp: (tmp / "cut.png").write_bytes(
        noise_image_bytes(4, size=(200, 200), fmt="PNG")[:3000]) and tmp / "cut.png",
     "truncated or corrupt"),
    ("gif", lambda tmp: (tmp / "a.gif").write_bytes(_gif()) and tmp / "a.gif",
     "format GIF is not supported"),
]


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


@pytest.fixture
def limits(monkeypatch):
    monkeypatch.setenv("WORKBENCH_MAX_DOWNLOAD_BYTES", str(LIMIT))
    monkeypatch.setenv("WORKBENCH_MAX_IMAGE_PIXELS", str(PIXELS))


@pytest.mark.parametrize(("make", "reason"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_refused_with_its_reason_and_nothing_stored(cli, loaded_home, tmp_path, limits, make,
                                                    reason):
    source = make(tmp_path)
    before = Snapshot.of(loaded_home)
    outcome = cli(loaded_home, "ingest", source, "-b", "cams")
    assert outcome.code == 1, outcome.out  # nothing accepted
    rejected = [line.strip() for line in outcome.out.splitlines()
                if line.strip().startswith("rejected")]
    assert len(rejected) == 1 and reason in rejected[0], outcome.out
    changed = before.changes(Snapshot.of(loaded_home))
    # The report itself (a job and its lines) is all that is written.
    assert set(changed) == {"rows"} and set(changed["rows"]) == {"jobs", "ingest_items"}


def test_a_link_inside_the_folder_is_taken_and_follow_symlinks_takes_the_rest(cli, own_copy,
                                                                            tmp_path):
    folder = _outside_link(tmp_path, "file")
    (folder / "own.png").write_bytes(noise_image_bytes(8, fmt="PNG"))
    (folder / "again.png").symlink_to(folder / "own.png")  # inside: fine, a duplicate
    outcome = cli(own_copy, "ingest", folder, "-b", "cams")
    assert "1 accepted, 1 duplicate, 1 rejected (of 3)" in outcome.out, outcome.out
    outcome = cli(own_copy, "ingest", folder, "-b", "cams", "--follow-symlinks")
    assert "1 accepted, 2 duplicate, 0 rejected (of 3)" in outcome.out, outcome.out


def test_a_loop_of_links_is_walked_once_with_follow_symlinks(cli, own_copy, tmp_path):
    folder = tmp_path / "loop"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.png").write_bytes(noise_image_bytes(9, fmt="PNG"))
    (folder / "sub" / "back").symlink_to(folder)
    outcome = cli(own_copy, "ingest", folder, "-b", "cams", "--follow-symlinks")
    assert "1 accepted, 0 duplicate, 0 rejected (of 1)" in outcome.out, outcome.out


def test_a_queued_relative_path_is_read_where_it_was_typed(cli, own_copy, tmp_path,
                                                          monkeypatch):
    from workbench.jobs import Worker

    (tmp_path / "here" / "imgs").mkdir(parents=True)
    (tmp_path / "here" / "imgs" / "a.png").write_bytes(noise_image_bytes(10, fmt="PNG"))
    monkeypatch.chdir(tmp_path / "here")
    assert cli(own_copy, "ingest", "imgs", "-b", "cams", "--queue").code == 0
    monkeypatch.chdir(tmp_path)  # the worker runs somewhere else
    wb = Workbench.open(own_copy)
    Worker(wb).run(exit_when_idle=True)
    (job,) = [j for j in wb.jobs.list() if j.kind == "ingest" and j.status == "done"
              and j.result.get("accepted") == 1]
    assert wb.ingest.report(job.id).items[0].source.endswith(os.path.join("imgs", "a.png"))
