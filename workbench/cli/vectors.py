"""``workbench vectors``: how far the nearest-neighbour index is behind the writes, and
building it now instead of waiting for an idle worker."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace, state

vectors_app = typer.Typer(help="The vector index: what is written but not yet indexed.",
                          invoke_without_command=True)


@vectors_app.callback()
def vectors_status(ctx: typer.Context) -> None:
    """Features whose vectors are written but not yet in the index (searches over them are
    exact meanwhile, and slower the more there are)."""
    if ctx.invoked_subcommand is not None:
        return
    behind = open_workspace().vectors.unindexed()
    emit(behind, "\n".join(f"{uri}: {rows:,} row(s) not yet indexed"
                           for uri, rows in behind.items()) or "every vector is indexed")


@vectors_app.command("index")
def vectors_index(
    feature_uri: Annotated[str | None, typer.Argument(help="One feature (default: all).")
                           ] = None,
) -> None:
    """Index what is written now (an idle worker does this by itself)."""
    wb = open_workspace()
    chosen = [feature_uri] if feature_uri else list(wb.vectors.unindexed())
    done: dict[str, int] = {}
    for uri in chosen:
        if state.json:
            done[uri] = wb.vectors.index(uri)
            continue
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task(uri.split("://", 1)[-1], total=None)
            done[uri] = wb.vectors.index(
                uri, progress=lambda n, total: bar.update(task, completed=n, total=total))
    emit(done, "\n".join(f"{uri}: {n:,} vector(s) indexed" for uri, n in done.items())
         or "every vector was already indexed")
