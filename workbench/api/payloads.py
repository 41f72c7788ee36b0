"""Request bodies, in the tutorial's shapes. They check the envelope only (which keys, which
types); what the values mean is the services' to check, with their own rules and models.
A misspelled key is refused with the key it was probably meant to be."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workbench.api.errors import unknown_key


class Payload(BaseModel):
    """A request body: unknown keys are an error that names the likely right one."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _name_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = list(cls.model_fields)
            unknown = [key for key in data if key not in cls.model_fields]
            if unknown:
                raise ValueError("; ".join(unknown_key(str(k), allowed) for k in unknown))
        return data


class BucketCreate(Payload):
    """``POST /v1/buckets``."""

    name: str = Field(description="1-100 letters, digits, '_', '-' or '.'.")
    bucket_schema: dict[str, Any] | None = Field(
        None, description='{"properties": {"image": {"type": "image", "required": true}, '
        '"camera_id": {"type": "text"}}}; default: an image only.')
    description: str = ""


class BlobData(Payload):
    """Where a blob's bytes are."""

    url: str = Field(description="An http:// or https:// URL the server downloads.")


class BlobRef(Payload):
    """One blob of an object (the tutorial's ``blobs`` item)."""

    property: Literal["image"] = "image"
    type: Literal["image"] = "image"
    data: BlobData


class ObjectsCreate(Payload):
    """``POST /v1/buckets/{bucket}/objects`` as JSON: images by URL, fetched by a job."""

    metadata: dict[str, Any] = Field(default_factory=dict)
    blobs: list[BlobRef] = Field(min_length=1, max_length=1000)


class ExtractorRef(Payload):
    """One of a collection's ``feature_extractors``."""

    feature_extractor_name: str = "yolo_detector"
    version: str | None = Field(None, description="Default: the newest registered version.")


class BucketSource(Payload):
    """Where a collection's images come from."""

    type: Literal["bucket"] = "bucket"
    bucket_ids: list[str] = Field(min_length=1, description="Bucket ids or names.")


class CollectionCreate(Payload):
    """``POST /v1/collections``."""

    name: str
    feature_extractors: list[ExtractorRef] = Field(
        default_factory=lambda: [ExtractorRef()], min_length=1, max_length=1,
        description="One extractor (a collection runs one extractor's versions).")
    source: BucketSource


class BatchTrigger(Payload):
    """``POST /v1/buckets/{bucket}/batches/trigger``."""

    collection_ids: list[str] = Field(min_length=1, description="Collection ids or names.")
    version: str | None = Field(None, description="Extractor version; default: each "
                                "collection's active one.")


class RetrieverSave(Payload):
    """``POST /v1/retrievers``."""

    name: str
    collection_id: str = Field(description="The collection's id or name.")
    stages: list[dict[str, Any]]
    description: str = ""
    replace: bool = Field(False, description="Overwrite a retriever of the same name.")


class RetrieverExecute(Payload):
    """``POST /v1/retrievers/{retriever}/execute``."""

    inputs: dict[str, Any] = Field(default_factory=dict,
                                   description="Values for the stages' {{INPUT.*}}.")
    version: str | None = None
    count: bool = Field(False, description="Count every match exactly (costs a scan).")
    cursor: str | None = Field(None, description="next_cursor of the previous page.")
    lease: bool = Field(False, description="Use the run as a review queue: skip items leased "
                        "to other reviewers and lease the page to this key's name.")


class ReviewQueue(Payload):
    """``POST /v1/collections/{collection}/review-queue``: the next page, leased to you."""

    kind: Literal["review", "spot-check", "image-review"] = Field(
        "review", description="review: uncertain detections; spot-check: random confident "
        "ones; image-review: whole images to finish.")
    limit: int = Field(20, ge=1, le=1000, description="Items in the page.")
    version: str | None = None
    seed: int = Field(0, description="Order of a spot-check.")
    count: bool = Field(True, description="Count what is left exactly (costs a scan).")


class LeaseRenewal(Payload):
    """``POST /v1/leases/renew`` and ``/v1/leases/release``."""

    collection_id: str
    document_ids: list[str] | None = Field(
        None, description="The items; default: every item of the collection leased to you.")


class BulkAnnotations(Payload):
    """``POST /v1/annotations/bulk``: each operation stands or fails on its own."""

    operations: list[Any] = Field(description='Up to 1,000 {"op": "create"|"update"|'
                                  '"delete", …}.')
