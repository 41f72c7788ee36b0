"""``workbench buckets``: list and create buckets."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace

buckets_app = typer.Typer(help="List and create buckets.", invoke_without_command=True)


@buckets_app.callback()
def buckets_list(ctx: typer.Context) -> None:
    """List buckets with their image counts and schema."""
    if ctx.invoked_subcommand is not None:
        return
    wb = open_workspace()
    rows = []
    for b in wb.buckets.list():
        fields = ", ".join(f"{f.name}:{f.type}{'*' if f.required else ''}" for f in b.fields)
        rows.append({"id": b.id, "name": b.name, "images": wb.buckets.count_objects(b),
                     "schema": b.to_schema(), "fields": fields})
    human = "\n".join(f"{r['name']:24} {r['images']:>7} images   {r['fields']}" for r in rows)
    emit(rows, human or "no buckets yet; create one with `workbench buckets create NAME`")


@buckets_app.command("create")
def buckets_create(
    name: str,
    field: Annotated[list[str], typer.Option("--field", "-f", help="name:type[:required]; types: text, integer, number, boolean, datetime.")] = [],  # noqa: B006
    description: str = "",
) -> None:
    """Create a bucket with a metadata schema."""
    from workbench.buckets import schema_from_fields

    bucket = open_workspace().buckets.create(name, schema_from_fields(field), description)
    emit({"id": bucket.id, "name": bucket.name, "schema": bucket.to_schema()},
         f"created bucket {bucket.name!r} ({bucket.id})")
