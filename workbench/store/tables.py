"""The metadata schema as SQLAlchemy Core tables: what queries are written against.

Migrations in ``migrations/versions`` create and change these tables; a test checks that a
migrated database matches the definitions here.
"""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
    Index("ix_objects_bucket_created", "bucket_id", "created_at"),
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
