"""API keys: named, with a role, stored as a scrypt hash, shown once, revocable.

A key reads ``wbk_<id>.<secret>``: the id finds the row, the secret is checked against its
scrypt hash, so a request costs one hash, not one per stored key. Nothing here imports
FastAPI: ``workbench keys`` uses it from the command line.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from workbench.errors import NotFoundError, ValidationError
from workbench.store import tables as t
from workbench.store.metadata import MetadataStore, as_utc, new_id, utcnow

ROLES = ("reviewer", "admin")  # reviewer: read and annotate; admin: everything
PREFIX = "wbk_"
# scrypt's cost: 2**14 × 8 × 128 bytes = 16 MiB and some tens of milliseconds per check.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}


class KeyRejected(Exception):
    """A request's key is malformed, unknown, wrong or revoked (the API answers 401)."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether requests may still use it."""
        return self.revoked_at is None


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


class KeyService:
    """Create, list, revoke and check API keys."""

    def __init__(self, db: MetadataStore):
        self.db = db

    def create(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key and its secret token, which is shown this once and never stored."""
        if not name or len(name) > 200 or name != name.strip():
            raise ValidationError(f"a key needs a name of 1-200 characters without surrounding "
                                  f"spaces (it becomes the author of annotations); got {name!r}")
        if role not in ROLES:
            raise ValidationError(f"role {role!r} is not one of {', '.join(ROLES)} (reviewer "
                                  "reads and annotates; admin may do everything)")
        key_id, secret, salt = new_id("key"), secrets.token_urlsafe(32), secrets.token_bytes(16)
        with self.db.write() as conn:
            conn.execute(t.api_keys.insert().values(
                id=key_id, name=name, role=role, key_hash=_hash(secret, salt), salt=salt,
                created_at=utcnow()))
        return self.get(key_id), f"{PREFIX}{key_id}.{secret}"

    def get(self, key_id: str) -> ApiKey:
        """A key by id; NotFoundError if there is none."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).first()
        if row is None:
            raise NotFoundError(f"no API key with id {key_id!r}; list them with "
                                "`workbench keys list`")
        return _key_from_row(row)

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        """Keys, oldest first (active ones only unless ``include_revoked``)."""
        query = sa.select(t.api_keys).order_by(t.api_keys.c.created_at, t.api_keys.c.id)
        if not include_revoked:
            query = query.where(t.api_keys.c.revoked_at.is_(None))
        with self.db.read() as conn:
            return [_key_from_row(r) for r in conn.execute(query)]

    def revoke(self, id_or_name: str) -> list[ApiKey]:
        """Revoke a key by id, or every active key of that name; returns those revoked."""
        c = t.api_keys.c
        with self.db.write() as conn:
            ids = conn.execute(sa.select(c.id).where(
                sa.or_(c.id == id_or_name, c.name == id_or_name), c.revoked_at.is_(None))
            ).scalars().all()
            if not ids:
                raise NotFoundError(f"no active API key with id or name {id_or_name!r}; list "
                                    "them with `workbench keys list`")
            conn.execute(t.api_keys.update().where(c.id.in_(ids)).values(revoked_at=utcnow()))
        return [self.get(key_id) for key_id in ids]

    def check(self, token: str) -> ApiKey:
        """The active key a token belongs to; KeyRejected (with why) otherwise."""
        key_id, dot, secret = token.removeprefix(PREFIX).partition(".")
        if not token.startswith(PREFIX) or not dot or not key_id or not secret:
            raise KeyRejected(f"an API key looks like {PREFIX}<id>.<secret>; make one with "
                              "`workbench keys create --name NAME --role reviewer|admin`")
        with self.db.read() as conn:
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).first()
        if row is None or not hmac.compare_digest(_hash(secret, row.salt), row.key_hash):
            raise KeyRejected("this API key is not one of this workspace's keys")
        if row.revoked_at is not None:
            raise KeyRejected(f"API key {key_id} ({row.name}) was revoked; ask for a new one")
        return _key_from_row(row)


def _key_from_row(row) -> ApiKey:
    return ApiKey(row.id, row.name, row.role, as_utc(row.created_at), as_utc(row.revoked_at))
