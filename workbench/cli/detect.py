"""``workbench collections`` (list, create) and ``workbench detect`` (a batch run over one)."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, job_progress, open_workspace, option
from workbench.params import DetectParams

collections_app = typer.Typer(help="List and create collections.", invoke_without_command=True)


@collections_app.callback()
def collections_list(ctx: typer.Context) -> None:
    """List collections with their buckets, versions and document counts."""
    if ctx.invoked_subcommand is not None:
        return
    wb = open_workspace()
    rows = []
    for c in wb.collections.list():
        rows.append({"name": c.name, "active": c.active_key,
                     "images": wb.collections.count_objects(c),
                     "versions_run": wb.collections.versions_run(c)})
    human = "\n".join(f"{r['name']:24} active {r['active']:24} {r['images']:>6} images  "
                      f"run: {', '.join(r['versions_run']) or 'none yet'}" for r in rows)
    emit(rows, human or "no collections yet")


@collections_app.command("create")
def collections_create(
    name: str,
    bucket: Annotated[list[str], typer.Option("--bucket", "-b", help="Source bucket (repeatable).")],
    extractor: str = "yolo_detector",
    version: Annotated[str | None, typer.Option(help="Extractor version (default: newest).")] = None,
) -> None:
    """Bind an extractor version to source buckets."""
    created = open_workspace().collections.create(name, bucket, extractor, version)
    emit(created, f"created collection {created.name!r} with {created.active_key}")


def detect(
    collection: str,
    version: Annotated[str | None, typer.Option(help="Extractor version (default: active).")] = None,
    # None: the version's own defaults (default_params: the size it was trained at)
    conf: Annotated[float | None, option(DetectParams, "conf")] = None,
    imgsz: Annotated[int | None, option(DetectParams, "imgsz", help="Inference size (default: "
                                         "the size the version was trained at)")] = None,
    batch_size: Annotated[int | None, option(DetectParams, "batch_size")] = None,
    queue: Annotated[bool, typer.Option("--queue", help="Hand the run to the worker.")] = False,
) -> None:
    """Run (or resume) a batch run: every image not yet processed by that version."""
    from dataclasses import replace

    from workbench.detection import default_params

    wb = open_workspace()
    target = wb.collections.get(collection)
    chosen = wb.registry.get(target.extractor_name, version or target.active_version)
    overrides = {k: v for k, v in {"conf": conf, "imgsz": imgsz, "batch_size": batch_size}.items()
                 if v is not None}
    params = replace(default_params(chosen), **overrides)
    if queue:
        job = wb.detection.submit(collection, chosen.version, params)
        emit(job, f"queued detect job {job.id}")
        return
    with job_progress(f"detect {chosen.key}") as update:
        job = wb.detection.run(collection, chosen.version, params, listener=update)
    emit(job.result, f"{job.result['documents']} images processed by {chosen.key} "
                     f"({job.result['detections_now']} new detections, "
                     f"{job.result['seconds']} s)")
