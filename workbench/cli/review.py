"""``workbench review-queue`` and ``workbench annotate``: what to review next, and the verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.cli.common import emit, hit_line, open_workspace
from workbench.errors import WorkbenchError

COUNT_AT_MOST = 10_000  # a review queue's "left to review" counts this far


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
    lease: Annotated[bool, typer.Option(
        "--lease/--no-lease", help="Lease the page to you (the annotations' author), so that "
                                   "other reviewers do not get its items; skip items leased "
                                   "to them.")] = True,
) -> None:
    """The next page of a review queue: uncertain detections (default), a spot-check, images
    with no detections, whole images to finish, or disagreements with the ground truth. The
    page of a review queue (default, --spot-check, --image-review) is leased to you for a
    few minutes (WORKBENCH_LEASE_TTL_S); your verdicts release it."""
    wb = open_workspace()
    reviewer = wb.annotations.default_author if lease else None
    if sum((spot_check, images, whole, disagreements)) > 1:
        raise WorkbenchError("choose one of --spot-check, --images, --image-review and "
                             "--disagreements")
    if whole:
        queue = wb.image_review.queue(collection, version, limit, reviewer=reviewer)
        emit(queue, "\n".join(
            [f"{queue.remaining} image(s) of {queue.extractor_key} not complete; execution "
             f"{queue.execution_id}", *(f"{r.document_id}  {r.object_id}  score {r.score:.3f} "
                                        f"(uncertainty {r.uncertainty:.2f}, disagreement "
                                        f"{r.disagreement:.2f}, novelty {r.novelty:.2f}) "
                                        f"{r.detections} boxes, {r.state}"
                                        for r in queue.images)]))
        return
    if disagreements:
        rows = wb.image_review.disagreements(collection, version, limit)
        emit(rows, "\n".join([f"{len(rows)} complete image(s) where the version disagrees "
                              "with the ground truth", *(
                                  f"{r['document_id']}  {r['object_id']}  {r['false_positives']} "
                                  f"false positive(s), {r['wrong_class']} wrong class(es), "
                                  f"{r['missed']} missed" for r in rows)]))
        return
    if images:
        found = wb.retrievers.images_to_check(collection, version, limit, seed)
        emit({"images": found}, "\n".join(
            [f"{len(found)} image(s) with no detections to look over", *(
                f"{h.document_id}  {h.object_id}" for h in found)]))
        return
    queue = (wb.retrievers.spot_check(collection, limit) if spot_check
             else wb.retrievers.review_queue(collection, limit))
    inputs = {"limit": limit, "seed": seed} if spot_check else {"limit": limit}
    # Counted up to COUNT_AT_MOST, then "10000+": an exact count scanned every unreviewed
    # candidate (2.7 s of the command at 1M detections), a bounded one costs the same at any
    # size.
    execution = wb.retrievers.execute(queue.name, inputs, version, count=COUNT_AT_MOST,
                                      reviewer=reviewer)
    hits = execution.hits
    left = f"{execution.matched}{'' if execution.matched_exact else '+'}"
    emit({"retriever_id": execution.retriever_id, "execution_id": execution.id,
          "remaining": execution.matched, "remaining_exact": execution.matched_exact,
          "hits": hits},
         "\n".join([f"{left} left to review; retriever {execution.retriever_id}, "
                    f"execution {execution.id}", *(hit_line(h) for h in hits)]))


def annotate(
    document_id: Annotated[str | None, typer.Argument(
        help="Detection or image document id.")] = None,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    label: Annotated[str | None, typer.Option(
        "--label", "-l", help="confirmed, corrected, false_positive, missed, image_done or "
        "no_objects (others where `workbench labels C --allow-custom` allows them).")] = None,
    true_class: Annotated[str | None, typer.Option(
        help="The right class (corrected, missed).")] = None,
    bbox: Annotated[str | None, typer.Option(help="Centre box x,y,w,h in pixels.")] = None,
    reasoning: str = "",
    confidence: Annotated[float | None, typer.Option()] = None,
    retriever: Annotated[str | None, typer.Option(help="Retriever id (provenance).")] = None,
    execution: Annotated[str | None, typer.Option(help="Execution id (provenance).")] = None,
    bulk: Annotated[Path | None, typer.Option(help="JSONL file of operations (max 1,000).")] = None,
) -> None:
    """Record one verdict, or many from a JSONL file (each line succeeds or fails alone)."""
    wb = open_workspace()
    if bulk is not None:
        results = _bulk_annotate(wb, bulk)
        failed = [r for r in results if not r.ok]
        emit(results, "\n".join([*(f"line {r.index + 1}: {r.error}" for r in failed),
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
    emit(saved, f"saved {saved.id}: {saved.label} on {saved.document_id}")


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


def labels(
    collection: str,
    allow_custom: Annotated[bool | None, typer.Option(
        "--allow-custom/--standard-only", help="Let annotations of the collection take labels "
        "beyond the standard ones, or only those again (written annotations keep theirs).")
    ] = None,
) -> None:
    """A collection's label vocabulary: the standard labels, and whether others are taken.
    Stats group by exact label, so a misspelt one ("Confirmed") is refused unless allowed."""
    wb = open_workspace()
    vocabulary = (wb.annotations.vocabulary(collection) if allow_custom is None
                  else wb.annotations.allow_custom_labels(collection, allow_custom))
    emit(vocabulary, f"{vocabulary.collection}: {', '.join(vocabulary.standard)}"
         + ("; custom labels allowed" if vocabulary.allow_custom_labels else
            "; other labels refused (--allow-custom to take them)"))
