"""``workbench serve``: the HTTP API (FastAPI under uvicorn) over this workspace."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import open_workspace


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on. Beyond loopback every "
                                           "request needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    require_key: Annotated[bool, typer.Option(
        "--require-key/--no-require-key", envvar="WORKBENCH_API_REQUIRE_KEY",
        help="Require an API key on loopback too (always required beyond it).")] = False,
    max_upload_mb: Annotated[float, typer.Option(
        envvar="WORKBENCH_API_MAX_UPLOAD_MB", min=0.001,
        help="Largest upload request (its files in all), in MB.")] = 200.0,
    worker: Annotated[bool | None, typer.Option(
        "--worker/--no-worker", help="Start a background worker for queued jobs (batch "
        "runs) unless one runs; default: the WORKBENCH_AUTOSTART_WORKER setting.")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs) until interrupted."""
    # FastAPI and uvicorn are imported here, so that other commands do not pay for them.
    import uvicorn

    from workbench.api import create_app
    from workbench.api.app import ApiOptions
    from workbench.api.keys import KeyService
    from workbench.api.uploads import sweep
    from workbench.jobs import ensure_worker

    wb = open_workspace()
    swept = sweep(wb.settings.staging_dir)  # uploads a killed server was receiving
    if swept:
        typer.echo(f"removed {swept} unfinished upload(s) left by a stopped server", err=True)
    options = ApiOptions(host=host, require_key=require_key,
                         max_upload_bytes=int(max_upload_mb * 1_000_000))
    if worker if worker is not None else wb.settings.autostart_worker:
        ensure_worker(wb.home)
    keys = "required" if options.keys_required else "optional"
    if options.keys_required and not KeyService(wb.db).list():
        typer.echo("no API key exists yet: every request will be refused until you make one "
                   "with `workbench keys create --name NAME --role reviewer|admin`", err=True)
    typer.echo(f"serving {wb.home} on http://{host}:{port} (docs: /docs; API keys {keys})",
               err=True)
    try:
        uvicorn.run(create_app(wb, options), host=host, port=port, log_level="info")
    finally:
        wb.close()
