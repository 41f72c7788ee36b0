"""The HTTP API (``workbench serve``): FastAPI routes over the same services as the CLI and
the pages, with the tutorial's resource names and payloads.

Importing this package loads no FastAPI (``workbench keys`` uses :mod:`workbench.api.keys`
from the command line); :func:`create_app` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from workbench import Workbench
    from workbench.api.app import ApiOptions


def create_app(wb: Workbench, options: ApiOptions | None = None) -> FastAPI:
    """The FastAPI app over an open workspace (see :func:`workbench.api.app.create_app`)."""
    from workbench.api.app import create_app as make

    return make(wb, options)


__all__: list[Any] = ["create_app"]
