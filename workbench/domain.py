"""Small frozen records passed between services, pages and the CLI.

Boxes inside the library are absolute pixel ``xyxy`` floats; conversions live at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FIELD_TYPES = ("image", "text", "integer", "number", "boolean", "datetime")


@dataclass(frozen=True)
class FieldSpec:
    """One property of a bucket schema."""

    name: str
    type: str
    required: bool = False


@dataclass(frozen=True)
class Bucket:
    """A named set of images with a metadata schema (``image`` is always required)."""

    id: str
    name: str
    fields: tuple[FieldSpec, ...]
    created_at: datetime
    description: str = ""

    @property
    def metadata_fields(self) -> tuple[FieldSpec, ...]:
        """The schema's fields other than ``image``."""
        return tuple(f for f in self.fields if f.type != "image")

    def to_schema(self) -> dict[str, Any]:
        """The seed-style ``{"properties": {...}}`` form of the schema."""
        return {
            "properties": {
                f.name: {"type": f.type, **({"required": True} if f.required else {})}
                for f in self.fields
            }
        }


@dataclass(frozen=True)
class ImageObject:
    """An image in a bucket: a content-addressed blob plus validated metadata."""

    id: str
    bucket_id: str
    sha256: str
    width: int
    height: int
    format: str
    size_bytes: int
    source: str
    metadata: dict[str, Any]
    created_at: datetime


JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")


@dataclass(frozen=True)
class Job:
    """A durable unit of background work with progress."""

    id: str
    kind: str
    params: dict[str, Any]
    status: str
    progress_done: int
    progress_total: int
    message: str
    error: str | None
    result: dict[str, Any] | None
    worker_id: str | None
    cancel_requested: bool
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        """Whether the job has ended: done, failed or cancelled."""
        return self.status in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        """Progress as a fraction (0 while the total is unknown)."""
        return self.progress_done / self.progress_total if self.progress_total else 0.0


INGEST_OUTCOMES = ("pending", "accepted", "duplicate", "rejected")


@dataclass(frozen=True)
class IngestItem:
    """One line of an ingest report: what was offered and what became of it."""

    seq: int
    source: str
    status: str
    reason: str = ""
    object_id: str | None = None


@dataclass(frozen=True)
class IngestReport:
    """Every input of one ingest with its outcome."""

    job_id: str
    bucket: str
    items: tuple[IngestItem, ...] = field(default_factory=tuple)

    def count(self, status: str) -> int:
        """How many inputs ended with ``status``."""
        return sum(1 for item in self.items if item.status == status)

    @property
    def accepted(self) -> int:
        """Inputs stored as new images."""
        return self.count("accepted")

    @property
    def duplicates(self) -> int:
        """Inputs whose bytes the bucket held already."""
        return self.count("duplicate")

    @property
    def rejected(self) -> int:
        """Inputs refused, each with its reason."""
        return self.count("rejected")

    def summary(self) -> str:
        """The counts in one line."""
        return (
            f"{self.accepted} accepted, {self.duplicates} duplicate, "
            f"{self.rejected} rejected (of {len(self.items)})"
        )


@dataclass(frozen=True)
class ExtractorVersion:
    """One registered version of an extractor: its spec, and for models, weights and lineage."""

    id: str
    name: str
    version: str
    kind: str  # "yolo" (the built-in detector with a weights file) or "custom"
    spec: Any  # workbench.extractors.spec.ExtractorSpec
    weights_path: str | None
    weights_sha256: str | None
    classes: tuple[str, ...]
    base_model: str | None
    parent_version: str | None
    lineage: dict[str, Any]
    metrics: dict[str, Any]
    notes: str
    created_at: datetime
    code_path: str | None = None  # custom extractors: their code, inside the workspace
    entrypoint: str | None = None  # custom extractors: "module:Class"
    training_job: str | None = None  # the job that trained it (one version per job)

    @property
    def key(self) -> str:
        """``name@version``: how the rest of the workbench refers to this version."""
        return f"{self.name}@{self.version}"

    def feature_uri(self, feature_name: str) -> str:
        """The ``workbench://name@version/feature`` address of one of its features."""
        return self.spec.feature_uri(feature_name)


@dataclass(frozen=True)
class Collection:
    """Binds an extractor to source buckets; each version's results are kept apart."""

    id: str
    name: str
    extractor_name: str
    active_version: str
    bucket_ids: tuple[str, ...]
    created_at: datetime

    @property
    def active_key(self) -> str:
        """``name@version`` of the active extractor version."""
        return f"{self.extractor_name}@{self.active_version}"


@dataclass(frozen=True)
class Detection:
    """One box of one extractor version on one image (absolute pixel xyxy)."""

    id: str
    document_id: str
    object_id: str
    extractor_key: str
    index: int
    class_name: str
    confidence: float
    xyxy: tuple[float, float, float, float]
    embedding_id: str | None = None
