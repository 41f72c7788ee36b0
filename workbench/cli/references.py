"""``workbench references``: reference sets of reviewed detections."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace

references_app = typer.Typer(help="Reference sets: list, create, promote reviewed detections, "
                                  "add, remove.", invoke_without_command=True)


@references_app.callback()
def references_list(ctx: typer.Context,
                    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None
                    ) -> None:
    """List reference sets with their version and classes."""
    if ctx.invoked_subcommand is not None:
        return
    wb = open_workspace()
    sets = wb.references.list(collection)
    rows = [{**asdict(r), "classes": wb.references.class_counts(r.name)} for r in sets]
    emit(rows, "\n".join(f"{r['name']:24} v{r['version']:<4} {r['feature_uri']}  "
                         f"{r['classes']}" for r in rows) or
         "no reference sets yet: `workbench references create NAME -c COLLECTION`")


@references_app.command("create")
def references_create(
    name: str,
    collection: Annotated[str, typer.Option("--collection", "-c")],
    feature_uri: Annotated[str | None, typer.Option(help="Default: the active version's "
                                                         "detection_embedding.")] = None,
    description: str = "",
) -> None:
    """Create an empty reference set over a collection's detection embeddings."""
    made = open_workspace().references.create(name, collection, feature_uri, description)
    emit(made, f"created reference set {made.name!r} over {made.feature_uri}")


@references_app.command("promote")
def references_promote(
    name: str,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="confirmed and/or "
                                                    "corrected (default both).")] = None,
    cls: Annotated[list[str] | None, typer.Option("--class", help="Only these true classes.")
                   ] = None,
    category: Annotated[str | None, typer.Option(help="Category to record.")] = None,
) -> None:
    """Promote reviewed detections (newest verdict confirmed/corrected) into the set."""
    from workbench.references import PROMOTABLE

    result = open_workspace().references.promote(name, tuple(label or PROMOTABLE), cls, category)
    emit(result, f"{result['added']} added, {result['already']} already in; "
                 f"{name} is at version {result['version']}")


@references_app.command("add")
def references_add(
    name: str,
    detection_ids: list[str],
    true_class: Annotated[str | None, typer.Option(help="Default: the predicted class.")] = None,
    category: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Add detections by hand."""
    result = open_workspace().references.add(name, detection_ids, true_class, category)
    emit(result, f"{result['added']} added; {name} is at version {result['version']}")


@references_app.command("remove")
def references_remove(name: str, detection_ids: list[str]) -> None:
    """Take detections out (earlier versions keep them)."""
    result = open_workspace().references.remove(name, detection_ids)
    emit(result, f"{result['removed']} removed; {name} is at version {result['version']}")
