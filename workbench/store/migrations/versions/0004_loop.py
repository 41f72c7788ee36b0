"""Loop: evaluations of one version against another, and promotions with their reasons.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("base_key", sa.String(140), nullable=False),
        sa.Column("candidate_key", sa.String(140), nullable=False),
        sa.Column("images", sa.JSON, nullable=False),
        sa.Column("base", sa.JSON, nullable=False),
        sa.Column("candidate", sa.JSON, nullable=False),
        sa.Column("comparison", sa.JSON, nullable=False),
        sa.Column("decision", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_evaluations_collection", "evaluations", ["collection_id", "created_at"])
    op.create_table(
        "promotions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("from_version", sa.String(64), nullable=False),
        sa.Column("to_version", sa.String(64), nullable=False),
        sa.Column("evaluation_id", sa.String(64)),
        sa.Column("override_reason", sa.Text),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("promotions")
    op.drop_table("evaluations")
