"""Clusters: stored cluster runs with their members, 2D coordinates and labels.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("feature_uri", sa.String(300), nullable=False),
        sa.Column("algorithm", sa.String(40), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("reduction", sa.JSON),
        sa.Column("projection", sa.String(20), nullable=False),
        sa.Column("filters", sa.JSON),
        sa.Column("n_members", sa.Integer, nullable=False),
        sa.Column("clusters", sa.JSON, nullable=False),
        sa.Column("noise", sa.Integer, nullable=False),
        sa.Column("seconds", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "cluster_members",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("cluster_runs.id"), primary_key=True),
        sa.Column("detection_id", sa.String(80), primary_key=True),
        sa.Column("cluster", sa.Integer, nullable=False),
        sa.Column("x", sa.Float, nullable=False),
        sa.Column("y", sa.Float, nullable=False),
    )
    op.create_index("ix_cluster_members_cluster", "cluster_members", ["run_id", "cluster"])


def downgrade() -> None:
    op.drop_index("ix_cluster_members_cluster", "cluster_members")
    op.drop_table("cluster_members")
    op.drop_table("cluster_runs")
