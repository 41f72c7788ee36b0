"""Compound: reference sets (with versioned membership) and taxonomies with their assignments.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_sets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("feature_uri", sa.String(300), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "reference_items",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("set_id", sa.String(64), sa.ForeignKey("reference_sets.id"), nullable=False),
        sa.Column("detection_id", sa.String(80), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("true_class", sa.String(200), nullable=False),
        sa.Column("category", sa.String(200)),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("thumbnail", sa.LargeBinary),
        sa.Column("xyxy", sa.JSON, nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("added_in", sa.Integer, nullable=False),
        sa.Column("removed_in", sa.Integer),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_reference_items_set", "reference_items", ["set_id", "removed_in"])
    op.create_index("ix_reference_items_detection", "reference_items",
                    ["set_id", "detection_id"])
    op.create_table(
        "taxonomies",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("reference_set_id", sa.String(64), sa.ForeignKey("reference_sets.id"),
                  nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("nodes", sa.JSON, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("top_k", sa.Integer, nullable=False),
        sa.Column("mapping", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("reference_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "taxonomy_attachments",
        sa.Column("taxonomy_id", sa.String(64), sa.ForeignKey("taxonomies.id"),
                  primary_key=True),
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  primary_key=True),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "taxonomy_assignments",
        sa.Column("taxonomy_id", sa.String(64), sa.ForeignKey("taxonomies.id"),
                  primary_key=True),
        sa.Column("detection_id", sa.String(80), primary_key=True),
        sa.Column("collection_id", sa.String(64), nullable=False),
        sa.Column("extractor_key", sa.String(140), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("path", sa.JSON, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reference_id", sa.String(64)),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("taxonomy_version", sa.Integer, nullable=False),
        sa.Column("assigned_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_taxonomy_assignments_label", "taxonomy_assignments",
                    ["taxonomy_id", "collection_id", "label"])


def downgrade() -> None:
    op.drop_index("ix_taxonomy_assignments_label", "taxonomy_assignments")
    op.drop_table("taxonomy_assignments")
    op.drop_table("taxonomy_attachments")
    op.drop_table("taxonomies")
    op.drop_index("ix_reference_items_detection", "reference_items")
    op.drop_index("ix_reference_items_set", "reference_items")
    op.drop_table("reference_items")
    op.drop_table("reference_sets")
