"""Hardening.

- A redelivered webhook delivery keeps the time its new retry window ends (``retry_until``;
  otherwise the window runs from the delivery's creation).
- A training job registers at most one version: the job id becomes a unique key of the
  version row (taken from each version's lineage; where an earlier bug registered two
  versions from one job, the first keeps the key and the others keep it in their lineage).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("retry_until", sa.DateTime))
    op.add_column("extractor_versions", sa.Column("training_job", sa.String(64)))
    versions = sa.table("extractor_versions", sa.column("id", sa.String),
                        sa.column("lineage", sa.JSON), sa.column("created_at", sa.DateTime),
                        sa.column("training_job", sa.String))
    conn = op.get_bind()
    seen = set()
    for row in conn.execute(sa.select(versions.c.id, versions.c.lineage)
                            .order_by(versions.c.created_at, versions.c.id)).all():
        job = (row.lineage or {}).get("training_job")
        if job and job not in seen:
            seen.add(job)
            conn.execute(versions.update().where(versions.c.id == row.id)
                         .values(training_job=job))
    op.create_index("uq_extractor_versions_training_job", "extractor_versions",
                    ["training_job"], unique=True)


def downgrade() -> None:
    op.drop_column("webhook_deliveries", "retry_until")
    op.drop_index("uq_extractor_versions_training_job", "extractor_versions")
    op.drop_column("extractor_versions", "training_job")
