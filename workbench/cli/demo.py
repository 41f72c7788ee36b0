"""``workbench demo``: load the demo workspace."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace, state


def demo(
    scale: Annotated[float, typer.Option(help="Multiply the number of demo scenes.")] = 1.0,
) -> None:
    """Load the demo workspace: scenes ingested, starter model registered, detection run."""
    wb = open_workspace()
    if state.json:
        result = wb.demo.setup(scale)
    else:
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task("demo", total=None)
            result = wb.demo.setup(
                scale, lambda d, n, m: bar.update(task, completed=d, total=n, description=m))
    emit(result, f"demo workspace ready: {result['accepted']} images ingested, "
                 f"{result['model']} found {result['detections']} objects in collection "
                 f"{result['collection']!r}; open it with `workbench app`")
