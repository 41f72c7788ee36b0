"""``workbench ingest``: images (and the sampled frames of videos) into a bucket, with a report
line for each input refused and for each video."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, job_progress, open_workspace, parse_meta, state


def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders, zip archives or URLs (images or videos: mp4, mov, mkv, avi, webm).")],
    bucket: Annotated[str, typer.Option("--bucket", "-b", help="Target bucket (created if missing).")],
    meta: Annotated[list[str], typer.Option("--meta", "-m", help="Metadata key=value for every image.")] = [],  # noqa: B006
    include: Annotated[list[str], typer.Option(help="Filename pattern for folders/zips (repeatable).")] = [],  # noqa: B006
    queue: Annotated[bool, typer.Option("--queue", help="Hand the ingest to the background worker.")] = False,
    follow_symlinks: Annotated[bool, typer.Option("--follow-symlinks", help="Follow links in folders that lead out of them (skipped with a report line by default).")] = False,
    fps: Annotated[float, typer.Option("--fps", help="Video frames sampled per second (> 0); near-identical consecutive frames are skipped.")] = 1.0,
) -> None:
    """Ingest images, and videos as sampled frames, into a bucket and print the report."""
    from workbench.buckets import schema_from_fields
    from workbench.video import check_fps

    wb = open_workspace()
    metadata = parse_meta(meta)
    check_fps(fps)  # before a bucket is created for an ingest that cannot start
    if not wb.buckets.exists(bucket):
        wb.buckets.create(bucket, schema_from_fields([f"{key}:text" for key in metadata]))
        if not state.json:
            typer.echo(f"created bucket {bucket!r}" + (
                f" with text fields {', '.join(metadata)}" if metadata else ""))
    if queue:
        job = wb.ingest.submit(bucket, paths, metadata, tuple(include) or None,
                               follow_symlinks, fps)
        emit(job, f"queued ingest job {job.id}; follow it with `workbench jobs`")
        return
    with job_progress("ingest") as update:
        report = wb.ingest.run(bucket, paths, metadata, tuple(include) or None, listener=update,
                               follow_symlinks=follow_symlinks, fps=fps)
    if state.json:
        emit(report, "")
    else:
        for item in report.items:
            if item.status != "accepted" or item.reason:  # a video's line says its frames
                typer.echo(f"  {item.status:9} {item.source}: {item.reason}")
        typer.echo(f"{report.summary()} into bucket {bucket!r} (job {report.job_id})")
    if report.accepted == 0 and report.rejected:
        raise typer.Exit(1)
