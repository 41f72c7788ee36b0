"""Several reviewers, one queue: leases.

- ``leases``: one row per (collection, document) leased to a reviewer until ``expires_at``;
  a review queue skips items leased to someone else and leases the page it returns, and a
  verdict on an item leased to someone else is refused.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("collection_id", sa.String(64), primary_key=True),
        sa.Column("document_id", sa.String(80), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_leases_expires_at", "leases", ["expires_at"])
    op.create_index("ix_leases_holder", "leases", ["collection_id", "holder"])


def downgrade() -> None:
    op.drop_index("ix_leases_holder", "leases")
    op.drop_index("ix_leases_expires_at", "leases")
    op.drop_table("leases")
