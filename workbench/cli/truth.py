"""``workbench truth``: the ground truth's image states, carry-over and gold set."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace
from workbench.errors import WorkbenchError

truth_app = typer.Typer(help="Ground truth: image states, carry-over, the gold set.",
                        invoke_without_command=True)


@truth_app.callback()
def truth_counts(ctx: typer.Context,
                 collection: Annotated[str | None, typer.Argument()] = None) -> None:
    """Images per state (unreviewed images have no row), and the gold set's size."""
    if ctx.invoked_subcommand is not None:
        return
    if collection is None:
        raise WorkbenchError("give a collection: `workbench truth COLLECTION`")
    wb = open_workspace()
    counts = wb.truth.counts(collection)
    emit(counts, f"{counts['complete']} complete image(s) ({counts['gold']} in the gold set, "
                 f"target {wb.settings.gold_target}), {counts['partial']} partly reviewed")


@truth_app.command("refresh")
def truth_refresh(collection: str) -> None:
    """Rebuild the ground truth from the annotations and carry it over to every version's
    boxes again (a batch run does this by itself)."""
    images = open_workspace().truth.refresh(collection)
    emit({"images": images}, f"{images} image(s) refreshed")


@truth_app.command("gold")
def truth_gold(
    collection: str,
    object_ids: list[str],
    remove: Annotated[bool, typer.Option("--remove", help="Take them out of the gold set."
                                         )] = False,
) -> None:
    """Put complete images into the gold set by hand (or take them out)."""
    changed = open_workspace().truth.set_gold(collection, object_ids, not remove)
    emit({"changed": changed}, f"{changed} image(s) {'taken out of' if remove else 'put in'} "
                               "the gold set")
