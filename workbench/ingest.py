"""Ingest: files, folders, zip archives, URLs and uploads become image objects in a bucket.

A video among the inputs becomes many image objects: its frames, sampled at the job's rate
(see :mod:`workbench.video`), each with ``video``, ``frame_index`` and ``timestamp`` metadata;
its one report line says how many frames were kept, or why the video was refused.

Every ingest is a job. Its inputs are first expanded into numbered report lines
(``ingest_items``); then pending lines are processed in batches. A batch's blobs are written
first (atomically, content-addressed), then its object rows, report lines and job progress are
committed in one transaction. A killed ingest therefore resumes exactly where it stopped, and
a rejected input never leaves a row or a partial file behind.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import sqlalchemy as sa

from workbench.buckets import MetadataValidator, object_from_row
from workbench.config import DEFAULT_INCLUDE
from workbench.domain import Bucket, ImageObject, IngestItem, IngestReport, Job
from workbench.errors import JobFailed, NotFoundError, ValidationError
from workbench.faults import crash_point
from workbench.images import ImageInfo, Rejected, inspect_image
from workbench.store import tables as t
from workbench.store.blobs import sha256_of
from workbench.store.metadata import new_id, utcnow
from workbench.video import (
    VIDEO_PATTERNS,
    SamplingStats,
    check_fps,
    encode_frame,
    frame_metadata,
    is_video,
    sample_frames,
)

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.jobs import JobContext, ProgressListener

@dataclass(frozen=True)
class Source:
    """One thing to ingest: a path, folder, zip or URL, with optional per-item metadata.

    ``label`` is what the report shows (an uploaded file's own name rather than the staging
    path it was saved to).
    """

    locator: str
    label: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The form kept in an ingest job's parameters."""
        return {"locator": self.locator, "label": self.label, "metadata": self.metadata}


# -- expanding sources into report lines ----------------------------------------------------
def _matches(name: str, patterns: Iterable[str]) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatch(lowered, pattern.lower()) for pattern in patterns)


def _unsafe_zip_name(name: str) -> bool:
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return True
    return ".." in PurePosixPath(normalised).parts


def expand_source(source: Source, include: tuple[str, ...], follow_symlinks: bool = False
                  ) -> Iterator[tuple[str, dict, str]]:
    """Yield ``(label, locator, rejection)`` for every image a source stands for.

    ``rejection`` is empty for inputs to process and holds the reason for ones that are
    refused before reading (zip-slip entries, missing paths, unsupported URL schemes, links
    in a folder that lead out of it unless ``follow_symlinks``).
    """
    loc = source.locator
    label = source.label or loc
    meta = source.metadata
    scheme = urlparse(loc).scheme.lower() if "://" in loc else ""
    if scheme in ("http", "https"):
        yield label, {"kind": "url", "url": loc, "metadata": meta}, ""
        return
    if scheme == "file":
        loc = url2pathname(unquote(urlparse(loc).path))
    elif scheme:
        yield label, {"kind": "url", "url": loc, "metadata": meta}, (
            f"unsupported URL scheme {scheme!r}; use http(s)://, file:// or a local path"
        )
        return
    path = Path(loc).expanduser()
    if path.is_dir():
        yield from _expand_folder(path, source, include, follow_symlinks)
        return
    if path.suffix.lower() == ".zip" and path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                entries = [info for info in archive.infolist() if not info.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            yield label, {"kind": "file", "path": str(path)}, f"not a readable zip archive: {exc}"
            return
        for info in entries:
            shown = f"{label}!{info.filename}"
            locator = {"kind": "zip", "path": str(path.resolve()), "entry": info.filename,
                       "metadata": meta}
            if _unsafe_zip_name(info.filename):
                yield shown, locator, (
                    "unsafe path in zip archive (absolute or containing '..'); entry not read"
                )
            elif _matches(PurePosixPath(info.filename).name, include) and not (
                info.filename.startswith("__MACOSX/")
            ):
                yield shown, locator, ""
        return
    if not path.exists():
        yield label, {"kind": "file", "path": str(path)}, "no such file or folder"
        return
    yield label, {"kind": "file", "path": str(path.resolve()), "metadata": meta}, ""


def _expand_folder(path: Path, source: Source, include: tuple[str, ...],
                   follow_symlinks: bool) -> Iterator[tuple[str, dict, str]]:
    """The images of a folder tree, in a stable order. A symbolic link that leads out of the
    folder is reported and skipped (a folder of someone's images must not pull in
    ``~/.ssh`` or ``/etc``) unless ``follow_symlinks``; with it, linked folders are walked
    too, each real folder once (no loops)."""
    root = path.resolve()
    meta = source.metadata
    errors: list[OSError] = []
    found, outside = [], []
    seen: set[Path] = set()
    for folder, dirs, files in os.walk(path, onerror=errors.append, followlinks=follow_symlinks):
        here = Path(folder)
        real = here.resolve()
        if real in seen:  # a link back to a folder walked already
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        for name in list(dirs):
            link = here / name
            if link.is_symlink() and not follow_symlinks:
                dirs.remove(name)
                target = link.resolve()
                if not (target == root or root in target.parents):
                    outside.append((link, target, "folder"))
        for name in sorted(files):
            file = here / name
            if not _matches(name, include):
                continue
            if file.is_symlink() and not follow_symlinks:
                target = file.resolve()
                if not (root in target.parents):
                    outside.append((file, target, "file"))
                    continue
            found.append(file)
    for error in errors:
        yield str(error.filename), {"kind": "file", "path": str(error.filename)}, (
            f"cannot read folder: {error.strerror}"
        )
    for link, target, kind in outside:
        shown = str(link.relative_to(path)) if source.label else str(link)
        yield shown, {"kind": "file", "path": str(link)}, (
            f"symbolic link to a {kind} outside the folder ({target}); skipped — ingest with "
            "--follow-symlinks to follow links"
        )
    for file in found:
        shown = str(file.relative_to(path)) if source.label else str(file)
        yield shown, {"kind": "file", "path": str(file.resolve()), "metadata": meta}, ""


def _absolute(source: Source) -> Source:
    """A local path made absolute in this process's folder (the worker that reads it runs in
    another); the report still shows what was typed."""
    loc = source.locator
    if "://" in loc:
        return source
    path = Path(loc).expanduser()
    if path.is_absolute():
        return source
    label = source.label or (None if path.is_dir() else loc)
    return replace(source, locator=str(path.absolute()), label=label)


# -- reading one input ---------------------------------------------------------------------
class _Reader:
    """Reads the bytes behind a locator; keeps zip archives open for a whole run."""

    def __init__(self, timeout_s: float, max_bytes: int):
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._zips: dict[str, zipfile.ZipFile] = {}
        self._http = None

    def read(self, locator: dict) -> bytes:
        kind = locator["kind"]
        if kind == "file":
            return self._read_file(Path(locator["path"]))
        if kind == "zip":
            archive = self._zips.get(locator["path"])
            if archive is None:
                archive = self._zips[locator["path"]] = zipfile.ZipFile(locator["path"])
            return self._read_zip_entry(archive, locator["entry"])
        return self._read_url(locator["url"])

    def _read_file(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise Rejected(f"file is {size:,} bytes, over the {self.max_bytes:,} limit")
            return path.read_bytes()
        except FileNotFoundError:
            raise Rejected("no such file") from None
        except PermissionError:
            raise Rejected("permission denied: the file cannot be read") from None
        except IsADirectoryError:
            raise Rejected("is a folder, not a file") from None
        except OSError as exc:
            raise Rejected(f"cannot read file: {exc.strerror or exc}") from None

    def _read_zip_entry(self, archive: zipfile.ZipFile, entry: str) -> bytes:
        """An entry's bytes, streamed: the size its header declares and the size it really
        inflates to are both held to the same limit as a file's (a small zip can inflate to
        gigabytes, and a header can lie)."""
        try:
            info = archive.getinfo(entry)
            if info.file_size > self.max_bytes:
                raise Rejected(f"zip entry is {info.file_size:,} bytes uncompressed, over the "
                               f"{self.max_bytes:,} limit")
            chunks, size = [], 0
            with archive.open(info) as stream:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise Rejected(f"zip entry inflates past the {self.max_bytes:,}-byte "
                                       "limit (its header understates its size)")
                    chunks.append(chunk)
            return b"".join(chunks)
        except (zipfile.BadZipFile, KeyError, OSError, EOFError, RuntimeError,
                NotImplementedError, ValueError) as exc:
            raise Rejected(f"cannot read zip entry: {exc}") from None

    def _read_url(self, url: str) -> bytes:
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout_s, follow_redirects=True)
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise Rejected(
                        f"HTTP {response.status_code} {response.reason_phrase} from the URL"
                    )
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise Rejected(f"download is over the {self.max_bytes:,}-byte limit")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException:
            raise Rejected(f"timed out after {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise Rejected(f"download failed: {exc}") from None

    def close(self) -> None:
        for archive in self._zips.values():
            archive.close()
        if self._http is not None:
            self._http.close()


@dataclass
class _Checked:
    seq: int
    source: str
    metadata: dict[str, Any] | None = None
    data: bytes | None = None
    sha256: str | None = None
    info: ImageInfo | None = None
    reason: str = ""


def _object_row(bucket: Bucket, item: _Checked, object_id: str, now) -> dict[str, Any]:
    """The objects-table row of a checked input."""
    return {
        "id": object_id,
        "bucket_id": bucket.id,
        "sha256": item.sha256,
        "width": item.info.width,
        "height": item.info.height,
        "format": item.info.format,
        "size_bytes": len(item.data),
        "source": item.source,
        "metadata": item.metadata,
        "created_at": now,
    }


# -- videos --------------------------------------------------------------------------------
def _is_video_row(row) -> bool:
    """Whether a pending report line stands for a video (by its file, entry or URL name)."""
    locator = row.locator
    name = locator.get("entry") or locator.get("path") or urlparse(locator.get("url", "")).path
    return is_video(name)


@contextmanager
def _video_file(locator: dict, reader: _Reader) -> Iterator[Path]:
    """A path the decoder can open: a local video as it is (streamed, however large); a zip
    entry or a download read within the usual size limit into a temporary file."""
    if locator["kind"] == "file":
        path = Path(locator["path"])
        if not path.is_file():
            raise Rejected("no such file")
        yield path
        return
    data = reader.read(locator)
    name = locator.get("entry") or urlparse(locator["url"]).path
    with tempfile.TemporaryDirectory(prefix="workbench-video-") as folder:
        path = Path(folder) / f"video{PurePosixPath(name).suffix.lower()}"
        path.write_bytes(data)
        yield path


@dataclass
class _VideoTally:
    """The frames of one video stored so far: new ones and ones the bucket held already."""

    new: int = 0
    duplicate: int = 0
    first_id: str | None = None

    def count(self, object_id: str, new: bool) -> None:
        if self.first_id is None:
            self.first_id = object_id
        if new:
            self.new += 1
        else:
            self.duplicate += 1

    def report_line(self, stats: SamplingStats, fps: float) -> dict[str, Any]:
        """The video's report line: accepted when a frame was new, else duplicate."""
        reason = (
            f"video ({stats.frames_read} frames at {stats.fps:g} fps): {stats.sampled} sampled "
            f"at {fps:g} fps, {stats.near_identical} near-identical skipped, {self.new} new"
            + (f", {self.duplicate} already in the bucket" if self.duplicate else "")
        )
        status = "accepted" if self.new else "duplicate"
        return {"status": status, "reason": reason, "object_id": self.first_id}


# -- the service ---------------------------------------------------------------------------
class IngestService:
    """Ingest files, folders, zips and URLs into a bucket, as a resumable job with a report."""

    def __init__(self, wb: Workbench):
        self.wb = wb

    def _params(
        self,
        bucket: str,
        sources: Iterable[str | Path | Source],
        metadata: dict[str, Any] | None,
        include: tuple[str, ...] | None,
        follow_symlinks: bool = False,
        fps: float = 1.0,
    ) -> dict[str, Any]:
        target = self.wb.buckets.get(bucket)
        MetadataValidator(target)({**(metadata or {})})  # fail the whole call on bad metadata
        video_fps = check_fps(fps)
        normalised = [_absolute(s if isinstance(s, Source) else Source(str(s)))
                      for s in sources]
        if not normalised:
            raise ValidationError("nothing to ingest: give at least one file, folder, zip or URL")
        return {
            "bucket_id": target.id,
            "sources": [s.to_json() for s in normalised],
            "metadata": metadata or {},
            "include": list(include or self.default_include()),
            "follow_symlinks": bool(follow_symlinks),
            "video_fps": video_fps,
        }

    def default_include(self) -> tuple[str, ...]:
        """The filename patterns a folder or zip is read with when none are given: the
        settings' patterns, plus the video extensions while those are the stock ones."""
        patterns = tuple(self.wb.settings.ingest_include)
        if patterns == DEFAULT_INCLUDE:
            return patterns + VIDEO_PATTERNS
        return patterns

    def submit(self, bucket: str, sources, metadata=None, include=None,
               follow_symlinks: bool = False, fps: float = 1.0) -> Job:
        """Queue an ingest for the background worker (videos sampled at ``fps``)."""
        return self.wb.jobs.submit("ingest", self._params(bucket, sources, metadata, include,
                                                          follow_symlinks, fps))

    def run(
        self,
        bucket: str,
        sources,
        metadata=None,
        include=None,
        listener: ProgressListener | None = None,
        follow_symlinks: bool = False,
        fps: float = 1.0,
    ) -> IngestReport:
        """Ingest in this process and return the report (still a durable, resumable job).

        Local paths are made absolute here, where they were typed: a worker runs elsewhere.
        A folder's symbolic links that lead out of it are skipped with a report line unless
        ``follow_symlinks``. Videos are sampled at ``fps`` frames per second (> 0).
        """
        params = self._params(bucket, sources, metadata, include, follow_symlinks, fps)
        job = self.wb.jobs.run_inline("ingest", params, listener)
        if job.status == "failed":
            raise JobFailed(job)
        return self.report(job.id)

    def report(self, job_id: str) -> IngestReport:
        """An ingest job's report, one item per input; NotFoundError unless it is an ingest job."""
        job = self.wb.jobs.get(job_id)
        if job.kind != "ingest":
            raise NotFoundError(f"job {job_id} is a {job.kind} job, not an ingest")
        with self.wb.db.read() as conn:
            rows = conn.execute(
                sa.select(t.ingest_items)
                .where(t.ingest_items.c.job_id == job_id)
                .order_by(t.ingest_items.c.seq)
            ).all()
            bucket = conn.execute(
                sa.select(t.buckets.c.name).where(t.buckets.c.id == job.params["bucket_id"])
            ).scalar_one()
        items = tuple(
            IngestItem(r.seq, r.source, r.status, r.reason, r.object_id) for r in rows
        )
        return IngestReport(job_id=job_id, bucket=bucket, items=items)

    def frame_neighbours(self, obj: ImageObject, count: int = 3,
                         window: int = 500) -> list[ImageObject]:
        """The frames around a video frame in its video, in frame order: up to ``count``
        either side and the frame itself; [] for an image that is not a video frame.

        They are looked for among the ``window`` objects stored just before and just after it
        in its bucket: an ingest stores a video's frames together and in order, and the
        (bucket, created_at) index keeps this two short reads whatever the bucket's size.
        Frames of the same video stored by another ingest much later (say at another rate,
        past ``window`` other images) are not found.
        """
        video = obj.metadata.get("video")
        if video is None or "frame_index" not in obj.metadata:
            return []
        objects = t.objects
        with self.wb.db.read() as conn:
            created = conn.execute(
                sa.select(objects.c.created_at).where(objects.c.id == obj.id)
            ).scalar_one_or_none()
            if created is None:
                raise NotFoundError(f"no image object with id {obj.id!r}")
            near = {}
            for side, order in ((objects.c.created_at <= created, objects.c.created_at.desc()),
                                (objects.c.created_at >= created, objects.c.created_at.asc())):
                rows = conn.execute(
                    sa.select(objects)
                    .where(objects.c.bucket_id == obj.bucket_id, side)
                    .order_by(order, objects.c.id)
                    .limit(window)
                ).all()
                near.update((row.id, row) for row in rows)
        frames = sorted(
            (object_from_row(row) for row in near.values()
             if row.metadata.get("video") == video and "frame_index" in row.metadata),
            key=lambda frame: frame.metadata["frame_index"],
        )
        at = next(i for i, frame in enumerate(frames) if frame.id == obj.id)
        return frames[max(0, at - count) : at + count + 1]

    # -- the job -------------------------------------------------------------------------
    def execute(self, ctx: JobContext) -> dict[str, int]:
        """The ingest job: list the inputs once, then check and store them a batch at a time."""
        params = ctx.params
        bucket = self.wb.buckets.get(params["bucket_id"])
        validate = MetadataValidator(bucket)
        total = self._expand_once(ctx, params)
        settings = self.wb.settings
        reader = _Reader(settings.url_timeout_s, settings.max_download_bytes)
        batch_size = settings.ingest_batch_size
        try:
            with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
                while True:
                    ctx.check_cancelled()
                    pending = self._pending(ctx.job.id, batch_size)
                    if not pending:
                        break
                    videos = [row for row in pending if _is_video_row(row)]
                    images = [row for row in pending if not _is_video_row(row)]
                    for row in videos:
                        self._ingest_video(ctx, bucket, row, reader, validate, pool, total)
                    if not images:
                        continue
                    checked = list(
                        pool.map(
                            lambda row: self._check(row, reader, validate, params["metadata"]),
                            images,
                        )
                    )
                    self._commit_batch(ctx, bucket, checked, total)
        finally:
            reader.close()
        return self._counts(ctx.job.id)

    def _expand_once(self, ctx: JobContext, params: dict[str, Any]) -> int:
        """Turn sources into numbered report lines, once per job (a resume skips this)."""
        job_id = ctx.job.id
        with self.wb.db.read() as conn:
            existing = conn.execute(
                sa.select(sa.func.count())
                .select_from(t.ingest_items)
                .where(t.ingest_items.c.job_id == job_id)
            ).scalar_one()
        if existing:
            return existing
        ctx.progress(message="listing inputs")
        include = tuple(params["include"])
        rows = []
        for source in params["sources"]:
            for label, locator, rejection in expand_source(
                    Source(**source), include, params.get("follow_symlinks", False)):
                rows.append(
                    {
                        "job_id": job_id,
                        "seq": len(rows),
                        "source": label,
                        "locator": locator,
                        "status": "rejected" if rejection else "pending",
                        "reason": rejection,
                    }
                )
        done = sum(1 for row in rows if row["status"] != "pending")
        with self.wb.db.write() as conn:
            for start in range(0, len(rows), 1000):
                conn.execute(t.ingest_items.insert(), rows[start : start + 1000])
            ctx.progress(done, len(rows), f"ingesting {len(rows)} inputs", conn=conn)
        ctx.notify()
        return len(rows)

    def _pending(self, job_id: str, limit: int) -> list:
        with self.wb.db.read() as conn:
            return conn.execute(
                sa.select(t.ingest_items)
                .where(t.ingest_items.c.job_id == job_id, t.ingest_items.c.status == "pending")
                .order_by(t.ingest_items.c.seq)
                .limit(limit)
            ).all()

    def _check(self, row, reader: _Reader, validate: MetadataValidator, batch_meta) -> _Checked:
        """Read, hash and verify one input (runs in a thread: decoding releases the GIL)."""
        checked = _Checked(row.seq, row.source)
        try:
            try:
                checked.metadata = validate({**batch_meta, **row.locator.get("metadata", {})})
            except ValidationError as exc:
                raise Rejected(str(exc)) from None
            data = reader.read(row.locator)
            checked.info = inspect_image(data, self.wb.settings.max_image_pixels)
            checked.data = data
            checked.sha256 = sha256_of(data)
            # The blob goes to disk before its row is committed; a crash in between leaves a
            # whole, content-addressed file that the retry reuses, never a partial one.
            self.wb.blobs.put(data, checked.sha256, checked.info.ext)
        except Rejected as exc:
            checked.reason = str(exc)
        return checked

    def _commit_batch(self, ctx: JobContext, bucket: Bucket, checked: list[_Checked], total: int):
        shas = {c.sha256 for c in checked if c.sha256}
        with self.wb.db.write() as conn:
            known = dict(
                conn.execute(
                    sa.select(t.objects.c.sha256, t.objects.c.id).where(
                        t.objects.c.bucket_id == bucket.id, t.objects.c.sha256.in_(shas)
                    )
                ).all()
            )
            now = utcnow()
            new_objects = []
            for item in checked:
                values: dict[str, Any]
                if item.reason:
                    values = {"status": "rejected", "reason": item.reason}
                elif item.sha256 in known:
                    values = {
                        "status": "duplicate",
                        "reason": f"same bytes as {known[item.sha256]}",
                        "object_id": known[item.sha256],
                    }
                else:
                    object_id = new_id("obj")
                    known[item.sha256] = object_id
                    new_objects.append(_object_row(bucket, item, object_id, now))
                    values = {"status": "accepted", "object_id": object_id}
                conn.execute(
                    t.ingest_items.update()
                    .where(
                        t.ingest_items.c.job_id == ctx.job.id, t.ingest_items.c.seq == item.seq
                    )
                    .values(**values)
                )
            if new_objects:
                conn.execute(t.objects.insert(), new_objects)
            done = self._done(conn, ctx.job.id)
            ctx.progress(done, total, f"ingested {done} of {total}", conn=conn)
        ctx.notify()

    # -- videos ----------------------------------------------------------------------------
    def _ingest_video(self, ctx: JobContext, bucket: Bucket, row, reader: _Reader,
                      validate: MetadataValidator, pool: Executor, total: int) -> None:
        """Sample one video, store each kept frame as an image object (a batch of frames per
        transaction, encoded in ``pool`` while the next frames decode), then write the video's
        report line. A resumed job samples the video again from the start: the frames stored
        before the stop decode to the same bytes and are counted as already in the bucket."""
        params = ctx.params
        fps = params.get("video_fps", 1.0)
        batch_size = self.wb.settings.ingest_batch_size
        stats = SamplingStats()
        tally = _VideoTally()
        raw_meta = {**params["metadata"], **row.locator.get("metadata", {})}
        in_flight: deque = deque()
        try:
            try:
                validate(raw_meta)
            except ValidationError as exc:
                raise Rejected(str(exc)) from None
            with _video_file(row.locator, reader) as path:
                frames = sample_frames(path, fps, stats, self.wb.settings.max_image_pixels)
                for frame in frames:
                    in_flight.append(pool.submit(self._frame_item, bucket, row, frame, raw_meta,
                                                 validate, stats))
                    if len(in_flight) >= 2 * batch_size:  # keep the pool busy while committing
                        ctx.check_cancelled()
                        items = [in_flight.popleft().result() for _ in range(batch_size)]
                        self._store_frames(ctx, bucket, row.source, items, tally, total)
                while in_flight:
                    items = [in_flight.popleft().result()
                             for _ in range(min(batch_size, len(in_flight)))]
                    self._store_frames(ctx, bucket, row.source, items, tally, total)
            values = tally.report_line(stats, fps)
        except Rejected as exc:
            for future in in_flight:
                future.cancel()
            stored = f" ({tally.new} frames were stored before)" if tally.new else ""
            values = {"status": "rejected", "reason": f"{exc}{stored}"}
        with self.wb.db.write() as conn:
            conn.execute(
                t.ingest_items.update()
                .where(t.ingest_items.c.job_id == ctx.job.id, t.ingest_items.c.seq == row.seq)
                .values(**values)
            )
            done = self._done(conn, ctx.job.id)
            ctx.progress(done, total, f"ingested {done} of {total}", conn=conn)
        ctx.notify()

    def _frame_item(self, bucket: Bucket, row, frame, raw_meta: dict[str, Any],
                    validate: MetadataValidator, stats: SamplingStats) -> _Checked:
        """Encode, hash and store one frame's JPEG, with its metadata (runs in a thread)."""
        fields = frame_metadata(row.source, frame, stats.start)
        types = {f.name: f.type for f in bucket.metadata_fields}
        if types.get("timestamp") == "datetime" and stats.start is None:
            # pydantic would read the offset in seconds as a date in January 1970
            raise Rejected("the bucket's 'timestamp' field is a datetime, but this video records "
                           "no creation time, so its frames have only offsets in seconds; "
                           "declare 'timestamp' as number or text, or leave it out of the schema")
        declared = {key: str(value) if types[key] == "text" else value
                    for key, value in fields.items() if key in types}
        try:
            metadata = validate({**raw_meta, **declared})
        except ValidationError as exc:
            raise Rejected(f"frame metadata does not fit the bucket's schema: {exc}") from None
        # Fields the schema does not declare are still the frame's: the ingest writes them,
        # as it writes the width and height, and the video's neighbours are found by them.
        metadata.update({key: value for key, value in fields.items() if key not in types})
        data, info = encode_frame(frame.pixels)
        item = _Checked(row.seq, f"{row.source}#frame={frame.index}", metadata, data,
                        sha256_of(data), info)
        self.wb.blobs.put(data, item.sha256, info.ext)
        return item

    def _store_frames(self, ctx: JobContext, bucket: Bucket, label: str, items: list[_Checked],
                      tally: _VideoTally, total: int) -> None:
        """One transaction: the frames' object rows, less those whose bytes the bucket holds."""
        with self.wb.db.write() as conn:
            known = dict(
                conn.execute(
                    sa.select(t.objects.c.sha256, t.objects.c.id).where(
                        t.objects.c.bucket_id == bucket.id,
                        t.objects.c.sha256.in_({item.sha256 for item in items}),
                    )
                ).all()
            )
            now = utcnow()
            new_objects = []
            for item in items:
                if item.sha256 in known:
                    tally.count(known[item.sha256], new=False)
                    continue
                object_id = known[item.sha256] = new_id("obj")
                new_objects.append(_object_row(bucket, item, object_id, now))
                tally.count(object_id, new=True)
            if new_objects:
                conn.execute(t.objects.insert(), new_objects)
            ctx.progress(message=f"{label}: {tally.new + tally.duplicate} frames", conn=conn)
        crash_point("ingest.video_frames")  # frames committed, the video's line still pending
        ctx.notify()

    @staticmethod
    def _done(conn, job_id: str) -> int:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(t.ingest_items)
            .where(t.ingest_items.c.job_id == job_id, t.ingest_items.c.status != "pending")
        ).scalar_one()

    def _counts(self, job_id: str) -> dict[str, int]:
        with self.wb.db.read() as conn:
            rows = conn.execute(
                sa.select(t.ingest_items.c.status, sa.func.count())
                .where(t.ingest_items.c.job_id == job_id)
                .group_by(t.ingest_items.c.status)
            ).all()
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
        counts.update({status: n for status, n in rows})
        return counts
