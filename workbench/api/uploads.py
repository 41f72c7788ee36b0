"""Multipart uploads streamed to a staging folder as they arrive: never held whole in memory,
refused (413) the moment they pass the size limit, and hashed on the way (the hash is what an
``Idempotency-Key`` compares)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from workbench.api.errors import ApiError

MAX_FIELD_BYTES = 64 * 1024  # a form field (the metadata JSON); files have their own limit
MAX_FILES = 1000


@dataclass
class Upload:
    """What one multipart request carried: its files on disk and its form fields."""

    folder: Path
    files: list[tuple[Path, str]] = field(default_factory=list)  # (where, the client's name)
    fields: dict[str, str] = field(default_factory=dict)
    digest: str = ""  # sha256 of the files' bytes and the fields, in order

    def json_field(self, name: str) -> dict[str, Any]:
        """A form field holding a JSON object (``{}`` when absent)."""
        text = self.fields.get(name)
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiError(422, "validation_error", f"form field {name!r} is not JSON ({exc})"
                           ) from None
        if not isinstance(value, dict):
            raise ApiError(422, "validation_error", f"form field {name!r} must be a JSON "
                           f"object, got {type(value).__name__}")
        return value

    _held: Any = None  # the open lock file that marks the folder as in use

    def hold(self) -> None:
        """Make the folder and lock it for this process: a server killed mid-upload leaves
        it unlocked, and the next server's :func:`sweep` removes it."""
        self.folder.mkdir(parents=True)
        self._held = open(self.folder / LOCK_NAME, "w")  # noqa: SIM115 - held till discard
        fcntl.flock(self._held, fcntl.LOCK_EX)

    def discard(self) -> None:
        """Remove the staged files."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._held is not None:
            self._held.close()
            self._held = None


LOCK_NAME = ".in-use"
UNLOCKED_GRACE_S = 60  # a folder not locked yet (just made) is left alone this long


def sweep(staging: Path) -> int:
    """Remove uploads that no live process holds (a server killed while receiving one);
    returns how many. What it removes never became an object: an upload is ingested only
    once it has arrived whole."""
    removed = 0
    for folder in staging.iterdir() if staging.is_dir() else ():
        if not folder.is_dir():
            continue
        lock = folder / LOCK_NAME
        if not lock.exists():
            if time.time() - folder.stat().st_mtime > UNLOCKED_GRACE_S:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
            continue
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live request's
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


class _Parser:
    """python-multipart callbacks that write each file part straight to its own file."""

    def __init__(self, upload: Upload, limit: int):
        self.upload, self.limit, self.size = upload, limit, 0
        self.hash = hashlib.sha256()
        self._header, self._value, self._disposition = b"", b"", b""
        self._name: str | None = None
        self._file = None
        self._data = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self._begin, "on_part_data": self._part_data,
                "on_part_end": self._end, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished}

    def _begin(self) -> None:
        self._disposition, self._name, self._file, self._data = b"", None, None, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise ApiError(400, "bad_request", "a multipart part has no name in its "
                           "Content-Disposition")
        self._name = options[b"name"].decode("utf-8", "replace")
        self.hash.update(b"\0" + self._name.encode())
        if b"filename" in options:
            if len(self.upload.files) >= MAX_FILES:
                raise ApiError(413, "payload_too_large", f"at most {MAX_FILES} files per upload")
            client_name = PurePath(options[b"filename"].decode("utf-8", "replace")).name
            self.hash.update(b"\0" + client_name.encode())
            target = self.upload.folder / f"{len(self.upload.files):05d}" / (client_name or
                                                                             "upload")
            target.parent.mkdir(parents=True)
            self._file = open(target, "wb")  # noqa: SIM115 (closed at the part's end)
            self.upload.files.append((target, client_name or "upload"))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        self.hash.update(chunk)
        if self._file is None:
            if len(self._data) + len(chunk) > MAX_FIELD_BYTES:
                raise ApiError(413, "payload_too_large", f"form field {self._name!r} is over "
                               f"{MAX_FIELD_BYTES // 1024} KiB")
            self._data.extend(chunk)
            return
        self.size += len(chunk)
        if self.size > self.limit:
            raise _too_large(self.limit)
        self._file.write(chunk)

    def _end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name is not None:
            self.upload.fields[self._name] = self._data.decode("utf-8", "replace")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the upload is over the limit of {limit:,} bytes "
                    "(serve --max-upload-mb raises it); send fewer or smaller files per "
                    "request", {"limit_bytes": limit})


async def receive(request: Request, staging: Path, limit: int) -> Upload:
    """Stream a ``multipart/form-data`` request into a new folder under ``staging``; the
    caller discards it when done. 413 past ``limit`` bytes of files, 415 for another type."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError(415, "unsupported_media_type", "upload images as multipart/form-data: "
                       "one or more 'file' parts and an optional 'metadata' part holding a "
                       "JSON object")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MAX_FIELD_BYTES * 4:
        raise _too_large(limit)
    upload = Upload(staging / uuid.uuid4().hex)
    upload.hold()
    parser = _Parser(upload, limit)
    multipart = MultipartParser(params[b"boundary"], parser.callbacks())
    try:
        async for chunk in request.stream():
            multipart.write(chunk)
        multipart.finalize()
    except MultipartParseError as exc:
        parser.close()
        upload.discard()
        raise ApiError(400, "bad_request", f"the multipart body is malformed: {exc}") from None
    except BaseException:
        parser.close()
        upload.discard()
        raise
    parser.close()
    upload.digest = parser.hash.hexdigest()
    return upload
