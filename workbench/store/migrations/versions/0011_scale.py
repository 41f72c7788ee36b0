"""Scale: what the pages and queues filter, rank and count on, indexed.

- ``documents.uncertainty``: the sum over an image's detections of ``1 - |2c - 1|`` (a box at
  0.5 counts 1, one at 0.95 counts 0.1), written with the document, indexed per version, so
  that the image-review queue takes its most uncertain open images from an index instead of
  reading every detection of the collection.
- ``ix_detections_image``: the detections of given images, of one version (a page of the
  Detect grid, an image in Review) or of all (the ground truth's refresh), without scanning
  the collection's detections.
- ``ix_detections_version_class``: per-class counts and class filters from the index alone.
- ``ANALYZE``: SQLite's planner picks an index by its statistics; without them it took the
  confidence index for queries that name images, and scanned. Statistics taken here go
  stale as the workspace grows: ``MetadataStore.ensure_statistics`` renews them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("uncertainty", sa.Float))
    op.execute("UPDATE documents SET uncertainty = (SELECT COALESCE(SUM(1 - ABS(2 * "
               "detections.confidence - 1)), 0) FROM detections "
               "WHERE detections.document_id = documents.id)")
    op.create_index("ix_documents_uncertainty", "documents",
                    ["collection_id", "extractor_key", "uncertainty"])
    op.create_index("ix_detections_image", "detections",
                    ["collection_id", "object_id", "extractor_key", "idx"])
    op.create_index("ix_detections_version_class", "detections",
                    ["collection_id", "extractor_key", "class_name", "confidence"])
    op.execute("ANALYZE")


def downgrade() -> None:
    op.drop_index("ix_detections_version_class", "detections")
    op.drop_index("ix_detections_image", "detections")
    op.drop_index("ix_documents_uncertainty", "documents")
    op.drop_column("documents", "uncertainty")
