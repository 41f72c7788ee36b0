"""``workbench fiftyone``: sync a collection into FiftyOne, and serve its App."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from workbench.cli.common import emit, open_workspace, state


def fiftyone_sync(
    collection: str,
    launch: Annotated[bool, typer.Option("--launch", help="Then serve the FiftyOne App on "
                                         "127.0.0.1 until Ctrl-C.")] = False,
    port: Annotated[int, typer.Option(help="Port of the App.")] = 5151,
    dataset: Annotated[str | None, typer.Option(help="FiftyOne dataset name (default: "
                                                "workbench-<collection>).")] = None,
    compute_visualization: Annotated[bool, typer.Option(
        "--compute-visualization", help="Also compute the embeddings visualization "
        "(fiftyone.brain) of every version.")] = False,
    method: Annotated[str, typer.Option(help="Visualization method: pca, umap or tsne."
                                        )] = "pca",
    cross_check: Annotated[bool, typer.Option(
        "--cross-check", help="Compare FiftyOne's evaluate_detections with ours.")] = False,
) -> None:
    """Sync a collection into its persistent FiftyOne dataset (only what changed)."""
    wb = open_workspace()
    if state.json:
        report = wb.fiftyone.sync(collection, dataset, compute_visualization, method)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(TextColumn("[bold]fiftyone"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[message]}")) as bar:
            task = bar.add_task("fiftyone", total=None, message="")
            report = wb.fiftyone.sync(
                collection, dataset, compute_visualization, method,
                progress=lambda done, total, message: bar.update(
                    task, completed=done, total=total or None, message=message))
    data: dict[str, Any] = {"sync": report}
    lines = [report.summary(), f"database: {report.database_dir}"]
    if report.visualizations:
        lines.append(f"visualizations: {', '.join(report.visualizations)}")
    if cross_check:
        check = wb.fiftyone.cross_check(collection, dataset=report.dataset)
        data["cross_check"] = {**asdict(check), "agrees": check.agrees}
        lines.append(check.summary())
    if launch:
        data["url"] = wb.fiftyone.open_app(collection, port, report.dataset)
        lines.append(f"FiftyOne App: {data['url']} (Ctrl-C stops it)")
    emit(data, "\n".join(lines))
    if launch:
        try:
            wb.fiftyone.wait()
        except KeyboardInterrupt:
            typer.echo("FiftyOne App stopped", err=True)
