"""The metadata schema as SQLAlchemy Core tables: what queries are written against.

Migrations in ``migrations/versions`` create and change these tables; a test checks that a
migrated database matches the definitions here.
"""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

buckets = Table(
    "buckets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("schema", JSON, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", DateTime, nullable=False),
)

objects = Table(
    "objects",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("bucket_id", String(64), ForeignKey("buckets.id"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("format", String(16), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("source", Text, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("bucket_id", "sha256", name="uq_objects_bucket_sha256"),
    Index("ix_objects_bucket_created", "bucket_id", "created_at", "id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress_done", Integer, nullable=False, default=0),
    Column("progress_total", Integer, nullable=False, default=0),
    Column("message", Text, nullable=False, default=""),
    Column("error", Text),
    Column("result", JSON),
    Column("worker_id", String(200)),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("heartbeat_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Index("ix_jobs_status_created", "status", "created_at"),
)

ingest_items = Table(
    "ingest_items",
    metadata,
    Column("job_id", String(64), ForeignKey("jobs.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("source", Text, nullable=False),
    Column("locator", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("object_id", String(64)),
    Index("ix_ingest_items_job_status", "job_id", "status"),
)

extractor_versions = Table(
    "extractor_versions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("weights_path", Text),
    Column("weights_sha256", String(64)),
    Column("code_path", Text),
    Column("entrypoint", String(200)),
    Column("classes", JSON, nullable=False),
    Column("base_model", Text),
    Column("parent_version", String(64)),
    Column("lineage", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("notes", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("training_job", String(64)),  # the job that trained it: one version per job
    UniqueConstraint("name", "version", name="uq_extractor_versions_name_version"),
    Index("uq_extractor_versions_training_job", "training_job", unique=True),
)

collections = Table(
    "collections",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("extractor_name", String(64), nullable=False),
    Column("active_version", String(64), nullable=False),
    Column("bucket_ids", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    # labels beyond the standard vocabulary (workbench.annotations.STANDARD_LABELS) accepted
    Column("allow_custom_labels", Boolean, nullable=False, server_default=false()),
)

documents = Table(
    "documents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("object_id", String(64), ForeignKey("objects.id"), nullable=False),
    Column("extractor_key", String(140), nullable=False),
    Column("features", JSON, nullable=False),
    Column("n_detections", Integer, nullable=False),
    # sum of 1 - |2c - 1| over its detections: the image-review queue's first key
    Column("uncertainty", Float),
    Column("job_id", String(64)),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("collection_id", "object_id", "extractor_key",
                     name="uq_documents_collection_object_version"),
    Index("ix_documents_collection_version", "collection_id", "extractor_key"),
    Index("ix_documents_uncertainty", "collection_id", "extractor_key", "uncertainty"),
)

detections = Table(
    "detections",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("document_id", String(64), ForeignKey("documents.id"), nullable=False),
    Column("collection_id", String(64), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("extractor_key", String(140), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("class_name", String(200), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("x1", Float, nullable=False),
    Column("y1", Float, nullable=False),
    Column("x2", Float, nullable=False),
    Column("y2", Float, nullable=False),
    Column("embedding_id", String(80)),
    Index("ix_detections_version_confidence", "collection_id", "extractor_key", "confidence"),
    Index("ix_detections_document", "document_id"),
    Index("ix_detections_object", "object_id"),
    Index("ix_detections_image", "collection_id", "object_id", "extractor_key", "idx"),
    Index("ix_detections_version_class", "collection_id", "extractor_key", "class_name",
          "confidence"),
)

events = Table(
    "events",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_events_type_created", "type", "created_at"),
    Index("ix_events_created", "created_at", "id"),  # the rules engine's reading order
)

retrievers = Table(
    "retrievers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("stages", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

retriever_executions = Table(
    "retriever_executions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("retriever_id", String(64), ForeignKey("retrievers.id"), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("result_ids", JSON, nullable=False),
    Column("stage_ms", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_retriever_executions_retriever", "retriever_id", "created_at"),
)

annotations = Table(
    "annotations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("document_id", String(80), nullable=False),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("extractor_key", String(140)),
    Column("label", String(100), nullable=False),
    Column("confidence", Float),
    Column("reasoning", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("retriever_id", String(64)),
    Column("execution_id", String(64)),
    Column("author", String(200), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("deleted_at", DateTime),
    # "human", or "carried": a verdict carried over from the ground truth to another
    # version's detection (derived, redrawn whenever the ground truth changes)
    Column("origin", String(20), nullable=False, server_default="human"),
    Index("ix_annotations_collection_label", "collection_id", "label", "created_at"),
    Index("ix_annotations_document", "document_id"),
    Index("ix_annotations_execution", "execution_id"),
    Index("ix_annotations_object", "collection_id", "object_id"),
)

truth_boxes = Table(  # an image's ground truth: object boxes and negative regions
    "truth_boxes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("kind", String(20), nullable=False),  # "object" or "negative"
    Column("class_name", String(200)),
    Column("x1", Float, nullable=False),
    Column("y1", Float, nullable=False),
    Column("x2", Float, nullable=False),
    Column("y2", Float, nullable=False),
    Column("annotation_id", String(64), nullable=False),  # the annotation that made it
    Column("detection_id", String(80)),  # the detection it was judged on (None: drawn)
    Column("extractor_key", String(140)),  # the version whose review it came from
    Column("label", String(100), nullable=False),
    Column("author", String(200), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_truth_boxes_image", "collection_id", "object_id"),
)

image_truth = Table(  # an image's review state and its place in the gold set
    "image_truth",
    metadata,
    Column("collection_id", String(64), ForeignKey("collections.id"), primary_key=True),
    Column("object_id", String(64), primary_key=True),
    Column("state", String(20), nullable=False),  # unreviewed | partial | complete
    Column("objects", Integer, nullable=False),
    Column("negatives", Integer, nullable=False),
    Column("done_annotation_id", String(64)),
    Column("gold", Boolean, nullable=False),  # reserved for evaluation, never trained on
    Column("gold_decided", Boolean, nullable=False),  # the draw is made once, when complete
    Column("updated_at", DateTime, nullable=False),
    Index("ix_image_truth_state", "collection_id", "state"),
)

annotation_history = Table(
    "annotation_history",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("annotation_id", String(64), ForeignKey("annotations.id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("snapshot", JSON, nullable=False),
    Column("changed_at", DateTime, nullable=False),
    Column("changed_by", String(200), nullable=False),
    Index("ix_annotation_history_annotation", "annotation_id", "revision"),
)

evaluations = Table(
    "evaluations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("base_key", String(140), nullable=False),
    Column("candidate_key", String(140), nullable=False),
    Column("images", JSON, nullable=False),
    Column("base", JSON, nullable=False),
    Column("candidate", JSON, nullable=False),
    Column("comparison", JSON, nullable=False),
    Column("decision", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_evaluations_collection", "collection_id", "created_at"),
)

promotions = Table(
    "promotions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("from_version", String(64), nullable=False),
    Column("to_version", String(64), nullable=False),
    Column("evaluation_id", String(64)),
    Column("override_reason", Text),
    Column("author", String(200), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

reference_sets = Table(
    "reference_sets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("feature_uri", String(300), nullable=False),
    Column("version", Integer, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

reference_items = Table(
    "reference_items",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("set_id", String(64), ForeignKey("reference_sets.id"), nullable=False),
    Column("detection_id", String(80)),  # None: a box a person drew
    Column("truth_annotation_id", String(64)),  # the ground-truth box it is, if it is one
    Column("object_id", String(64), nullable=False),
    Column("true_class", String(200), nullable=False),
    Column("category", String(200)),
    Column("embedding", LargeBinary, nullable=False),  # float32 bytes, L2-normalised
    Column("thumbnail", LargeBinary),  # a small JPEG crop, for galleries
    Column("xyxy", JSON, nullable=False),
    Column("source", String(100), nullable=False),  # annotation label, "manual", "cluster:…"
    Column("added_in", Integer, nullable=False),  # the set version that added it
    Column("removed_in", Integer),  # the set version that removed it (None: still in)
    Column("created_at", DateTime, nullable=False),
    Index("ix_reference_items_set", "set_id", "removed_in"),
    Index("ix_reference_items_detection", "set_id", "detection_id"),
)

reference_embeddings = Table(  # a reference's embedding in another version's feature space
    "reference_embeddings",
    metadata,
    Column("item_id", String(64), ForeignKey("reference_items.id"), primary_key=True),
    Column("feature_uri", String(300), primary_key=True),
    Column("embedding", LargeBinary, nullable=False),  # float32 bytes, L2-normalised
    Column("created_at", DateTime, nullable=False),
)

taxonomies = Table(
    "taxonomies",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("reference_set_id", String(64), ForeignKey("reference_sets.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # flat | tree
    Column("nodes", JSON, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("top_k", Integer, nullable=False),
    Column("mapping", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("reference_version", Integer, nullable=False),  # the set version it was built on
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

taxonomy_attachments = Table(
    "taxonomy_attachments",
    metadata,
    Column("taxonomy_id", String(64), ForeignKey("taxonomies.id"), primary_key=True),
    Column("collection_id", String(64), ForeignKey("collections.id"), primary_key=True),
    Column("mode", String(20), nullable=False),  # materialize | retroactive | on_demand
    Column("created_at", DateTime, nullable=False),
)

taxonomy_assignments = Table(
    "taxonomy_assignments",
    metadata,
    Column("taxonomy_id", String(64), ForeignKey("taxonomies.id"), primary_key=True),
    Column("detection_id", String(80), primary_key=True),
    Column("collection_id", String(64), nullable=False),
    Column("extractor_key", String(140), nullable=False),
    Column("label", String(200), nullable=False),  # the deepest node reached, or "unknown"
    Column("path", JSON, nullable=False),
    Column("score", Float, nullable=False),
    Column("reference_id", String(64)),
    Column("fields", JSON, nullable=False),  # the enrichment fields, by the mapping
    Column("taxonomy_version", Integer, nullable=False),
    Column("assigned_at", DateTime, nullable=False),
    Index("ix_taxonomy_assignments_label", "taxonomy_id", "collection_id", "label"),
    Index("ix_taxonomy_assignments_version_label", "taxonomy_id", "extractor_key", "label"),
)

cluster_runs = Table(
    "cluster_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("feature_uri", String(300), nullable=False),
    Column("algorithm", String(40), nullable=False),
    Column("params", JSON, nullable=False),
    Column("reduction", JSON),  # {"method": "pca"|"umap"|"tsne", "n_components": n} or None
    Column("projection", String(20), nullable=False),  # how the 2D view was made
    Column("filters", JSON),  # the retriever filter tree that chose the members
    Column("n_members", Integer, nullable=False),
    Column("clusters", JSON, nullable=False),  # {"<id>": {size, name, summary, keywords, …}}
    Column("noise", Integer, nullable=False),
    Column("seconds", JSON, nullable=False),  # per phase
    Column("created_at", DateTime, nullable=False),
)

cluster_members = Table(
    "cluster_members",
    metadata,
    Column("run_id", String(64), ForeignKey("cluster_runs.id"), primary_key=True),
    Column("detection_id", String(80), primary_key=True),
    Column("cluster", Integer, nullable=False),  # -1: noise
    Column("x", Float, nullable=False),
    Column("y", Float, nullable=False),
    Index("ix_cluster_members_cluster", "run_id", "cluster"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("events", JSON, nullable=False),  # event types, or ["*"]
    Column("secret", String(200), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(64), primary_key=True),  # the delivery id the receiver sees
    Column("webhook_id", String(64), ForeignKey("webhooks.id"), nullable=False),
    Column("event_id", String(64), ForeignKey("events.id"), nullable=False),
    Column("status", String(20), nullable=False),  # pending | delivering | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("retry_until", DateTime),  # failed for good if still failing then (None:
    #                                   created_at + the retry window; set by a redelivery)
    Column("lease_until", DateTime),  # a "delivering" row whose lease ran out is retried
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("delivered_at", DateTime),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_webhook", "webhook_id", "created_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(64), ForeignKey("webhook_deliveries.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Index("ix_webhook_attempts_delivery", "delivery_id"),
)

rules = Table(
    "rules",
    metadata,
    Column("name", String(64), primary_key=True),  # a built-in rule (workbench.rules.RULES)
    Column("enabled", Boolean, nullable=False),
    Column("params", JSON, nullable=False),  # the values set; the rule's defaults fill the rest
    Column("enabled_at", DateTime),  # a rule reacts to events from this time on
    Column("updated_at", DateTime, nullable=False),
)

rule_runs = Table(
    "rule_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("rule", String(64), nullable=False),
    Column("event_id", String(64), ForeignKey("events.id"), nullable=False),
    Column("status", String(20), nullable=False),  # done | skipped | failed | submitted | …
    Column("message", Text, nullable=False),
    Column("result", JSON),
    Column("job_id", String(64), ForeignKey("jobs.id")),  # the job a long reaction runs as
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("rule", "event_id", name="uq_rule_runs_rule_event"),  # never twice
    Index("ix_rule_runs_rule_created", "rule", "created_at"),
    Index("ix_rule_runs_job", "job_id"),
)

event_cursors = Table(
    "event_cursors",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("event_created_at", DateTime, nullable=False),  # the last event consumed
    Column("event_id", String(64), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

hard_negatives = Table(
    "hard_negatives",
    metadata,
    Column("detection_id", String(80), primary_key=True),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("extractor_key", String(140), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("class_name", String(200), nullable=False),
    Column("xyxy", JSON, nullable=False),
    Column("annotation_id", String(64), nullable=False),  # the false_positive verdict
    Column("event_id", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_hard_negatives_collection", "collection_id", "extractor_key"),
)

# -- the HTTP API (``workbench serve``) -------------------------------------------------------
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),  # also the key's public prefix
    Column("name", String(200), nullable=False),  # the author of annotations made with it
    Column("role", String(20), nullable=False),  # reviewer | admin
    Column("key_hash", LargeBinary, nullable=False),  # hashlib.scrypt of the secret
    Column("salt", LargeBinary, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
    Index("ix_api_keys_name", "name"),
)

api_idempotency = Table(
    "api_idempotency",
    metadata,
    # Keys are scoped to whoever sent them (an API key's id, or "" on an open loopback).
    Column("principal", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("route", String(300), nullable=False),  # METHOD path
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer),  # None while the first request is still being served
    Column("response", JSON),
    Column("created_at", DateTime, nullable=False),
    Column("completed_at", DateTime),
)

# -- several reviewers, one queue ---------------------------------------------------------
leases = Table(
    "leases",
    metadata,
    # A page of a review queue is leased to the reviewer who opened it, so that two reviewers
    # never get the same item; the document is a detection id or an image document id.
    Column("collection_id", String(64), primary_key=True),
    Column("document_id", String(80), primary_key=True),
    Column("holder", String(200), nullable=False),  # the reviewer (an API key's name, an author)
    Column("expires_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_leases_expires_at", "expires_at"),
    Index("ix_leases_holder", "collection_id", "holder"),
)
