"""``workbench ingest``: images into a bucket, with a report line for each one refused."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, job_progress, open_workspace, parse_meta, state


def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders, zip archives or URLs.")],
    bucket: Annotated[str, typer.Option("--bucket", "-b", help="Target bucket (created if missing).")],
    meta: Annotated[list[str], typer.Option("--meta", "-m", help="Metadata key=value for every image.")] = [],  # noqa: B006
    include: Annotated[list[str], typer.Option(help="Filename pattern for folders/zips (repeatable).")] = [],  # noqa: B006
    queue: Annotated[bool, typer.Option("--queue", help="Hand the ingest to the background worker.")] = False,
    follow_symlinks: Annotated[bool, typer.Option("--follow-symlinks", help="Follow links in folders that lead out of them (skipped with a report line by default).")] = False,
) -> None:
    """Ingest images into a bucket and print the report."""
    from workbench.buckets import schema_from_fields

    wb = open_workspace()
    metadata = parse_meta(meta)
    if not wb.buckets.exists(bucket):
        wb.buckets.create(bucket, schema_from_fields([f"{key}:text" for key in metadata]))
        if not state.json:
            typer.echo(f"created bucket {bucket!r}" + (
                f" with text fields {', '.join(metadata)}" if metadata else ""))
    if queue:
        job = wb.ingest.submit(bucket, paths, metadata, tuple(include) or None,
                               follow_symlinks)
        emit(job, f"queued ingest job {job.id}; follow it with `workbench jobs`")
        return
    with job_progress("ingest") as update:
        report = wb.ingest.run(bucket, paths, metadata, tuple(include) or None, listener=update,
                               follow_symlinks=follow_symlinks)
    if state.json:
        emit(report, "")
    else:
        for item in report.items:
            if item.status != "accepted":
                typer.echo(f"  {item.status:9} {item.source}: {item.reason}")
        typer.echo(f"{report.summary()} into bucket {bucket!r} (job {report.job_id})")
    if report.accepted == 0 and report.rejected:
        raise typer.Exit(1)
