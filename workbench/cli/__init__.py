"""The ``workbench`` command line: the app, its global options, and its command groups."""

# Human-readable output by default, ``--json`` for scripts; a non-zero exit code with a
# one-line reason on error (common.run); long work shows a progress bar. Each command group
# lives in its own module; this one only puts them together, in the order ``--help`` shows.

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from workbench.cli import (
    buckets,
    clusters,
    demo,
    detect,
    doctor,
    evaluation,
    export,
    fiftyone,
    ingest,
    jobs,
    keys,
    models,
    references,
    retrievers,
    review,
    rules,
    serve,
    stats,
    taxonomies,
    train,
    truth,
    ui,
    vectors,
    webhooks,
    workspace,
)
from workbench.cli.common import run, state

app = typer.Typer(
    help="Flywheel Workbench: detect, review, fine-tune, redeploy, compound.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _global(
    home: Annotated[
        Path | None, typer.Option(help="Workspace folder (default: $WORKBENCH_HOME or data/workspace).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    if home is not None:
        os.environ["WORKBENCH_HOME"] = str(home.resolve())
    state.json = as_json
    state.out = sys.stdout
    if as_json:
        # Libraries (ultralytics scanning a dataset, say) print to stdout; keep it pure JSON.
        sys.stdout = sys.stderr


app.command()(workspace.init)
app.command()(ingest.ingest)
app.command()(jobs.worker)
app.command()(demo.demo)
app.command()(detect.detect)
app.command("review-queue")(review.review_queue)
app.command()(review.annotate)
app.command()(review.labels)
app.command()(stats.stats)
app.command()(export.export)
app.command()(train.train)
app.command()(evaluation.evaluate)
app.command()(evaluation.promote)
app.command(name="app")(ui.run_app)
app.command()(webhooks.events)
app.command(name="fiftyone")(fiftyone.fiftyone_sync)
app.command()(serve.serve)
app.command()(doctor.doctor)

app.add_typer(buckets.buckets_app, name="buckets")
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(models.extractors_app, name="extractors")
app.add_typer(models.models_app, name="models")
app.add_typer(detect.collections_app, name="collections")
app.add_typer(retrievers.retrievers_app, name="retrievers")
app.add_typer(references.references_app, name="references")
app.add_typer(taxonomies.taxonomy_app, name="taxonomy")
app.add_typer(clusters.cluster_app, name="cluster")
app.add_typer(webhooks.webhooks_app, name="webhooks")
app.add_typer(truth.truth_app, name="truth")
app.add_typer(rules.rules_app, name="rules")
app.add_typer(vectors.vectors_app, name="vectors")
app.add_typer(keys.keys_app, name="keys")

__all__ = ["app", "main", "state"]


def main() -> None:
    run(app)
