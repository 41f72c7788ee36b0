"""One error shape for every answer that is not a success::

    {"error": "not_found", "message": "no bucket named 'x' (buckets: …)", "details": null}

The workbench's own errors keep their messages (they already say what was received, what
was expected and what to do); each kind has its status code here, and only here.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workbench.errors import (
    AlreadyExistsError,
    ConfigError,
    JobCancelled,
    JobFailed,
    MissingDependencyError,
    NotFoundError,
    ValidationError,
    WorkbenchError,
)
from workbench.leases import LeaseConflict

log = logging.getLogger(__name__)

# The workbench's errors → (status, code); the first class that matches wins.
STATUS: tuple[tuple[type[WorkbenchError], int, str], ...] = (
    (NotFoundError, 404, "not_found"),
    (AlreadyExistsError, 409, "already_exists"),
    (LeaseConflict, 409, "lease_conflict"),
    (ValidationError, 422, "validation_error"),
    (ConfigError, 400, "config_error"),
    (MissingDependencyError, 503, "missing_dependency"),
    (JobCancelled, 409, "job_cancelled"),
    (JobFailed, 500, "job_failed"),
    (WorkbenchError, 400, "bad_request"),
)
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "validation_error"}


class ApiError(Exception):
    """An answer the API layer gives itself (auth, idempotency, uploads)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error shape with its status code."""
    return JSONResponse({"error": code, "message": message, "details": details},
                        status_code=status, headers=headers)


def status_of(exc: WorkbenchError) -> tuple[int, str]:
    """The status code and error code of a workbench error."""
    return next((status, code) for kind, status, code in STATUS if isinstance(exc, kind))


def unknown_key(key: str, allowed: list[str]) -> str:
    """``unknown field 'bucket_shema' — did you mean 'bucket_schema'?`` (or the allowed keys)."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f" — did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
    return f"unknown field {key!r}{hint}"


def _explain(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err["loc"] if p != "body") or "body"
        message = str(err.get("msg", "")).removeprefix("Value error, ")
        if err["type"] == "missing":
            parts.append(f"{where} is required")
        elif err["type"] == "value_error" and message.startswith("unknown field"):
            # a Payload's own check: the location is the object that holds the key
            parts.append(message if where == "body" else f"{where}: {message}")
        elif err["type"] == "json_invalid":
            parts.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', '')})")
        else:
            parts.append(f"{where}: {message} (got {err.get('input')!r:.80})")
    return "; ".join(parts) or "the request does not match its schema"


def install(app: FastAPI) -> None:
    """Give ``app`` the error shape for every failure."""

    @app.exception_handler(WorkbenchError)
    async def _workbench(request: Request, exc: WorkbenchError) -> JSONResponse:
        status, code = status_of(exc)
        details = {"job_id": exc.job_id} if isinstance(exc, JobFailed) else None
        return error_response(status, code, str(exc), details)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "type": e["type"],
                   "msg": str(e.get("msg", "")).removeprefix("Value error, ")}
                  for e in exc.errors()]
        return error_response(422, "validation_error", _explain(list(exc.errors())), errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs"
        return error_response(exc.status_code, code, message, None,
                              getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); "
                              "the server's log has the traceback")
