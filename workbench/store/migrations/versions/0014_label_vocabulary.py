"""A collection's label vocabulary: ``allow_custom_labels`` on collections. Annotations take
the standard labels (confirmed, corrected, false_positive, missed, and the image marks
image_done and no_objects) unless their collection allows others; a misspelt verdict
("Confirmed") would otherwise be counted apart from the right one in every stat.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("collections", sa.Column("allow_custom_labels", sa.Boolean, nullable=False,
                                           server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("allow_custom_labels")
