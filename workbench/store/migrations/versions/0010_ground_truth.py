"""Ground truth per image: object boxes and negative regions (``truth_boxes``), the image's
review state and gold-set place (``image_truth``), and an ``origin`` on annotations
(``human``, or ``carried`` for verdicts carried over to another version's detections). A
reference may be a drawn ground-truth box (no detection), and its embeddings in other
versions' feature spaces are cached (``reference_embeddings``). The ground truth of every
annotated image is built from its annotations here; doing it again gives the same rows.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("annotations", sa.Column("origin", sa.String(20), nullable=False,
                                           server_default="human"))
    op.create_index("ix_annotations_object", "annotations", ["collection_id", "object_id"])
    op.create_table(
        "truth_boxes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("class_name", sa.String(200)),
        sa.Column("x1", sa.Float, nullable=False),
        sa.Column("y1", sa.Float, nullable=False),
        sa.Column("x2", sa.Float, nullable=False),
        sa.Column("y2", sa.Float, nullable=False),
        sa.Column("annotation_id", sa.String(64), nullable=False),
        sa.Column("detection_id", sa.String(80)),
        sa.Column("extractor_key", sa.String(140)),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_truth_boxes_image", "truth_boxes", ["collection_id", "object_id"])
    op.create_table(
        "image_truth",
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  primary_key=True),
        sa.Column("object_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("objects", sa.Integer, nullable=False),
        sa.Column("negatives", sa.Integer, nullable=False),
        sa.Column("done_annotation_id", sa.String(64)),
        sa.Column("gold", sa.Boolean, nullable=False),
        sa.Column("gold_decided", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_image_truth_state", "image_truth", ["collection_id", "state"])
    # A reference is a ground-truth box (a drawn one has no detection), with its embedding
    # in every other version's feature space cached as it is first needed.
    with op.batch_alter_table("reference_items") as batch:
        batch.alter_column("detection_id", existing_type=sa.String(80), nullable=True)
        batch.add_column(sa.Column("truth_annotation_id", sa.String(64)))
    op.create_table(
        "reference_embeddings",
        sa.Column("item_id", sa.String(64), sa.ForeignKey("reference_items.id"),
                  primary_key=True),
        sa.Column("feature_uri", sa.String(300), primary_key=True),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    _build_from_annotations()


def _build_from_annotations() -> None:
    """The ground truth of every image that has annotations, from those annotations."""
    from workbench.config import load_settings
    from workbench.truth import refresh

    settings = load_settings()
    conn = op.get_bind()
    pairs = conn.execute(sa.text(
        "SELECT DISTINCT collection_id, object_id FROM annotations ORDER BY 1, 2")).all()
    by_collection: dict[str, list[str]] = {}
    for collection_id, object_id in pairs:
        by_collection.setdefault(collection_id, []).append(object_id)
    for collection_id, object_ids in by_collection.items():
        for start in range(0, len(object_ids), 500):
            refresh(conn, collection_id, object_ids[start:start + 500],
                    settings.gold_fraction, settings.gold_target)


def downgrade() -> None:
    op.drop_table("reference_embeddings")
    with op.batch_alter_table("reference_items") as batch:
        batch.drop_column("truth_annotation_id")
    op.drop_index("ix_image_truth_state", "image_truth")
    op.drop_table("image_truth")
    op.drop_index("ix_truth_boxes_image", "truth_boxes")
    op.drop_table("truth_boxes")
    op.drop_index("ix_annotations_object", "annotations")
    op.drop_column("annotations", "origin")
