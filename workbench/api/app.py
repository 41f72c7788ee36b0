"""The FastAPI app: the routes of :mod:`workbench.api.routes` over one open workspace, the
error shape, and who may call what."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI

from workbench.api.auth import Authenticator
from workbench.api.errors import install
from workbench.api.hosts import is_loopback
from workbench.api.keys import KeyService
from workbench.api.routes import ROUTERS
from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench import Workbench

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


@dataclass(frozen=True)
class ApiOptions:
    """How the server is exposed (``workbench serve`` flags)."""

    host: str = DEFAULT_HOST  # where it listens: keys are required unless it is loopback
    require_key: bool = False  # require keys on loopback too
    max_upload_bytes: int = 200_000_000  # files of one upload request, in all

    def __post_init__(self):
        if self.max_upload_bytes < 1:
            raise ConfigError(f"the upload limit must be at least one byte, got "
                              f"{self.max_upload_bytes}")

    @property
    def keys_required(self) -> bool:
        """Every request needs a key beyond loopback; on loopback only when asked."""
        return self.require_key or not is_loopback(self.host)


def create_app(wb: Workbench, options: ApiOptions | None = None) -> FastAPI:
    """The HTTP API over ``wb`` (opened by the caller, who also closes it)."""
    options = options or ApiOptions()
    app = FastAPI(title="Flywheel Workbench",
                  description="Buckets, collections, batches, retrievers, annotations and "
                  "stats of one workspace, over the same services as the CLI and the app. "
                  "Errors: {\"error\", \"message\", \"details\"}.")
    app.state.wb = wb
    app.state.options = options
    app.state.auth = Authenticator(KeyService(wb.db), options.keys_required)
    install(app)
    for router in ROUTERS:
        app.include_router(router, prefix="/v1")
    return app
