"""Review: retrievers and their executions, annotations with history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retrievers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("stages", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "retriever_executions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("retriever_id", sa.String(64), sa.ForeignKey("retrievers.id"),
                  nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("result_ids", sa.JSON, nullable=False),
        sa.Column("stage_ms", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_retriever_executions_retriever", "retriever_executions",
                    ["retriever_id", "created_at"])
    op.create_table(
        "annotations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("document_id", sa.String(80), nullable=False),
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("extractor_key", sa.String(140)),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("confidence", sa.Float),
        sa.Column("reasoning", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("retriever_id", sa.String(64)),
        sa.Column("execution_id", sa.String(64)),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("deleted_at", sa.DateTime),
    )
    op.create_index("ix_annotations_collection_label", "annotations",
                    ["collection_id", "label", "created_at"])
    op.create_index("ix_annotations_document", "annotations", ["document_id"])
    op.create_index("ix_annotations_execution", "annotations", ["execution_id"])
    op.create_table(
        "annotation_history",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("annotation_id", sa.String(64), sa.ForeignKey("annotations.id"),
                  nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("changed_at", sa.DateTime, nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_annotation_history_annotation", "annotation_history",
                    ["annotation_id", "revision"])


def downgrade() -> None:
    op.drop_table("annotation_history")
    op.drop_table("annotations")
    op.drop_table("retriever_executions")
    op.drop_table("retrievers")
