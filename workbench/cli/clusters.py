"""``workbench cluster``: cluster runs over detection embeddings, and what to do with them."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import (
    emit,
    job_progress,
    json_option,
    open_workspace,
    option,
    state,
)
from workbench.errors import WorkbenchError
from workbench.params import ClusterParams

cluster_app = typer.Typer(help="Cluster runs: list, run, label, rename, promote, relabel.",
                          invoke_without_command=True)


def _cluster_lines(run) -> list[str]:
    lines = [f"run {run.id}: {run.algorithm} over {run.n_members} detections — "
             f"{len(run.clusters)} clusters, {run.noise} noise, {run.seconds.get('total', 0)} s"]
    for key, info in sorted(run.clusters.items(), key=lambda kv: -kv[1]["size"]):
        lines.append(f"  {key:>4}  {info['size']:>6}  {info.get('name', '')}"
                     + (f" — {info['summary']}" if info.get("summary") else ""))
    return lines


@cluster_app.callback()
def cluster_list(ctx: typer.Context,
                 collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
                 limit: int = 50,
                 cursor: Annotated[str | None, typer.Option(
                     help="The next page: the cursor the previous page printed.")] = None,
                 ) -> None:
    """List cluster runs, newest first, with how many there are."""
    if ctx.invoked_subcommand is not None:
        return
    page = open_workspace().clusters.page(collection, cursor, limit)
    emit(page.items, "\n".join(f"{r.id}  {r.algorithm:16} {r.n_members:>6} members "
                               f"{len(r.clusters):>3} clusters  {r.created_at:%Y-%m-%d %H:%M}"
                               for r in page.items)
         or "no cluster runs yet: `workbench cluster run`")
    if footer := page.footer("cluster runs", only_if_more=state.json):
        typer.echo(footer, err=state.json)  # --json: on stderr, beside the rows


@cluster_app.command("run")
def cluster_run(
    collection: str,
    algorithm: Annotated[str, option(ClusterParams, "algorithm")] = ClusterParams.algorithm,
    params: Annotated[str | None, typer.Option(help='JSON, e.g. \'{"min_cluster_size": 10}\'.')
                      ] = None,
    filters: Annotated[str | None, typer.Option(help='Retriever filter JSON, e.g. \'{"field": '
                                                     '"taxonomy.shapes", "operator": "eq", '
                                                     '"value": "unknown"}\'.')] = None,
    reduce_with: Annotated[str | None, option(ClusterParams, "reduce", "--reduce")
                           ] = ClusterParams.reduce,
    components: Annotated[int, option(ClusterParams, "components")] = ClusterParams.components,
    projection: Annotated[str, option(ClusterParams, "projection")] = ClusterParams.projection,
    version: Annotated[str | None, typer.Option()] = None,
    label: Annotated[bool, typer.Option(help="Label the clusters when done.")] = True,
    queue: Annotated[bool, typer.Option(help="Hand it to the background worker.")] = False,
) -> None:
    """Cluster the embeddings of the detections that pass a filter."""
    wb = open_workspace()
    args = dict(algorithm=algorithm, params=json_option(params, "--params"),
                filters=json_option(filters, "--filters"),
                reduction={"method": reduce_with, "n_components": components}
                if reduce_with else None, projection=projection, version=version)
    if queue:
        job = wb.clusters.submit(collection, **args)
        emit({"job_id": job.id}, f"queued job {job.id}")
        return
    with job_progress(f"cluster {algorithm}") as update:
        run = wb.clusters.run(collection, **args, listener=update)
    if label:
        run = wb.clusters.label(run.id)
    emit(run, "\n".join(_cluster_lines(run)))


@cluster_app.command("label")
def cluster_label(
    run_id: str,
    llm: Annotated[bool | None, typer.Option("--llm/--no-llm", help="Ask the LLM set in "
                                             "WORKBENCH_LLM_URL (default: when it is set).")
                   ] = None,
    rename: Annotated[list[str] | None, typer.Option(help="CLUSTER=NAME, to name by hand.")
                      ] = None,
) -> None:
    """Label a run's clusters (built-in statistics, plus an LLM when configured)."""
    wb = open_workspace()
    run = wb.clusters.label(run_id, use_llm=llm)
    for pair in rename or []:
        key, sep, name = pair.partition("=")
        if not sep or not key.strip().lstrip("-").isdigit():
            raise WorkbenchError(f"--rename {pair!r} should look like 3=stars")
        run = wb.clusters.rename(run_id, int(key), name)
    emit(run, "\n".join(_cluster_lines(run)))


@cluster_app.command("promote")
def cluster_promote(
    run_id: str,
    cluster: int,
    taxonomy: Annotated[str, typer.Option("--taxonomy", "-t")],
    node: Annotated[str | None, typer.Option(help="Node name (default: the cluster's).")] = None,
    parent: Annotated[str | None, typer.Option(help="Parent node (tree taxonomies).")] = None,
) -> None:
    """Make a cluster a taxonomy node; its members become its references."""
    result = open_workspace().clusters.promote(run_id, cluster, taxonomy, node, parent)
    emit(result, f"node {result['node']!r}: {result['references_added']} references added; "
                 f"taxonomy at version {result['taxonomy_version']}")


@cluster_app.command("relabel")
def cluster_relabel(
    run_id: str,
    cluster: int,
    true_class: Annotated[str, typer.Option("--class", help="The class to give the members.")],
    yes: Annotated[bool, typer.Option("--yes", help="Write the annotations (else: a dry "
                                                     "run that counts them).")] = False,
) -> None:
    """Annotate every member of a cluster as a class (they join the next training export)."""
    result = open_workspace().clusters.relabel(run_id, cluster, true_class, confirm=yes)
    emit(result, f"{result['written']} annotations written" if yes else
         f"would annotate {result['would_annotate']} detections as {true_class!r}; "
         "add --yes to write them")
