"""Automation rules: their settings, a log of their runs, the rules engine's event cursor and
the hard-negative list.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The rules engine reads events in (created_at, id) order from its cursor on.
    op.create_index("ix_events_created", "events", ["created_at", "id"])
    op.create_table(
        "rules",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("enabled_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "rule_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("result", sa.JSON),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id")),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("rule", "event_id", name="uq_rule_runs_rule_event"),
    )
    op.create_index("ix_rule_runs_rule_created", "rule_runs", ["rule", "created_at"])
    op.create_index("ix_rule_runs_job", "rule_runs", ["job_id"])
    op.create_table(
        "event_cursors",
        sa.Column("consumer", sa.String(64), primary_key=True),
        sa.Column("event_created_at", sa.DateTime, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "hard_negatives",
        sa.Column("detection_id", sa.String(80), primary_key=True),
        sa.Column("collection_id", sa.String(64), sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("extractor_key", sa.String(140), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("class_name", sa.String(200), nullable=False),
        sa.Column("xyxy", sa.JSON, nullable=False),
        sa.Column("annotation_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_hard_negatives_collection", "hard_negatives",
                    ["collection_id", "extractor_key"])


def downgrade() -> None:
    op.drop_index("ix_hard_negatives_collection", "hard_negatives")
    op.drop_table("hard_negatives")
    op.drop_table("event_cursors")
    op.drop_index("ix_rule_runs_job", "rule_runs")
    op.drop_index("ix_rule_runs_rule_created", "rule_runs")
    op.drop_table("rule_runs")
    op.drop_table("rules")
    op.drop_index("ix_events_created", "events")
