"""Who is asking: an API key (``Authorization: Bearer <key>`` or ``X-API-Key``), or nobody on
an open loopback server. A reviewer reads and annotates; an admin may do everything."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from fastapi import Depends, Request

from workbench.api.errors import ApiError
from workbench.api.keys import KeyRejected, KeyService

RANK = {"reviewer": 1, "admin": 2}


@dataclass(frozen=True)
class Principal:
    """The sender of a request: a key's id, name and role, or anonymous (``key_id`` "")."""

    key_id: str
    name: str | None  # the author of annotations made with the key
    role: str


ANONYMOUS = Principal("", None, "admin")  # loopback with keys optional: the machine's owner


class Authenticator:
    """Checks requests' keys; a token that passed scrypt once is remembered by its sha256 so
    that later requests cost a row read (revocation is still seen at once)."""

    def __init__(self, keys: KeyService, required: bool):
        self.keys, self.required = keys, required
        self._known: dict[str, str] = {}  # sha256(token) → key id
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Principal:
        token = _token(request)
        if token is None:
            if self.required:
                raise ApiError(401, "unauthorized", "this server needs an API key: send "
                               "'Authorization: Bearer <key>' or 'X-API-Key: <key>' (make one "
                               "with `workbench keys create --name NAME --role reviewer`)",
                               headers={"WWW-Authenticate": "Bearer"})
            return ANONYMOUS
        digest = hashlib.sha256(token.encode()).hexdigest()
        try:
            with self._lock:
                key_id = self._known.get(digest)
            if key_id is not None:
                key = self.keys.get(key_id)
                if not key.active:
                    raise KeyRejected(f"API key {key.id} ({key.name}) was revoked; ask for a "
                                      "new one")
            else:
                key = self.keys.check(token)
                with self._lock:
                    self._known[digest] = key.id
        except KeyRejected as exc:
            raise ApiError(401, "unauthorized", str(exc),
                           headers={"WWW-Authenticate": "Bearer"}) from None
        return Principal(key.id, key.name, key.role)


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "unauthorized", "the Authorization header should read "
                           "'Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
        return value.strip()
    return request.headers.get("x-api-key") or None


def principal(request: Request) -> Principal:
    """The request's sender (a FastAPI dependency)."""
    return request.app.state.auth(request)


def require(role: str):
    """A dependency that lets through ``role`` or a higher one, and answers 403 otherwise."""

    def check(who: Principal = Depends(principal)) -> Principal:
        if RANK[who.role] < RANK[role]:
            raise ApiError(403, "forbidden", f"this needs an {role} key; key {who.key_id} "
                           f"({who.name}) is a {who.role} key (reviewers read and annotate)")
        return who

    return check


reviewer = require("reviewer")  # reading and annotating
admin = require("admin")  # everything else
