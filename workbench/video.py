"""Video: the frames of a video file sampled at a chosen rate, each kept frame a JPEG image.

Ingest hands a video here instead of treating it as one image (see
:meth:`workbench.ingest.IngestService`). Decoding uses OpenCV (``cv2``), which ultralytics
already carries, imported only when a video is read.

Sampling. At ``fps`` frames per second, the first frame at or after each ``k / fps`` second
mark of the video's own clock (frame index / the container's frame rate) is kept; frames in
between are only grabbed (demuxed and decoded, never converted to pixels). A rate at or above
the video's own keeps every frame.

Near-identical frames. A sampled frame is skipped when it barely differs from the last frame
that was kept: no pixel of their 64×48 greyscale thumbnails (each thumbnail pixel the mean of
a block of about 10×10 frame pixels at 640×480) differs by :data:`NEAR_IDENTICAL_LEVELS` grey
levels or more. The largest difference, not the mean: a small object moving across a still
scene changes a few blocks a lot, which a mean over the frame would average away, while sensor
noise and codec flicker are averaged away inside each block (a still stretch of an MP4 differs
by 2-3 levels). Comparing with the last *kept* frame, not the last sampled one, means a slow
drift is kept once it has added up, and a still scene yields one frame.

Time. ``timestamp`` is the frame's time: the container's creation time plus the frame's
offset, as an ISO 8601 UTC string, when the container records one (MP4 and MOV keep it in
their ``mvhd`` box; OpenCV does not expose it, so it is read from there directly; a zero, as
many encoders write, counts as unknown). Otherwise ``timestamp`` is the offset in seconds from
the start of the video, a number.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workbench.errors import ValidationError
from workbench.images import ImageInfo, Rejected

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
VIDEO_PATTERNS = tuple(f"*{ext}" for ext in VIDEO_EXTENSIONS)
NEAR_IDENTICAL_LEVELS = 12  # largest grey-level difference of 64×48 thumbnails (0-255)
JPEG_QUALITY = 90
_THUMB = (64, 48)
_MP4_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)


def is_video(name: str) -> bool:
    """Whether a file name (or URL path) has a video extension we decode."""
    return Path(name.split("?", 1)[0]).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Frame:
    """One sampled frame: its index in the video, its offset in seconds and its BGR pixels."""

    index: int
    offset_s: float
    pixels: Any  # numpy uint8 array, height × width × 3, BGR as OpenCV decodes it


@dataclass
class SamplingStats:
    """What sampling a video found: frames read, sampled and skipped as near-identical."""

    frames_read: int = 0
    sampled: int = 0
    near_identical: int = 0
    fps: float = 0.0
    start: datetime | None = field(default=None)


def check_fps(fps: float) -> float:
    """The sampling rate as a positive float; ValidationError, saying what to give, if not."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValidationError(f"video sampling rate must be a number of frames per second, got "
                         f"{fps!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValidationError(f"video sampling rate must be a positive number of frames per second "
                         f"(e.g. 1 or 0.5), got {fps!r}")
    return value


def sample_frames(path: Path, fps: float, stats: SamplingStats, max_pixels: int,
                  threshold: int = NEAR_IDENTICAL_LEVELS) -> Iterator[Frame]:
    """Yield the kept frames of the video at ``path`` sampled at ``fps`` per second.

    Raises :class:`Rejected` (a report line) when the file is not a video OpenCV can decode,
    has no decodable frame, or has frames over ``max_pixels``. ``stats`` is filled in as the
    frames go by.
    """
    import cv2

    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        yield from _sample(capture, path, fps, stats, max_pixels, threshold)
    except cv2.error as exc:  # a damaged stream can fail inside the decoder, not just end early
        raise Rejected(f"video decoding failed after {stats.frames_read} frames: "
                       f"{str(exc).strip().splitlines()[-1]}") from None
    finally:
        capture.release()


def _sample(capture, path: Path, fps: float, stats: SamplingStats, max_pixels: int,
            threshold: int) -> Iterator[Frame]:
    """The body of :func:`sample_frames`, on an open capture."""
    import cv2
    import numpy as np

    if not capture.isOpened():
        raise Rejected("not a readable video: the decoder cannot open it (corrupt, or a "
                       f"format OpenCV's FFmpeg does not read; supported extensions: "
                       f"{', '.join(VIDEO_EXTENSIONS)})")
    native = capture.get(cv2.CAP_PROP_FPS)
    if not 0 < native <= 1000:  # also refuses NaN
        raise Rejected(f"video declares no usable frame rate ({native!r}); re-encode it "
                       "with a constant frame rate (e.g. ffmpeg -r 30)")
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > max_pixels:
        raise Rejected(f"video frames are {width}×{height}, over the limit of "
                       f"{max_pixels:,} pixels; raise WORKBENCH_MAX_IMAGE_PIXELS if genuine")
    stats.fps = native
    stats.start = creation_time(path)
    step = 1.0 / fps
    next_due = 0.0
    last_thumb = None
    index = -1
    while capture.grab():
        index += 1
        stats.frames_read += 1
        offset = index / native
        if offset + 1e-9 < next_due:
            continue
        next_due = (int(offset / step + 1e-9) + 1) * step
        ok, pixels = capture.retrieve()
        if not ok or pixels is None:
            continue
        stats.sampled += 1
        grey = cv2.cvtColor(cv2.resize(pixels, _THUMB, interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY).astype(np.int16)
        if last_thumb is not None and int(np.abs(grey - last_thumb).max()) < threshold:
            stats.near_identical += 1
            continue
        last_thumb = grey
        yield Frame(index, offset, pixels)
    if stats.frames_read == 0:
        raise Rejected("not a readable video: no frame could be decoded (corrupt or empty)")


def encode_frame(pixels) -> tuple[bytes, ImageInfo]:
    """A frame as JPEG bytes (quality :data:`JPEG_QUALITY`) and the info ingest keeps."""
    import cv2

    ok, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise Rejected("a frame could not be encoded as JPEG")
    height, width = pixels.shape[:2]
    return buffer.tobytes(), ImageInfo(width, height, "JPEG")


def frame_metadata(video: str, frame: Frame, start: datetime | None) -> dict[str, Any]:
    """The ``video``, ``frame_index`` and ``timestamp`` fields of a frame (see module doc)."""
    if start is not None:
        stamp: Any = (start + timedelta(seconds=frame.offset_s)).isoformat()
    else:
        stamp = round(frame.offset_s, 6)
    return {"video": video, "frame_index": frame.index, "timestamp": stamp}


def creation_time(path: Path) -> datetime | None:
    """The creation time an MP4/MOV container records in its ``mvhd`` box, or None."""
    try:
        with open(path, "rb") as handle:
            moov = _find_box(handle, b"moov", 0, path.stat().st_size)
            if moov is None:
                return None
            mvhd = _find_box(handle, b"mvhd", *moov)
            if mvhd is None:
                return None
            handle.seek(mvhd[0])
            head = handle.read(12)
    except OSError:
        return None
    if len(head) < 12:
        return None
    version = head[0]
    seconds = (struct.unpack(">Q", head[4:12])[0] if version == 1
               else struct.unpack(">I", head[4:8])[0])
    if seconds == 0:
        return None
    try:
        return _MP4_EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _find_box(handle, kind: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The payload range ``(start, end)`` of the first box of ``kind`` between two offsets."""
    position = start
    while position + 8 <= end:
        handle.seek(position)
        header = handle.read(8)
        if len(header) < 8:
            return None
        size, name = struct.unpack(">I4s", header)
        payload = position + 8
        if size == 1:
            size = struct.unpack(">Q", handle.read(8))[0]
            payload += 8
        elif size == 0:
            size = end - position
        if size < payload - position:
            return None
        if name == kind:
            return payload, min(end, position + size)
        position += size
    return None
