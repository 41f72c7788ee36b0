"""What the route modules share: the workspace of a request, idempotent creation, the JSON
form of pages and jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from workbench.api.auth import Principal
from workbench.api.idempotency import HEADER, request_hash, respond

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.paging import Page

MAX_PAGE = 1000
IdempotencyKey = Header(None, alias=HEADER,
                        description="Retrying with the same key and body returns the first "
                        "answer instead of creating twice.")


def workspace(request: Request) -> Workbench:
    """The workspace the app serves."""
    return request.app.state.wb


def create(request: Request, who: Principal, key: str | None, body: Any,
           make: Callable[[], tuple[int, Any, dict[str, str]]], digest: str | None = None
           ) -> JSONResponse:
    """Answer a creating POST with ``make()`` once per ``Idempotency-Key``."""
    route = f"{request.method} {request.url.path}"
    if key is not None:  # hashing a bulk request's body costs; only a key needs it
        digest = digest or request_hash(route, body)
    return respond(workspace(request).db, who, key, route, digest or "", make)


def reviewer_name(wb: Workbench, who: Principal) -> str:
    """Who leases and judges: the key's name, or the machine's owner on an open loopback
    (the author of that owner's annotations)."""
    return who.name or wb.annotations.default_author


def page_json(page: Page, item: Callable[[Any], Any] = lambda x: x) -> dict[str, Any]:
    """A page of a listing: its rows, how many match, and the cursor of the next page."""
    return {"items": [jsonable_encoder(item(row)) for row in page.items], "total": page.total,
            "total_exact": page.exact, "next_cursor": page.next_cursor}


def job_url(job_id: str) -> str:
    """Where a job's state is read."""
    return f"/v1/jobs/{job_id}"


def job_json(job) -> dict[str, Any]:
    """A job as the API shows it, with its URL."""
    data = jsonable_encoder(job)
    data["url"] = job_url(job.id)
    return data
