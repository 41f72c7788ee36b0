"""Scale: two listings that sorted or counted every row of their kind, indexed.

- ``ix_objects_bucket_created`` gains ``id``: the Ingest page lists a bucket's images newest
  first with the id as tie-break, and images stamped in one instant (a bulk import) were
  sorted whole for each page (287 ms at 200k images; the index now gives the order).
- ``ix_taxonomy_assignments_version_label``: a taxonomy's label counts on one version are
  read from the index alone (449 ms at 1M assignments when every row was looked up; 120 ms).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_objects_bucket_created", "objects")
    op.create_index("ix_objects_bucket_created", "objects", ["bucket_id", "created_at", "id"])
    op.create_index("ix_taxonomy_assignments_version_label", "taxonomy_assignments",
                    ["taxonomy_id", "extractor_key", "label"])
    # The planner's statistics for the new indexes (SQLite's ANALYZE; Postgres's own).
    op.execute("ANALYZE objects")
    op.execute("ANALYZE taxonomy_assignments")


def downgrade() -> None:
    op.drop_index("ix_taxonomy_assignments_version_label", "taxonomy_assignments")
    op.drop_index("ix_objects_bucket_created", "objects")
    op.create_index("ix_objects_bucket_created", "objects", ["bucket_id", "created_at"])
