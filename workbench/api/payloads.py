"""Request bodies, in the tutorial's shapes. They check the envelope only (which keys, which
types); what the values mean is the services' to check, with their own rules and models.
A misspelled key is refused with the key it was probably meant to be."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workbench.api.errors import unknown_key
from workbench.errors import ValidationError
from workbench.params import TaxonomyParams


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


class CollectionUpdate(Payload):
    """``PATCH /v1/collections/{collection}``: the collection's settings."""

    allow_custom_labels: bool = Field(description="Let its annotations take labels beyond "
                                      "the standard ones (confirmed, corrected, "
                                      "false_positive, missed, image_done, no_objects).")


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


def params_of(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """One of the run-parameter dataclasses of :mod:`workbench.params` from a JSON object: a
    misspelt key is named with the likely right one; bounds are the dataclass's own check."""
    from dataclasses import fields

    values = dict(values or {})
    allowed = [f.name for f in fields(cls)]
    unknown = [key for key in values if key not in allowed]
    if unknown:
        raise ValidationError(f"{where}: " + "; ".join(unknown_key(k, allowed) for k in unknown))
    return cls(**values)


class EvaluationCreate(Payload):
    """``POST /v1/evaluations``."""

    collection_id: str
    candidate_version: str | None = Field(None, description="Default: the newest version.")
    base_version: str | None = Field(None, description="Default: the candidate's parent.")
    gate: dict[str, Any] = Field(default_factory=dict, description='{"min_map50_95_gain": '
                                 '0.01, "max_class_drop": 0.05}')
    image_ids: list[str] | None = Field(None, description="Complete images to score on "
                                        "instead of the gold set.")


class Promotion(Payload):
    """``POST /v1/collections/{collection}/promote``."""

    version: str
    reason: str | None = Field(None, description="Why, when the version did not pass the "
                               "gate (a rollback, say).")


class ExportCreate(Payload):
    """``POST /v1/exports``: a YOLO dataset (with COCO JSON) of a collection's ground truth."""

    collection_id: str
    version: str | None = Field(None, description="The version whose boxes complete partly "
                                "reviewed images with unreviewed=fill; default: the active.")
    options: dict[str, Any] = Field(default_factory=dict, description='ExportOptions, e.g. '
                                    '{"unreviewed": "fill", "val_fraction": 0.2}')


class TrainingCreate(Payload):
    """``POST /v1/training-runs``: export, fine-tune and register the next version."""

    collection_id: str
    base_version: str | None = Field(None, description="Default: the active version.")
    export: dict[str, Any] = Field(default_factory=dict, description="ExportOptions.")
    train: dict[str, Any] = Field(default_factory=dict, description='TrainParams, e.g. '
                                  '{"epochs": 10, "imgsz": 320}')


class ReferenceSetCreate(Payload):
    """``POST /v1/reference-sets``: verified detections that taxonomies compare against."""

    name: str
    collection_id: str
    feature_uri: str | None = Field(None, description="Default: the active version's "
                                    "detection_embedding.")
    description: str = ""


class ReferencePromotion(Payload):
    """``POST /v1/reference-sets/{name}/promote``."""

    labels: list[Literal["confirmed", "corrected"]] = Field(
        default_factory=lambda: ["confirmed", "corrected"],
        description="Detections whose newest verdict is one of these.")
    classes: list[str] | None = Field(None, description="Only these true classes.")
    category: str | None = None


class TaxonomyCreate(Payload):
    """``POST /v1/taxonomies`` (the tutorial's names where it has them)."""

    taxonomy_name: str
    taxonomy_type: Literal["flat", "tree"] = "flat"
    reference_set: str = Field(description="The reference set (name or id) it classifies "
                               "against: its collection's detection embeddings.")
    nodes: list[Any] | None = Field(None, description="[{name, parent, threshold, classes}]; "
                                    "flat default: the reference set's classes.")
    threshold: float = Field(TaxonomyParams.threshold,
                             description="Cosine similarity a node must reach.")
    top_k: int = Field(TaxonomyParams.top_k, description="References averaged per node.")
    collection_id: str | None = Field(None, description="Attach it to this collection.")
    execution_mode: Literal["materialize", "retroactive", "on_demand"] = "materialize"


class TaxonomyApplication(Payload):
    """``POST /v1/collections/{collection}/taxonomy-applications``."""

    taxonomy_id: str
    execution_mode: Literal["materialize", "retroactive", "on_demand"] = "materialize"


class TaxonomyApply(Payload):
    """``POST /v1/taxonomies/{taxonomy}/apply``: reclassify existing detections (a job)."""

    execution_mode: Literal["retroactive"] = "retroactive"
    collection_id: str | None = Field(None, description="The taxonomy's collection (checked).")
    version: str | None = Field(None, description="Whose detections; default: the active.")


class Algorithm(Payload):
    """A cluster run's algorithm and its own parameters."""

    name: str = "hdbscan"
    params: dict[str, Any] = Field(default_factory=dict)


class Reduction(Payload):
    """Reduce the embeddings before clustering."""

    method: str
    n_components: int = 10


class ClusterCreate(Payload):
    """``POST /v1/clusters`` (the tutorial's names where it has them)."""

    collection_id: str
    cluster_name: str | None = Field(None, description="Kept with the run's result.")
    feature_uri: str | None = Field(None, description="A version's detection_embedding; "
                                    "default: the active version's.")
    algorithm: Algorithm = Field(default_factory=Algorithm)
    filters: dict[str, Any] | None = Field(None, description="A retriever filter on the "
                                           "detections to cluster.")
    dimension_reduction: Reduction | None = None
    projection: Literal["pca", "umap", "tsne"] = "pca"
    seed: int = 0


class ClusterLabel(Payload):
    """``POST /v1/clusters/{run}/label``."""

    llm: bool | None = Field(None, description="Ask the LLM of WORKBENCH_LLM_URL (default: "
                             "when it is set).")
    names: dict[str, str] = Field(default_factory=dict, description='Names by hand: '
                                  '{"3": "stars"}.')


class ClusterPromotion(Payload):
    """``POST /v1/clusters/{run}/promote``."""

    cluster: int
    taxonomy_id: str
    node: str | None = Field(None, description="Default: the cluster's name.")
    parent: str | None = None


class WebhookCreate(Payload):
    """``POST /v1/webhooks``."""

    webhook_name: str
    url: str
    events: list[str] = Field(default_factory=lambda: ["*"])


def seed_stages(stages: list[Any]) -> list[Any]:
    """Stages in the workbench's shape. The tutorial writes a search with filters as one
    stage, ``{"stage_type": "filter", "config": {"stage_id": "feature_search", "parameters":
    {"searches": [{"feature_uri", "query"}], "filters": {…}}}}``: it becomes a filter stage
    and one feature_search stage per search (filters apply to every candidate either way).
    Any other stage is left as it is for the service to check."""
    out: list[Any] = []
    for index, stage in enumerate(stages):
        config = stage.get("config") if isinstance(stage, dict) else None
        if not (isinstance(config, dict) and "stage_id" in config):
            out.append(stage)
            continue
        where = f"stages[{index}]"
        unknown = set(config) - {"stage_id", "parameters"}
        if config["stage_id"] != "feature_search" or unknown:
            raise ValidationError(f"{where}: a stage with a stage_id is the tutorial's "
                                  "search: config {\"stage_id\": \"feature_search\", "
                                  "\"parameters\": {\"searches\", \"filters\"}}")
        parameters = config.get("parameters")
        if not isinstance(parameters, dict):
            raise ValidationError(f"{where}: config.parameters must be an object with "
                                  "'searches' and/or 'filters'")
        extra = [k for k in parameters if k not in ("searches", "filters")]
        if extra:
            raise ValidationError(f"{where}.config.parameters: "
                                  + "; ".join(unknown_key(k, ["searches", "filters"])
                                              for k in extra))
        name = stage.get("stage_name") or f"search_{index}"
        if "filters" in parameters:
            out.append({"stage_name": f"{name}_filters", "stage_type": "filter",
                        "config": {"filters": parameters["filters"]}})
        searches = parameters.get("searches") or []
        if not isinstance(searches, list):
            raise ValidationError(f"{where}.config.parameters.searches must be a list of "
                                  "{feature_uri, query}")
        for number, search in enumerate(searches):
            out.append({"stage_name": name if number == 0 else f"{name}_{number}",
                        "stage_type": "feature_search", "config": search})
    return out
