"""The ``workbench`` command line.

Human-readable output by default, ``--json`` for scripts; a non-zero exit code with a
one-line reason on error. Long work shows a progress bar.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.errors import WorkbenchError

app = typer.Typer(
    help="Flywheel Workbench: detect, review, fine-tune, redeploy, compound.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
buckets_app = typer.Typer(help="List and create buckets.", invoke_without_command=True)
jobs_app = typer.Typer(help="List, show and cancel background jobs.", invoke_without_command=True)
extractors_app = typer.Typer(help="List extractors; register a custom one.",
                             invoke_without_command=True)
models_app = typer.Typer(help="The model registry: list versions, add weights.",
                         invoke_without_command=True)
collections_app = typer.Typer(help="List and create collections.", invoke_without_command=True)
retrievers_app = typer.Typer(help="List, save and run retrievers.", invoke_without_command=True)
app.add_typer(buckets_app, name="buckets")
app.add_typer(jobs_app, name="jobs")
app.add_typer(extractors_app, name="extractors")
app.add_typer(models_app, name="models")
app.add_typer(collections_app, name="collections")
app.add_typer(retrievers_app, name="retrievers")
references_app = typer.Typer(help="Reference sets: list, create, promote reviewed detections, "
                                  "add, remove.", invoke_without_command=True)
taxonomy_app = typer.Typer(help="Taxonomies: list, create, attach, apply.",
                           invoke_without_command=True)
app.add_typer(references_app, name="references")
app.add_typer(taxonomy_app, name="taxonomy")
cluster_app = typer.Typer(help="Cluster runs: list, run, label, rename, promote, relabel.",
                          invoke_without_command=True)
app.add_typer(cluster_app, name="cluster")
webhooks_app = typer.Typer(help="Webhooks: list, create, enable, disable, delete, ping, "
                                "deliveries, redeliver.",
                           invoke_without_command=True)
app.add_typer(webhooks_app, name="webhooks")


class _State:
    json: bool = False
    out = None  # where JSON goes; with --json, everything else printed goes to stderr


state = _State()


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


def _open():
    from workbench import Workbench

    return Workbench.open()


def _jsonable(value: Any) -> Any:
    if is_dataclass(value):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def _emit(data: Any, human: str) -> None:
    if state.json:
        typer.echo(json.dumps(_jsonable(data), indent=2), file=state.out)
    else:
        typer.echo(human)


@contextmanager
def _job_progress(description: str):
    """A rich progress bar fed by job updates (silent with --json)."""
    if state.json:
        yield lambda job: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[message]}"), TimeElapsedColumn(), transient=False,
    ) as bar:
        task = bar.add_task(description, total=None, message="")

        def update(job) -> None:
            bar.update(task, completed=job.progress_done, total=job.progress_total or None,
                       message=job.message)

        yield update


def _parse_meta(pairs: list[str]) -> dict[str, str]:
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise WorkbenchError(f"--meta {pair!r} should look like key=value")
        meta[key.strip()] = value
    return meta


@app.command()
def init() -> None:
    """Create (or open and migrate) the workspace and show what it holds."""
    wb = _open()
    summary = wb.summary()
    _emit(
        {"home": str(wb.home.resolve()), "schema_version": wb.db.schema_version(), **summary},
        f"workspace {wb.home.resolve()} (schema {wb.db.schema_version()}): "
        f"{summary['buckets']} buckets, {summary['images']} images, "
        f"{summary['jobs_active']} active jobs",
    )


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders, zip archives or URLs.")],
    bucket: Annotated[str, typer.Option("--bucket", "-b", help="Target bucket (created if missing).")],
    meta: Annotated[list[str], typer.Option("--meta", "-m", help="Metadata key=value for every image.")] = [],  # noqa: B006
    include: Annotated[list[str], typer.Option(help="Filename pattern for folders/zips (repeatable).")] = [],  # noqa: B006
    queue: Annotated[bool, typer.Option("--queue", help="Hand the ingest to the background worker.")] = False,
    follow_symlinks: Annotated[bool, typer.Option("--follow-symlinks", help="Follow links in folders that lead out of them (skipped with a report line by default).")] = False,
) -> None:
    """Ingest images into a bucket and print the report."""
    from workbench.buckets import schema_from_fields

    wb = _open()
    metadata = _parse_meta(meta)
    if not wb.buckets.exists(bucket):
        wb.buckets.create(bucket, schema_from_fields([f"{key}:text" for key in metadata]))
        if not state.json:
            typer.echo(f"created bucket {bucket!r}" + (
                f" with text fields {', '.join(metadata)}" if metadata else ""))
    if queue:
        job = wb.ingest.submit(bucket, paths, metadata, tuple(include) or None,
                               follow_symlinks)
        _emit(job, f"queued ingest job {job.id}; follow it with `workbench jobs`")
        return
    with _job_progress("ingest") as update:
        report = wb.ingest.run(bucket, paths, metadata, tuple(include) or None, listener=update,
                               follow_symlinks=follow_symlinks)
    if state.json:
        _emit(report, "")
    else:
        for item in report.items:
            if item.status != "accepted":
                typer.echo(f"  {item.status:9} {item.source}: {item.reason}")
        typer.echo(f"{report.summary()} into bucket {bucket!r} (job {report.job_id})")
    if report.accepted == 0 and report.rejected:
        raise typer.Exit(1)


@buckets_app.callback()
def buckets_list(ctx: typer.Context) -> None:
    """List buckets with their image counts and schema."""
    if ctx.invoked_subcommand is not None:
        return
    wb = _open()
    rows = []
    for b in wb.buckets.list():
        fields = ", ".join(f"{f.name}:{f.type}{'*' if f.required else ''}" for f in b.fields)
        rows.append({"id": b.id, "name": b.name, "images": wb.buckets.count_objects(b),
                     "schema": b.to_schema(), "fields": fields})
    human = "\n".join(f"{r['name']:24} {r['images']:>7} images   {r['fields']}" for r in rows)
    _emit(rows, human or "no buckets yet; create one with `workbench buckets create NAME`")


@buckets_app.command("create")
def buckets_create(
    name: str,
    field: Annotated[list[str], typer.Option("--field", "-f", help="name:type[:required]; types: text, integer, number, boolean, datetime.")] = [],  # noqa: B006
    description: str = "",
) -> None:
    """Create a bucket with a metadata schema."""
    from workbench.buckets import schema_from_fields

    bucket = _open().buckets.create(name, schema_from_fields(field), description)
    _emit({"id": bucket.id, "name": bucket.name, "schema": bucket.to_schema()},
          f"created bucket {bucket.name!r} ({bucket.id})")


def _job_line(job) -> str:
    progress = f"{job.progress_done}/{job.progress_total}" if job.progress_total else "-"
    return f"{job.id}  {job.kind:8} {job.status:9} {progress:>11}  {job.message}"


@jobs_app.callback()
def jobs_list(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Include finished jobs.")] = False,
) -> None:
    """List active jobs (or all of them)."""
    if ctx.invoked_subcommand is not None:
        return
    wb = _open()
    jobs = wb.jobs.list() if show_all else wb.jobs.active()
    human = "\n".join(_job_line(j) for j in jobs) or (
        "no jobs" if show_all else "no active jobs (see finished ones with --all)")
    _emit(jobs, human)


@jobs_app.command("show")
def jobs_show(job_id: str) -> None:
    """Show one job, with its error if it failed."""
    job = _open().jobs.get(job_id)
    _emit(job, _job_line(job) + (f"\n{job.error}" if job.error else ""))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    job = _open().jobs.cancel(job_id)
    _emit(job, _job_line(job))


@app.command()
def worker(
    exit_when_idle: Annotated[bool, typer.Option(help="Stop when no job is left.")] = False,
    idle_exit: Annotated[float | None, typer.Option(help="Stop after this many idle seconds.")] = None,
) -> None:
    """Run background jobs for this workspace (one worker per workspace)."""
    import logging

    from workbench.jobs import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    wb = _open()
    runner = Worker(wb)
    if not runner.acquire_lock():
        typer.echo("a worker is already running for this workspace", err=True)
        raise typer.Exit(0)
    typer.echo(f"worker {runner.worker_id} on {wb.home.resolve()}", err=True)
    ran = runner.run(exit_when_idle=exit_when_idle, idle_exit_s=idle_exit)
    typer.echo(f"worker stopped after {ran} job(s)", err=True)


@app.command()
def demo(
    scale: Annotated[float, typer.Option(help="Multiply the number of demo scenes.")] = 1.0,
) -> None:
    """Load the demo workspace: scenes ingested, starter model registered, detection run."""
    from workbench.demo import setup_demo

    wb = _open()
    if state.json:
        result = setup_demo(wb, scale)
    else:
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task("demo", total=None)
            result = setup_demo(
                wb, scale, lambda d, n, m: bar.update(task, completed=d, total=n, description=m)
            )
    _emit(result, f"demo workspace ready: {result['accepted']} images ingested, "
                  f"{result['model']} found {result['detections']} objects in collection "
                  f"{result['collection']!r}; open it with `workbench app`")


def _version_line(v) -> str:
    metrics = ", ".join(f"{k} {val}" for k, val in v.metrics.items() if "mAP" in k)
    return (f"{v.key:26} {v.kind:6} {len(v.classes):>3} classes  parent "
            f"{v.parent_version or '-':8} {metrics}")


@extractors_app.callback()
def extractors_list(ctx: typer.Context) -> None:
    """List registered extractor versions with their feature URIs."""
    if ctx.invoked_subcommand is not None:
        return
    versions = _open().registry.list()
    rows = [{"extractor": v.key, "kind": v.kind,
             "features": [v.feature_uri(f.feature_name) for f in v.spec.features]}
            for v in versions]
    human = "\n".join(f"{r['extractor']:26} {r['kind']:6} " + "  ".join(r["features"])
                      for r in rows)
    _emit(rows, human or "no extractors yet: `workbench models add FILE.pt` or `workbench demo`")


@extractors_app.command("add")
def extractors_add(
    path: Annotated[Path, typer.Argument(help="Folder or zip with extractor.json and code.")],
) -> None:
    """Register a custom extractor (its code runs with your permissions)."""
    version = _open().registry.register_custom(path)
    _emit({"extractor": version.key, "spec": version.spec.to_dict()},
          f"registered {version.key}")


@models_app.callback()
def models_list(ctx: typer.Context) -> None:
    """List model versions with lineage and metrics."""
    if ctx.invoked_subcommand is not None:
        return
    versions = _open().registry.list()
    _emit(versions, "\n".join(_version_line(v) for v in versions) or "no models yet")


@models_app.command("add")
def models_add(
    weights: Annotated[str, typer.Argument(help="A YOLO .pt file (or a hub name with a network).")],
    version: Annotated[str | None, typer.Option(help="Semantic version (default: next major).")] = None,
    notes: str = "",
) -> None:
    """Check a YOLO weights file and register it as the next yolo_detector version."""
    registered = _open().registry.register_yolo(weights, version=version, notes=notes)
    _emit(registered, f"registered {registered.key} with classes {', '.join(registered.classes)}")


@collections_app.callback()
def collections_list(ctx: typer.Context) -> None:
    """List collections with their buckets, versions and document counts."""
    if ctx.invoked_subcommand is not None:
        return
    wb = _open()
    rows = []
    for c in wb.collections.list():
        rows.append({"name": c.name, "active": c.active_key,
                     "images": wb.collections.count_objects(c),
                     "versions_run": wb.collections.versions_run(c)})
    human = "\n".join(f"{r['name']:24} active {r['active']:24} {r['images']:>6} images  "
                      f"run: {', '.join(r['versions_run']) or 'none yet'}" for r in rows)
    _emit(rows, human or "no collections yet")


@collections_app.command("create")
def collections_create(
    name: str,
    bucket: Annotated[list[str], typer.Option("--bucket", "-b", help="Source bucket (repeatable).")],
    extractor: str = "yolo_detector",
    version: Annotated[str | None, typer.Option(help="Extractor version (default: newest).")] = None,
) -> None:
    """Bind an extractor version to source buckets."""
    created = _open().collections.create(name, bucket, extractor, version)
    _emit(created, f"created collection {created.name!r} with {created.active_key}")


@app.command()
def detect(
    collection: str,
    version: Annotated[str | None, typer.Option(help="Extractor version (default: active).")] = None,
    conf: Annotated[float | None, typer.Option(help="Minimum confidence.")] = None,
    imgsz: Annotated[int | None, typer.Option(help="Inference size.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch.")] = None,
    queue: Annotated[bool, typer.Option("--queue", help="Hand the run to the worker.")] = False,
) -> None:
    """Run (or resume) a batch run: every image not yet processed by that version."""
    from dataclasses import replace

    from workbench.detection import default_params

    wb = _open()
    target = wb.collections.get(collection)
    chosen = wb.registry.get(target.extractor_name, version or target.active_version)
    overrides = {k: v for k, v in {"conf": conf, "imgsz": imgsz, "batch_size": batch_size}.items()
                 if v is not None}
    params = replace(default_params(chosen), **overrides)
    if queue:
        job = wb.detection.submit(collection, chosen.version, params)
        _emit(job, f"queued detect job {job.id}")
        return
    with _job_progress(f"detect {chosen.key}") as update:
        job = wb.detection.run(collection, chosen.version, params, listener=update)
    _emit(job.result, f"{job.result['documents']} images processed by {chosen.key} "
                      f"({job.result['detections_now']} new detections, "
                      f"{job.result['seconds']} s)")


def _hit_line(hit) -> str:
    score = f"  score {hit.score:.3f}" if hit.score is not None else ""
    return f"{hit.detection_id:28} {hit.class_name:12} conf {hit.confidence:.3f}{score}"


@retrievers_app.callback()
def retrievers_list(ctx: typer.Context, collection: Annotated[str | None, typer.Option()] = None
                    ) -> None:
    """List retrievers with their stages."""
    if ctx.invoked_subcommand is not None:
        return
    items = _open().retrievers.list(collection)
    human = "\n".join(f"{r.name:30} {' → '.join(s['stage_type'] for s in r.stages)}"
                      for r in items)
    _emit(items, human or "no retrievers yet (each collection's review queue is created when "
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
    try:
        parsed = json.loads(stages.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"cannot read stages from {stages}: {exc}") from None
    saved = _open().retrievers.save(name, collection, parsed, description, replace)
    _emit(saved, f"saved retriever {saved.name!r} ({len(saved.stages)} stages)")


@retrievers_app.command("run")
def retrievers_run(
    name: str,
    inputs: Annotated[list[str], typer.Option("--input", "-i", help="key=value for {{INPUT.key}}.")] = [],  # noqa: B006
    version: Annotated[str | None, typer.Option(help="Extractor version to search.")] = None,
) -> None:
    """Run a retriever and print its hits with the execution id."""
    execution = _open().retrievers.execute(name, _parse_meta(inputs), version)
    _emit(execution, "\n".join([f"execution {execution.id} on {execution.extractor_key} "
                                f"({execution.stage_ms.get('total', 0):.1f} ms)",
                                *(_hit_line(h) for h in execution.hits)]))


@app.command("review-queue")
def review_queue(
    collection: str,
    limit: Annotated[int, typer.Option(help="Items in the page.")] = 20,
    version: Annotated[str | None, typer.Option()] = None,
    spot_check: Annotated[bool, typer.Option(
        "--spot-check", help="Random confident detections instead (errors the model is sure "
                             "of).")] = False,
    images: Annotated[bool, typer.Option(
        "--images", help="Images the model found nothing on: annotate each with `missed` "
                         "boxes or `no_objects`.")] = False,
    seed: Annotated[int, typer.Option(help="Order of --spot-check and --images.")] = 0,
    whole: Annotated[bool, typer.Option(
        "--image-review", help="Whole images to finish, ranked by what the model stands to "
                               "learn: judge every box, draw what it missed, mark each image "
                               "done (image_done).")] = False,
    disagreements: Annotated[bool, typer.Option(
        "--disagreements", help="Complete images on which the version disagrees with the "
                                "ground truth.")] = False,
) -> None:
    """The next page of a review queue: uncertain detections (default), a spot-check, images
    with no detections, whole images to finish, or disagreements with the ground truth."""
    wb = _open()
    if sum((spot_check, images, whole, disagreements)) > 1:
        raise WorkbenchError("choose one of --spot-check, --images, --image-review and "
                             "--disagreements")
    if whole:
        queue = wb.image_review.queue(collection, version, limit)
        _emit(queue, "\n".join(
            [f"{queue.remaining} image(s) of {queue.extractor_key} not complete; execution "
             f"{queue.execution_id}", *(f"{r.document_id}  {r.object_id}  score {r.score:.3f} "
                                        f"(uncertainty {r.uncertainty:.2f}, disagreement "
                                        f"{r.disagreement:.2f}, novelty {r.novelty:.2f}) "
                                        f"{r.detections} boxes, {r.state}"
                                        for r in queue.images)]))
        return
    if disagreements:
        rows = wb.image_review.disagreements(collection, version, limit)
        _emit(rows, "\n".join([f"{len(rows)} complete image(s) where the version disagrees "
                               "with the ground truth", *(
                                   f"{r['document_id']}  {r['object_id']}  {r['false_positives']} "
                                   f"false positive(s), {r['wrong_class']} wrong class(es), "
                                   f"{r['missed']} missed" for r in rows)]))
        return
    if images:
        found = wb.retrievers.images_to_check(collection, version, limit, seed)
        _emit({"images": found}, "\n".join(
            [f"{len(found)} image(s) with no detections to look over", *(
                f"{h.document_id}  {h.object_id}" for h in found)]))
        return
    queue = (wb.retrievers.spot_check(collection, limit) if spot_check
             else wb.retrievers.review_queue(collection, limit))
    inputs = {"limit": limit, "seed": seed} if spot_check else {"limit": limit}
    execution = wb.retrievers.execute(queue.name, inputs, version, count=True)
    hits = execution.hits
    _emit({"retriever_id": execution.retriever_id, "execution_id": execution.id,
           "remaining": execution.matched, "hits": hits},
          "\n".join([f"{execution.matched} left to review; retriever {execution.retriever_id}, "
                     f"execution {execution.id}", *(_hit_line(h) for h in hits)]))


@app.command()
def annotate(
    document_id: Annotated[str | None, typer.Argument(help="Detection or image document id.")] = None,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    label: Annotated[str | None, typer.Option("--label", "-l", help="confirmed, corrected, false_positive, missed, …")] = None,
    true_class: Annotated[str | None, typer.Option(help="The right class (corrected, missed).")] = None,
    bbox: Annotated[str | None, typer.Option(help="Centre box x,y,w,h in pixels.")] = None,
    reasoning: str = "",
    confidence: Annotated[float | None, typer.Option()] = None,
    retriever: Annotated[str | None, typer.Option(help="Retriever id (provenance).")] = None,
    execution: Annotated[str | None, typer.Option(help="Execution id (provenance).")] = None,
    bulk: Annotated[Path | None, typer.Option(help="JSONL file of operations (max 1,000).")] = None,
) -> None:
    """Record one verdict, or many from a JSONL file (each line succeeds or fails alone)."""
    wb = _open()
    if bulk is not None:
        results = _bulk_annotate(wb, bulk)
        failed = [r for r in results if not r.ok]
        _emit(results, "\n".join([*(f"line {r.index + 1}: {r.error}" for r in failed),
                                  f"{len(results) - len(failed)} saved, {len(failed)} failed"]))
        if failed and len(failed) == len(results):
            raise typer.Exit(1)
        return
    if not (document_id and collection and label):
        raise WorkbenchError("give DOCUMENT_ID, --collection and --label (or --bulk FILE.jsonl)")
    payload: dict[str, Any] = {}
    if true_class:
        payload["true_class"] = true_class
    if bbox:
        try:
            x, y, w, h = (float(v) for v in bbox.split(","))
        except ValueError:
            raise WorkbenchError(f"--bbox {bbox!r} should be x,y,w,h (centre, pixels)") from None
        payload["bbox"] = {"x": x, "y": y, "w": w, "h": h}
    saved = wb.annotations.create(
        document_id=document_id, collection_id=wb.collections.get(collection).id, label=label,
        confidence=confidence, reasoning=reasoning, payload=payload, retriever_id=retriever,
        execution_id=execution)
    _emit(saved, f"saved {saved.id}: {saved.label} on {saved.document_id}")


def _bulk_annotate(wb, path: Path) -> list:
    """Each non-blank line of a JSONL file is one operation that succeeds or fails alone (a
    line that is not JSON included); results are numbered by line."""
    from dataclasses import replace

    from workbench.annotations import BulkResult

    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot read {path}: {exc}") from None
    parsed, broken = [], []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            parsed.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            broken.append(BulkResult(number, False, error=f"not JSON ({exc})"))
    if not parsed and not broken:
        raise WorkbenchError(f"{path} holds no operations (one JSON object per line)")
    done = wb.annotations.bulk([op for _, op in parsed]) if parsed else []
    results = broken + [replace(r, index=parsed[r.index][0]) for r in done]
    return sorted(results, key=lambda r: r.index)


truth_app = typer.Typer(help="Ground truth: image states, carry-over, the gold set.",
                        invoke_without_command=True)
app.add_typer(truth_app, name="truth")


@truth_app.callback()
def truth_counts(ctx: typer.Context,
                 collection: Annotated[str | None, typer.Argument()] = None) -> None:
    """Images per state (unreviewed images have no row), and the gold set's size."""
    if ctx.invoked_subcommand is not None:
        return
    if collection is None:
        raise WorkbenchError("give a collection: `workbench truth COLLECTION`")
    wb = _open()
    counts = wb.truth.counts(collection)
    _emit(counts, f"{counts['complete']} complete image(s) ({counts['gold']} in the gold set, "
                  f"target {wb.settings.gold_target}), {counts['partial']} partly reviewed")


@truth_app.command("refresh")
def truth_refresh(collection: str) -> None:
    """Rebuild the ground truth from the annotations and carry it over to every version's
    boxes again (a batch run does this by itself)."""
    images = _open().truth.refresh(collection)
    _emit({"images": images}, f"{images} image(s) refreshed")


@truth_app.command("gold")
def truth_gold(
    collection: str,
    object_ids: list[str],
    remove: Annotated[bool, typer.Option("--remove", help="Take them out of the gold set."
                                         )] = False,
) -> None:
    """Put complete images into the gold set by hand (or take them out)."""
    changed = _open().truth.set_gold(collection, object_ids, not remove)
    _emit({"changed": changed}, f"{changed} image(s) {'taken out of' if remove else 'put in'} "
                                "the gold set")


@app.command()
def stats(
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    version: Annotated[str | None, typer.Option(help="e.g. yolo_detector@1.0.0")] = None,
    window: Annotated[str, typer.Option(help="1d or 1w")] = "1d",
) -> None:
    """Verdict counts and rates, the health table and estimated precision/recall."""
    from workbench import stats as quality

    wb = _open()
    collection_id = wb.collections.get(collection).id if collection else None
    report = quality.compute_all(wb.db, collection_id, version, window)
    labels = report["labels"].to_dicts()
    pr = report["precision_recall"]
    carried = report["carried"]
    lines = [f"{report['total']} annotations by people" + (
        f" (and {sum(carried.values())} carried over from the ground truth to other versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(carried.items())) + ")" if carried else "")]
    lines += [f"  {r['label']:16} {r['count']:6}  {r['rate']:6.1%}" for r in labels]
    lines.append("health:")
    for row in report["health"]:
        value = "n/a" if row["value"] is None else f"{row['value']:.1%}"
        lines.append(f"  {row['metric']:22} {value:>7}  {row['status']:14} {row['action']}")
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines.append(f"precision ≈ {fmt(pr['precision'])}, recall ≈ {fmt(pr['recall'])} "
                 f"(TP {pr['tp']}, FP {pr['fp']}, FN {pr['fn']}; {pr['assumptions']})")
    data = {"total": report["total"], "carried": carried, "labels": labels,
            "health": report["health"],
            "precision_recall": pr, "confusion": report["confusion"].to_dicts()}
    _emit(data, "\n".join(lines))


def _export_options(unreviewed: str, fill_threshold: float, val: float, holdout: float,
                    seed: str, pseudo_label: bool = False):
    from workbench.export import ExportOptions

    return ExportOptions(unreviewed=unreviewed, fill_threshold=fill_threshold,
                         val_fraction=val, holdout_fraction=holdout, seed=seed,
                         pseudo_label=pseudo_label)


@app.command()
def export(
    collection: str,
    out: Annotated[Path, typer.Option(help="Folder to write: a new or empty one, or an earlier "
                                           "export (replaced once the new one is complete).")],
    version: Annotated[str | None, typer.Option(help="Reviewed version (default: active).")] = None,
    unreviewed: Annotated[str, typer.Option(help="skip: leave out images with unreviewed boxes; fill: complete them.")] = "skip",
    fill_threshold: Annotated[float, typer.Option(help="With fill: unreviewed boxes at or above this.")] = 0.5,
    val: Annotated[float, typer.Option(help="Validation fraction (by image).")] = 0.2,
    holdout: Annotated[float, typer.Option(help="Fixed holdout fraction, never trained on.")] = 0.0,
    seed: Annotated[str, typer.Option(help="Split seed.")] = "workbench",
    pseudo_label: Annotated[bool, typer.Option(help="With fill: add unreviewed images on which the model is sure of every box (those with none are left out).")] = False,
) -> None:
    """Write reviewed detections as a YOLO dataset (data.yaml, images, labels) + COCO JSON."""
    result = _open().export.yolo(collection, out, version,
                                 _export_options(unreviewed, fill_threshold, val, holdout, seed,
                                                 pseudo_label))
    _emit(result, "\n".join([
        f"exported {sum(result.images.values())} images ({result.images}) with "
        f"{sum(result.objects.values())} objects to {result.path}",
        f"classes: {', '.join(result.names)}; background images: {result.background_images}; "
        f"skipped: {result.skipped_images}; rejected boxes: {len(result.rejected_boxes)}",
        f"content hash {result.content_hash}"]))


@app.command()
def train(
    collection: str,
    base: Annotated[str | None, typer.Option(help="Version to fine-tune (default: active).")] = None,
    epochs: int = 10,
    imgsz: Annotated[int | None, typer.Option(help="Default: the base version's size.")] = None,
    batch: int = 8,
    patience: int = 10,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda:N.")] = None,
    unreviewed: str = "skip",
    fill_threshold: float = 0.5,
    val: float = 0.2,
    holdout: float = 0.0,
    seed: str = "workbench",
    pseudo_label: Annotated[bool, typer.Option(help="With fill: also train on unreviewed images on which the model is sure of every box.")] = False,
    queue: Annotated[bool, typer.Option("--queue", help="Hand the run to the worker.")] = False,
) -> None:
    """Export, fine-tune and register the result as the next version (with its lineage)."""
    from workbench.training import TrainParams

    wb = _open()
    options = _export_options(unreviewed, fill_threshold, val, holdout, seed, pseudo_label)
    params = TrainParams(epochs=epochs, imgsz=imgsz, batch=batch, patience=patience,
                         device=device)
    if queue:
        job = wb.training.submit(collection, base, options, params)
        _emit(job, f"queued training job {job.id}")
        return
    with _job_progress("train") as update:
        job = wb.training.run(collection, base, options, params, listener=update)
    last = job.result["epochs"][-1] if job.result["epochs"] else {}
    _emit(job.result, f"registered {job.result['version']} (from {job.result['parent']}); "
                      f"last epoch mAP50-95 {last.get('mAP50-95(B)', 0):.3f}")


@app.command()
def evaluate(
    collection: str,
    candidate: Annotated[str | None, typer.Option(help="Default: the newest version.")] = None,
    base: Annotated[str | None, typer.Option(help="Default: the candidate's parent.")] = None,
    min_gain: Annotated[float, typer.Option(help="mAP50-95 gain needed to promote.")] = 0.01,
    max_class_drop: Annotated[float, typer.Option(help="Largest AP drop allowed for any class.")] = 0.05,
) -> None:
    """Compare two versions on the same held-out images (pycocotools) and apply the gate."""
    from workbench.evaluation import Gate

    record = _open().evaluation.compare_versions(collection, base, candidate,
                                                 Gate(min_gain, max_class_drop))
    b, c = record["base"], record["candidate"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"{record['base_key']} vs {record['candidate_key']} on "
             f"{len(record['images']['ids'])} images ({record['images']['chosen_by']})",
             f"  mAP50     {fmt(b['map50'])} → {fmt(c['map50'])}",
             f"  mAP50-95  {fmt(b['map50_95'])} → {fmt(c['map50_95'])}",
             f"  regressions: {len(record['comparison']['regressions'])} images, "
             f"improvements: {len(record['comparison']['improvements'])}",
             "promote" if record["decision"]["promote"] else "do not promote",
             *(f"  - {reason}" for reason in record["decision"]["reasons"])]
    _emit(record, "\n".join(lines))


@app.command()
def promote(
    collection: str,
    version: str,
    reason: Annotated[str | None, typer.Option(help="Why, when overriding the gate.")] = None,
) -> None:
    """Make a version active (rollback included); without a passed gate, a reason is needed."""
    done = _open().evaluation.promote(collection, version, reason)
    _emit(done, f"{collection}: {done['from_version']} → {done['to_version']}"
                + (f" (override: {done['override_reason']})" if done["override_reason"] else ""))


@app.command(name="app")
def run_app(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8501,
) -> None:
    """Serve the Streamlit app on 127.0.0.1."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "app.py").exists():
        raise WorkbenchError(f"app.py not found beside the workbench package in {root}")
    os.chdir(root)
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", "app.py",
                              "--server.address", "127.0.0.1", "--server.port", str(port)])


def main() -> None:
    try:
        app()
    except WorkbenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted; a job left running resumes with `workbench worker`", err=True)
        sys.exit(130)


# -- references and taxonomies ---------------------------------------------------------------
@references_app.callback()
def references_list(ctx: typer.Context,
                    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None
                    ) -> None:
    """List reference sets with their version and classes."""
    if ctx.invoked_subcommand is not None:
        return
    wb = _open()
    sets = wb.references.list(collection)
    rows = [{**asdict(r), "classes": wb.references.class_counts(r.name)} for r in sets]
    _emit(rows, "\n".join(f"{r['name']:24} v{r['version']:<4} {r['feature_uri']}  "
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
    made = _open().references.create(name, collection, feature_uri, description)
    _emit(made, f"created reference set {made.name!r} over {made.feature_uri}")


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

    result = _open().references.promote(name, tuple(label or PROMOTABLE), cls, category)
    _emit(result, f"{result['added']} added, {result['already']} already in; "
                  f"{name} is at version {result['version']}")


@references_app.command("add")
def references_add(
    name: str,
    detection_ids: list[str],
    true_class: Annotated[str | None, typer.Option(help="Default: the predicted class.")] = None,
    category: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Add detections by hand."""
    result = _open().references.add(name, detection_ids, true_class, category)
    _emit(result, f"{result['added']} added; {name} is at version {result['version']}")


@references_app.command("remove")
def references_remove(name: str, detection_ids: list[str]) -> None:
    """Take detections out (earlier versions keep them)."""
    result = _open().references.remove(name, detection_ids)
    _emit(result, f"{result['removed']} removed; {name} is at version {result['version']}")


@taxonomy_app.callback()
def taxonomy_list(ctx: typer.Context) -> None:
    """List taxonomies with their version, nodes and label counts."""
    if ctx.invoked_subcommand is not None:
        return
    wb = _open()
    rows = [{**asdict(tax), "labels": wb.taxonomies.label_counts(tax.name)}
            for tax in wb.taxonomies.list()]
    _emit(rows, "\n".join(
        f"{r['name']:20} {r['kind']:5} v{r['version']:<3} threshold {r['threshold']:.2f} "
        f"top_k {r['top_k']}  {r['labels']}" for r in rows)
        or "no taxonomies yet: `workbench taxonomy create NAME --references SET`")


@taxonomy_app.command("create")
def taxonomy_create(
    name: str,
    references: Annotated[str, typer.Option("--references", "-r", help="Reference set.")],
    kind: Annotated[str, typer.Option(help="flat or tree.")] = "flat",
    nodes: Annotated[Path | None, typer.Option(help="JSON list of nodes ({name, parent, "
                                                    "threshold, classes}); flat default: the "
                                                    "set's classes.")] = None,
    threshold: Annotated[float, typer.Option(help="Cosine similarity to accept a node.")] = 0.92,
    top_k: Annotated[int, typer.Option(help="References averaged per node.")] = 5,
    attach: Annotated[str | None, typer.Option(help="Collection to attach it to.")] = None,
    mode: Annotated[str, typer.Option(help="materialize, retroactive or on_demand.")
                    ] = "materialize",
) -> None:
    """Create a taxonomy over a reference set (and attach it to a collection)."""
    parsed = None
    if nodes is not None:
        try:
            parsed = json.loads(nodes.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise WorkbenchError(f"cannot read nodes from {nodes}: {exc}") from None
    wb = _open()
    made = wb.taxonomies.create(name, references, kind, parsed, threshold, top_k,
                                attach=attach, mode=mode)
    _emit(made, f"created taxonomy {made.name!r} ({made.kind}, {len(made.nodes)} nodes)"
                + (f", attached to {attach} ({mode})" if attach else ""))


@taxonomy_app.command("attach")
def taxonomy_attach(
    name: str,
    collection: Annotated[str, typer.Option("--collection", "-c")],
    mode: Annotated[str, typer.Option(help="materialize (after each batch run), retroactive "
                                           "or on_demand.")] = "materialize",
) -> None:
    """Attach a taxonomy to a collection (again: change its mode)."""
    _open().taxonomies.attach(name, collection, mode)
    _emit({"taxonomy": name, "collection": collection, "mode": mode},
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
    wb = _open()
    if queue:
        job = wb.taxonomies.submit_apply(name, version)
        _emit({"job_id": job.id}, f"queued job {job.id}")
        return
    with _job_progress(f"taxonomy {name}") as update:
        job = wb.taxonomies.run_apply(name, listener=update, version=version)
    report = job.result
    lines = [f"{report['classified']} classified in {report['seconds']} s "
             f"(version {report['taxonomy_version']}): {report['changed']} changed, "
             f"{report['new']} new, {report['unchanged']} unchanged", f"labels {report['labels']}"]
    lines += [f"  {s['detection_id']}: {s['before']} → {s['after']}" for s in report["sample"]]
    _emit(report, "\n".join(lines))


# -- clusters --------------------------------------------------------------------------------
def _json_option(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkbenchError(f"{what} is not JSON ({exc}): {text!r}") from None


def _cluster_lines(run) -> list[str]:
    lines = [f"run {run.id}: {run.algorithm} over {run.n_members} detections — "
             f"{len(run.clusters)} clusters, {run.noise} noise, {run.seconds.get('total', 0)} s"]
    for key, info in sorted(run.clusters.items(), key=lambda kv: -kv[1]["size"]):
        lines.append(f"  {key:>4}  {info['size']:>6}  {info.get('name', '')}"
                     + (f" — {info['summary']}" if info.get("summary") else ""))
    return lines


@cluster_app.callback()
def cluster_list(ctx: typer.Context,
                 collection: Annotated[str | None, typer.Option("--collection", "-c")] = None
                 ) -> None:
    """List cluster runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    runs = _open().clusters.list(collection)
    _emit(runs, "\n".join(f"{r.id}  {r.algorithm:16} {r.n_members:>6} members "
                          f"{len(r.clusters):>3} clusters  {r.created_at:%Y-%m-%d %H:%M}"
                          for r in runs) or "no cluster runs yet: `workbench cluster run`")


@cluster_app.command("run")
def cluster_run(
    collection: str,
    algorithm: Annotated[str, typer.Option(help="hdbscan, dbscan, kmeans, agglomerative, "
                                                "gaussian_mixture, spectral, mean_shift, "
                                                "optics.")] = "hdbscan",
    params: Annotated[str | None, typer.Option(help='JSON, e.g. \'{"min_cluster_size": 10}\'.')
                      ] = None,
    filters: Annotated[str | None, typer.Option(help='Retriever filter JSON, e.g. \'{"field": '
                                                     '"taxonomy.shapes", "operator": "eq", '
                                                     '"value": "unknown"}\'.')] = None,
    reduce_with: Annotated[str | None, typer.Option("--reduce", help="pca, umap or tsne.")
                           ] = None,
    components: Annotated[int, typer.Option(help="Dimensions after --reduce.")] = 10,
    projection: Annotated[str, typer.Option(help="2D view: pca, umap or tsne.")] = "pca",
    version: Annotated[str | None, typer.Option()] = None,
    label: Annotated[bool, typer.Option(help="Label the clusters when done.")] = True,
    queue: Annotated[bool, typer.Option(help="Hand it to the background worker.")] = False,
) -> None:
    """Cluster the embeddings of the detections that pass a filter."""
    wb = _open()
    args = dict(algorithm=algorithm, params=_json_option(params, "--params"),
                filters=_json_option(filters, "--filters"),
                reduction={"method": reduce_with, "n_components": components}
                if reduce_with else None, projection=projection, version=version)
    if queue:
        job = wb.clusters.submit(collection, **args)
        _emit({"job_id": job.id}, f"queued job {job.id}")
        return
    with _job_progress(f"cluster {algorithm}") as update:
        run = wb.clusters.run(collection, **args, listener=update)
    if label:
        run = wb.clusters.label(run.id)
    _emit(run, "\n".join(_cluster_lines(run)))


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
    wb = _open()
    run = wb.clusters.label(run_id, use_llm=llm)
    for pair in rename or []:
        key, sep, name = pair.partition("=")
        if not sep or not key.strip().lstrip("-").isdigit():
            raise WorkbenchError(f"--rename {pair!r} should look like 3=stars")
        run = wb.clusters.rename(run_id, int(key), name)
    _emit(run, "\n".join(_cluster_lines(run)))


@cluster_app.command("promote")
def cluster_promote(
    run_id: str,
    cluster: int,
    taxonomy: Annotated[str, typer.Option("--taxonomy", "-t")],
    node: Annotated[str | None, typer.Option(help="Node name (default: the cluster's).")] = None,
    parent: Annotated[str | None, typer.Option(help="Parent node (tree taxonomies).")] = None,
) -> None:
    """Make a cluster a taxonomy node; its members become its references."""
    result = _open().clusters.promote(run_id, cluster, taxonomy, node, parent)
    _emit(result, f"node {result['node']!r}: {result['references_added']} references added; "
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
    result = _open().clusters.relabel(run_id, cluster, true_class, confirm=yes)
    _emit(result, f"{result['written']} annotations written" if yes else
          f"would annotate {result['would_annotate']} detections as {true_class!r}; "
          "add --yes to write them")


# -- automation rules ------------------------------------------------------------------------
rules_app = typer.Typer(help="Automation rules: list, enable, disable, runs, process.",
                        invoke_without_command=True)
app.add_typer(rules_app, name="rules")


def _rule_line(rule) -> str:
    params = " ".join(f"{k}={v}" for k, v in rule.params.items()) or "(no parameters)"
    last = rule.last_run
    ran = (f"last run {last['created_at']:%Y-%m-%d %H:%M:%S} {last['status']}: "
           f"{last['message']}" if last else "no runs yet")
    return f"{rule.name:24} {'on ' if rule.enabled else 'off'} {params}\n{'':28}{ran}"


def _run_line(run) -> str:
    return (f"{run['created_at']:%Y-%m-%d %H:%M:%S}  {run['rule']:24} {run['status']:9} "
            f"{run['message']}" + (f"  [job {run['job_id']}]" if run["job_id"] else ""))


@rules_app.callback()
def rules_list(ctx: typer.Context) -> None:
    """List the built-in rules: on or off, parameters, last run."""
    if ctx.invoked_subcommand is not None:
        return
    rules = _open().rules.list()
    _emit(rules, "\n".join(_rule_line(r) for r in rules))


@rules_app.command("enable")
def rules_enable(
    name: str,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (repeat)."
                                                    )] = None,
) -> None:
    """Switch a rule on (it reacts to events from now on), optionally setting parameters."""
    wb = _open()
    rule = wb.rules.configure(name, enabled=True, params=wb.rules.parse_params(name, param or []))
    _emit(rule, _rule_line(rule))


@rules_app.command("disable")
def rules_disable(name: str) -> None:
    """Switch a rule off (its parameters are kept)."""
    rule = _open().rules.configure(name, enabled=False)
    _emit(rule, _rule_line(rule))


@rules_app.command("runs")
def rules_runs(
    name: Annotated[str | None, typer.Argument(help="Rule (default: all).")] = None,
    limit: int = 50,
) -> None:
    """The rules' recent runs, newest first."""
    runs = _open().rules.runs(name, limit)
    _emit(runs, "\n".join(_run_line(r) for r in runs) or "no runs yet")


@rules_app.command("process")
def rules_process() -> None:
    """Let the rules react to every event not consumed yet (the worker does this itself)."""
    done = _open().rules.process_pending()
    _emit(done, f"{done['events']} event(s) consumed: {done['runs']} run(s), "
                f"{done['jobs']} job(s) queued, {done['failed']} failed")


# -- webhooks and events ---------------------------------------------------------------------
@webhooks_app.callback()
def webhooks_list(ctx: typer.Context) -> None:
    """List webhooks (secrets masked)."""
    if ctx.invoked_subcommand is not None:
        return
    hooks = _open().webhooks.list()
    _emit(hooks, "\n".join(f"{h.name:20} {'on ' if h.active else 'off'} {h.url}  "
                           f"{','.join(h.events)}  secret {h.secret_hint}" for h in hooks)
          or "no webhooks yet: `workbench webhooks create NAME URL`")


@webhooks_app.command("create")
def webhooks_create(
    name: str,
    url: str,
    event: Annotated[list[str] | None, typer.Option("--event", "-e", help="Event type (repeat); "
                                                    "default every event.")] = None,
) -> None:
    """Register a webhook; its signing secret is printed this once."""
    hook, secret = _open().webhooks.create(name, url, event or ["*"])
    _emit({**asdict(hook), "secret": secret},
          f"webhook {hook.name!r} → {hook.url}\nsecret (shown once, keep it): {secret}")


@webhooks_app.command("disable")
def webhooks_disable(name: str) -> None:
    """Stop sending to a webhook; its waiting deliveries wait until it is enabled again."""
    hook = _open().webhooks.set_active(name, False)
    _emit(hook, f"webhook {hook.name!r} disabled")


@webhooks_app.command("enable")
def webhooks_enable(name: str) -> None:
    """Send to a webhook again, starting with what waited while it was disabled."""
    hook = _open().webhooks.set_active(name, True)
    _emit(hook, f"webhook {hook.name!r} enabled")


@webhooks_app.command("delete")
def webhooks_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete it, with its delivery log."
                                      )] = False,
) -> None:
    """Delete a webhook with its deliveries and their attempts (events are kept)."""
    wb = _open()
    hook = wb.webhooks.get(name)
    if not yes:
        raise WorkbenchError(f"deleting webhook {hook.name!r} also deletes its delivery log; "
                             "add --yes to do it (or `workbench webhooks disable` to pause it)")
    removed = wb.webhooks.delete(hook.id)
    _emit({"webhook": hook.name, **removed},
          f"deleted webhook {hook.name!r} ({removed['deliveries']} deliveries, "
          f"{removed['attempts']} attempts)")


@webhooks_app.command("ping")
def webhooks_ping(name: str) -> None:
    """Queue a ping event to one webhook (the worker sends it)."""
    delivery = _open().webhooks.ping(name)
    _emit({"delivery_id": delivery}, f"ping queued as delivery {delivery}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    name: Annotated[str | None, typer.Argument(help="Webhook (default: all).")] = None,
    status: Annotated[str | None, typer.Option(help="pending, delivering, delivered, failed."
                                               )] = None,
    limit: int = 50,
) -> None:
    """Recent deliveries with their status, attempts and last error."""
    rows = _open().webhooks.deliveries(name, status, limit)

    def due(row) -> str:
        return (f"next attempt {row['next_attempt_at']:%Y-%m-%d %H:%M:%S} UTC  "
                if row["status"] == "pending" and row["attempts"] else "")

    _emit(rows, "\n".join(
        f"{r['id']}  {r['event_type']:22} {r['status']:10} attempts {r['attempts']}  "
        f"{due(r)}{r['last_status_code'] or ''} {r['last_error'] or ''}" for r in rows)
        or "no deliveries")


@webhooks_app.command("redeliver")
def webhooks_redeliver(delivery_id: str) -> None:
    """Send a delivery again (same delivery id)."""
    _open().webhooks.redeliver(delivery_id)
    _emit({"delivery_id": delivery_id}, f"{delivery_id} queued again")


@app.command()
def events(
    kind: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    limit: int = 50,
) -> None:
    """Recent events, newest first."""
    from workbench.events import recent_events

    rows = recent_events(_open().db, kind, limit)
    _emit(rows, "\n".join(f"{r['created_at']:%Y-%m-%d %H:%M:%S}  {r['type']:22} {r['id']}"
                          for r in rows) or "no events yet")


# -- FiftyOne --------------------------------------------------------------------------------
@app.command(name="fiftyone")
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
    wb = _open()
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
    _emit(data, "\n".join(lines))
    if launch:
        try:
            wb.fiftyone.wait()
        except KeyboardInterrupt:
            typer.echo("FiftyOne App stopped", err=True)
