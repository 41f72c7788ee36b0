"""``workbench retrievers``: list, save and run retrievers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.common import (
    emit,
    hit_line,
    open_workspace,
    parse_meta,
    read_json_file,
)

retrievers_app = typer.Typer(help="List, save and run retrievers.", invoke_without_command=True)


@retrievers_app.callback()
def retrievers_list(ctx: typer.Context, collection: Annotated[str | None, typer.Option()] = None
                    ) -> None:
    """List retrievers with their stages."""
    if ctx.invoked_subcommand is not None:
        return
    items = open_workspace().retrievers.list(collection)
    human = "\n".join(f"{r.name:30} {' → '.join(s['stage_type'] for s in r.stages)}"
                      for r in items)
    emit(items, human or "no retrievers yet (each collection's review queue is created when "
                         "first used)")


@retrievers_app.command("save")
def retrievers_save(
    name: str,
    collection: Annotated[str, typer.Option("--collection", "-c")],
    stages: Annotated[Path, typer.Option(help="JSON file with the list of stages.")],
    description: str = "",
    replace: Annotated[bool, typer.Option(help="Overwrite a retriever of that name.")] = False,
) -> None:
    """Validate and save a retriever (a bad stage is named with its field)."""
    parsed = read_json_file(stages, "stages")
    saved = open_workspace().retrievers.save(name, collection, parsed, description, replace)
    emit(saved, f"saved retriever {saved.name!r} ({len(saved.stages)} stages)")


@retrievers_app.command("run")
def retrievers_run(
    name: str,
    inputs: Annotated[list[str], typer.Option("--input", "-i", help="key=value for {{INPUT.key}}.")] = [],  # noqa: B006
    version: Annotated[str | None, typer.Option(help="Extractor version to search.")] = None,
    cursor: Annotated[str | None, typer.Option(help="The next page: the cursor a previous "
                                                    "run printed.")] = None,
    count: Annotated[bool, typer.Option("--count", help="Count every match (a scan).")
                     ] = False,
) -> None:
    """Run a retriever and print its hits with the execution id, how many matched and the
    cursor of the next page."""
    execution = open_workspace().retrievers.execute(name, parse_meta(inputs), version,
                                                    count=count, cursor=cursor)
    matched = ("" if execution.matched is None else
               f"; {'' if execution.matched_exact else 'at least '}{execution.matched:,} "
               "matched")
    emit(execution, "\n".join([
        f"execution {execution.id} on {execution.extractor_key} "
        f"({execution.stage_ms.get('total', 0):.1f} ms): {len(execution.hits)} hits{matched}",
        *(hit_line(h) for h in execution.hits),
        *(f"note: {limit}" for limit in execution.limits),
        *([f"more: --cursor {execution.next_cursor}"] if execution.next_cursor else [])]))
