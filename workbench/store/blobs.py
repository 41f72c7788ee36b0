"""Content-addressed image files: ``<root>/<sha[:2]>/<sha[2:4]>/<sha><ext>``.

A blob is written to a temporary file in the root's ``tmp/`` folder and renamed into place
(``os.replace``, atomic within one filesystem, which the root's own folder always is), so a
crash leaves either the whole file or nothing at its path: on a root shared by several hosts
(``WORKBENCH_BLOB_ROOT`` on an NFS mount, say), no host ever reads half an image another is
writing. The extension is kept because FiftyOne and browsers infer the media type from it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from workbench.errors import NotFoundError
from workbench.faults import crash_point


def sha256_of(data: bytes) -> str:
    """The hex SHA-256 of bytes: the key a blob is stored under."""
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Image bytes on disk, addressed by their hash and written atomically."""

    def __init__(self, root: Path, fsync: bool = True):
        self.root = Path(root)
        self.fsync = fsync
        self._tmp = self.root / "tmp"

    def path_for(self, sha256: str, ext: str) -> Path:
        """Where the blob of ``sha256`` with extension ``ext`` lives (whether or not it does)."""
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}{ext}"

    def exists(self, sha256: str, ext: str) -> bool:
        """Whether that blob is on disk."""
        return self.path_for(sha256, ext).is_file()

    def put(self, data: bytes, sha256: str, ext: str) -> Path:
        """Store bytes under their hash (which the caller has computed); idempotent."""
        target = self.path_for(sha256, ext)
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix=sha256[:12], suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                half = len(data) // 2
                handle.write(data[:half])
                handle.flush()  # (the half reaches the file, as it would before a kill)
                crash_point("blobs.half_written")  # a kill here must leave no blob
                handle.write(data[half:])
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return target

    def read(self, sha256: str, ext: str) -> bytes:
        """A blob's bytes; NotFoundError if its file is missing."""
        path = self.path_for(sha256, ext)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"blob {sha256}{ext} is missing from {self.root}; the workspace was changed "
                "outside the workbench — re-ingest the image"
            ) from None
