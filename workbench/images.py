"""Image bytes: the formats we keep, checking that bytes are a whole image of sane size,
decoding with the EXIF orientation applied, and cropping boxes into thumbnails.

Ingest checks every input with :func:`inspect_image`; detection, export, references, clusters
and the pages decode with :func:`load_image` and crop with :func:`crop_jpeg`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

# Formats we keep, with the extension their blob gets. MPO is the multi-picture JPEG of phones.
FORMAT_EXTENSIONS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
}
_SWAPPED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees


class Rejected(Exception):
    """One input cannot be ingested; the message is its line in the report."""


@dataclass(frozen=True)
class ImageInfo:
    """What inspecting an image found: its format and its size after EXIF orientation."""

    width: int
    height: int
    format: str

    @property
    def ext(self) -> str:
        """The extension its blob gets."""
        return FORMAT_EXTENSIONS[self.format]


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Check that bytes are a whole, decodable image of sane size; return its oriented size."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise Rejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format
    except UnidentifiedImageError:
        raise Rejected(_unidentified_reason(data)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Rejected(f"decompression bomb refused by the decoder: {exc}") from None
    except Exception as exc:
        # A broken header surfaces as many exception types, and an opener that another
        # library registered (ultralytics adds HEIF) may fail to import while it probes.
        reason = _unidentified_reason(data)
        if reason.startswith("corrupt") and not isinstance(exc, ImportError):
            reason = f"truncated or corrupt image: its header cannot be read ({exc})"
        raise Rejected(reason) from None
    if fmt not in FORMAT_EXTENSIONS:
        raise Rejected(
            f"image format {fmt} is not supported; convert it to JPEG or PNG "
            f"(supported: {', '.join(sorted(set(FORMAT_EXTENSIONS) - {'MPO'}))})"
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise Rejected(f"image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise Rejected(
            f"image is {width}×{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (a decompression bomb?); if it is genuine, raise "
            "WORKBENCH_MAX_IMAGE_PIXELS"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))  # JPEG: decode at 1/8
            image.load()
    except Exception as exc:
        raise Rejected(f"truncated or corrupt image data: {exc}") from None
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block does not make the pixels wrong
        orientation = 1
    if orientation in _SWAPPED_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(width, height, fmt)


_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"BM": "BMP",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def _declared_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """Width and height as a PNG or BMP header declares them (PIL refuses 0-px images)."""
    if kind == "PNG" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if kind == "BMP" and len(data) >= 26:
        return (int.from_bytes(data[18:22], "little", signed=True),
                abs(int.from_bytes(data[22:26], "little", signed=True)))
    return None


def _unidentified_reason(data: bytes) -> str:
    """Why PIL could not identify the bytes, as precisely as the header allows."""
    kind = next((name for sig, name in _SIGNATURES.items() if data.startswith(sig)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "WEBP"
    if kind is None:
        supported = ", ".join(sorted(set(FORMAT_EXTENSIONS) - {"MPO"}))
        return f"not an image: no decoder recognises these bytes (expected one of {supported})"
    size = _declared_size(data, kind)
    if size is not None and (size[0] <= 0 or size[1] <= 0):
        return f"image has no pixels (its {kind} header says {size[0]}×{size[1]})"
    return f"corrupt {kind} file: its header cannot be parsed"


def load_image(path: Path):
    """Decode an image from disk as RGB with its EXIF orientation applied."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def crop_jpeg(image, xyxy, size: int, pad: float = 0.0) -> bytes:
    """JPEG bytes of a box of ``image`` (widened by ``pad`` × its longer side, kept inside the
    image), scaled to fit ``size`` pixels: for galleries and thumbnails of detections."""
    x1, y1, x2, y2 = xyxy
    margin = pad * max(x2 - x1, y2 - y1)
    box = (max(0, x1 - margin), max(0, y1 - margin), min(image.width, x2 + margin),
           min(image.height, y2 + margin))
    crop = image.crop(tuple(round(v) for v in box))
    crop.thumbnail((size, size))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
