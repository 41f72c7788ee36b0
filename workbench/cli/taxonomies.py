"""``workbench taxonomy``: taxonomies over reference sets, attached to collections."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.common import (
    emit,
    job_progress,
    open_workspace,
    option,
    read_json_file,
    state,
)
from workbench.params import TaxonomyParams

taxonomy_app = typer.Typer(help="Taxonomies: list, create, attach, apply, assignments.",
                           invoke_without_command=True)


@taxonomy_app.callback()
def taxonomy_list(ctx: typer.Context) -> None:
    """List taxonomies with their version, nodes and label counts."""
    if ctx.invoked_subcommand is not None:
        return
    wb = open_workspace()
    rows = [{**asdict(tax), "labels": wb.taxonomies.label_counts(tax.name)}
            for tax in wb.taxonomies.list()]
    emit(rows, "\n".join(
        f"{r['name']:20} {r['kind']:5} v{r['version']:<3} threshold {r['threshold']:.2f} "
        f"top_k {r['top_k']}  {r['labels']}" for r in rows)
        or "no taxonomies yet: `workbench taxonomy create NAME --references SET`")


@taxonomy_app.command("create")
def taxonomy_create(
    name: str,
    references: Annotated[str, typer.Option("--references", "-r", help="Reference set.")],
    kind: Annotated[str, option(TaxonomyParams, "kind")] = TaxonomyParams.kind,
    nodes: Annotated[Path | None, typer.Option(help="JSON list of nodes ({name, parent, "
                                                    "threshold, classes}); flat default: the "
                                                    "set's classes.")] = None,
    threshold: Annotated[float, option(TaxonomyParams, "threshold")
                         ] = TaxonomyParams.threshold,
    top_k: Annotated[int, option(TaxonomyParams, "top_k")] = TaxonomyParams.top_k,
    attach: Annotated[str | None, typer.Option(help="Collection to attach it to.")] = None,
    mode: Annotated[str, option(TaxonomyParams, "mode")] = TaxonomyParams.mode,
) -> None:
    """Create a taxonomy over a reference set (and attach it to a collection)."""
    parsed = None if nodes is None else read_json_file(nodes, "nodes")
    wb = open_workspace()
    made = wb.taxonomies.create(name, references, kind, parsed, threshold, top_k,
                                attach=attach, mode=mode)
    emit(made, f"created taxonomy {made.name!r} ({made.kind}, {len(made.nodes)} nodes)"
               + (f", attached to {attach} ({mode})" if attach else ""))


@taxonomy_app.command("attach")
def taxonomy_attach(
    name: str,
    collection: Annotated[str, typer.Option("--collection", "-c")],
    mode: Annotated[str, typer.Option(help="materialize (after each batch run), retroactive "
                                           "or on_demand.")] = "materialize",
) -> None:
    """Attach a taxonomy to a collection (again: change its mode)."""
    open_workspace().taxonomies.attach(name, collection, mode)
    emit({"taxonomy": name, "collection": collection, "mode": mode},
         f"taxonomy {name!r} attached to {collection!r} ({mode})")


@taxonomy_app.command("apply")
def taxonomy_apply(
    name: str,
    version: Annotated[str | None, typer.Option(help="Whose detections (default: the "
                                                      "collection's active version).")] = None,
    queue: Annotated[bool, typer.Option(help="Hand it to the background worker.")] = False,
) -> None:
    """Re-apply a taxonomy to every existing detection of a version and report what changed
    (references made on another version are embedded in this one's space)."""
    wb = open_workspace()
    if queue:
        job = wb.taxonomies.submit_apply(name, version)
        emit({"job_id": job.id}, f"queued job {job.id}")
        return
    with job_progress(f"taxonomy {name}") as update:
        job = wb.taxonomies.run_apply(name, listener=update, version=version)
    report = job.result
    lines = [f"{report['classified']} classified in {report['seconds']} s "
             f"(version {report['taxonomy_version']}): {report['changed']} changed, "
             f"{report['new']} new, {report['unchanged']} unchanged", f"labels {report['labels']}"]
    lines += [f"  {s['detection_id']}: {s['before']} → {s['after']}" for s in report["sample"]]
    emit(report, "\n".join(lines))


@taxonomy_app.command("assignments")
def taxonomy_assignments(
    name: str,
    label: Annotated[str | None, typer.Option(help="Only this label.")] = None,
    limit: int = 50,
    cursor: Annotated[str | None, typer.Option(help="The next page: the cursor the previous "
                                                    "page printed.")] = None,
) -> None:
    """A taxonomy's stored assignments, by detection id, with how many there are."""
    page = open_workspace().taxonomies.assignments_page(name, label, cursor, limit)
    emit(page.items, "\n".join(
        f"{r['detection_id']:28} {r['label']:20} score {r['score']:.3f}  v{r['taxonomy_version']}"
        for r in page.items) or f"no stored assignments: `workbench taxonomy apply {name}`")
    if footer := page.footer("assignments", only_if_more=state.json):
        typer.echo(footer, err=state.json)  # --json: on stderr, beside the rows
