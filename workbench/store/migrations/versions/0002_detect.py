"""Detect: extractor versions (the model registry), collections, documents, detections, events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "extractor_versions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("weights_path", sa.Text),
        sa.Column("weights_sha256", sa.String(64)),
        sa.Column("code_path", sa.Text),
        sa.Column("entrypoint", sa.String(200)),
        sa.Column("classes", sa.JSON, nullable=False),
        sa.Column("base_model", sa.Text),
        sa.Column("parent_version", sa.String(64)),
        sa.Column("lineage", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_extractor_versions_name_version"),
    )
    op.create_table(
        "collections",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("extractor_name", sa.String(64), nullable=False),
        sa.Column("active_version", sa.String(64), nullable=False),
        sa.Column("bucket_ids", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("object_id", sa.String(64), sa.ForeignKey("objects.id"), nullable=False),
        sa.Column("extractor_key", sa.String(140), nullable=False),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("n_detections", sa.Integer, nullable=False),
        sa.Column("job_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("collection_id", "object_id", "extractor_key",
                            name="uq_documents_collection_object_version"),
    )
    op.create_index("ix_documents_collection_version", "documents",
                    ["collection_id", "extractor_key"])
    op.create_table(
        "detections",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("document_id", sa.String(64), sa.ForeignKey("documents.id"), nullable=False),
        sa.Column("collection_id", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("extractor_key", sa.String(140), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("class_name", sa.String(200), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("x1", sa.Float, nullable=False),
        sa.Column("y1", sa.Float, nullable=False),
        sa.Column("x2", sa.Float, nullable=False),
        sa.Column("y2", sa.Float, nullable=False),
        sa.Column("embedding_id", sa.String(80)),
    )
    op.create_index("ix_detections_version_confidence", "detections",
                    ["collection_id", "extractor_key", "confidence"])
    op.create_index("ix_detections_document", "detections", ["document_id"])
    op.create_index("ix_detections_object", "detections", ["object_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_events_type_created", "events", ["type", "created_at"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("detections")
    op.drop_table("documents")
    op.drop_table("collections")
    op.drop_table("extractor_versions")
