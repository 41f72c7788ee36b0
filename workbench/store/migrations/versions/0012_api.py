"""The HTTP API: API keys and idempotency records.

- ``api_keys``: named keys with a role (reviewer or admin), stored as a scrypt hash and
  salt (the secret is shown once, when the key is made), revocable.
- ``api_idempotency``: one row per ``Idempotency-Key`` a client sent with a creating POST:
  the route, a hash of the request and the response, so that a retried request gets the
  first answer instead of making a second thing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.LargeBinary, nullable=False),
        sa.Column("salt", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime),
    )
    op.create_index("ix_api_keys_name", "api_keys", ["name"])
    op.create_table(
        "api_idempotency",
        sa.Column("principal", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("route", sa.String(300), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("response", sa.JSON),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("completed_at", sa.DateTime),
    )


def downgrade() -> None:
    op.drop_table("api_idempotency")
    op.drop_index("ix_api_keys_name", "api_keys")
    op.drop_table("api_keys")
