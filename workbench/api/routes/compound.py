"""What compounds: reference sets of verified detections, taxonomies that classify against
them (applied to collections; re-applied retroactively as a job), and cluster runs (a job)
that find what has no class yet, labelled and promoted to taxonomy nodes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder

from workbench.api.auth import Principal, admin, reviewer
from workbench.api.errors import ApiError
from workbench.api.payloads import (
    ClusterCreate,
    ClusterLabel,
    ClusterPromotion,
    ReferencePromotion,
    ReferenceSetCreate,
    TaxonomyApplication,
    TaxonomyApply,
    TaxonomyCreate,
)
from workbench.api.routes.common import (
    MAX_PAGE,
    IdempotencyKey,
    create,
    job_json,
    job_url,
    page_json,
    workspace,
)

router = APIRouter()


def _queued(job, **ids: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A 202 answer for queued work: the job, its URL, and the ids the caller asked for."""
    return 202, {**ids, "job_id": job.id, **job_json(job)}, {"Location": job_url(job.id)}


# -- reference sets --------------------------------------------------------------------------
def reference_set_json(wb, refs) -> dict[str, Any]:
    """A reference set with its members per true class."""
    return jsonable_encoder({"reference_set_id": refs.id, **asdict(refs),
                             "classes": wb.references.class_counts(refs.id)})


@router.post("/reference-sets", status_code=201, tags=["reference sets"])
def create_reference_set(body: ReferenceSetCreate, request: Request,
                         who: Principal = Depends(admin), key: str | None = IdempotencyKey
                         ) -> Any:
    """An empty reference set over one embedding feature of a collection."""
    wb = workspace(request)

    def make():
        made = wb.references.create(body.name, body.collection_id, body.feature_uri,
                                    body.description)
        return 201, reference_set_json(wb, made), {"Location": f"/v1/reference-sets/{made.id}"}

    return create(request, who, key, body.model_dump(), make)


@router.get("/reference-sets", tags=["reference sets"])
def list_reference_sets(request: Request, collection_id: str | None = None,
                        who: Principal = Depends(reviewer)) -> list[dict]:
    """Reference sets (of one collection, if given), by name."""
    wb = workspace(request)
    return [reference_set_json(wb, r) for r in wb.references.list(collection_id)]


@router.get("/reference-sets/{name}", tags=["reference sets"])
def get_reference_set(name: str, request: Request, who: Principal = Depends(reviewer)) -> dict:
    """A reference set by name or id."""
    wb = workspace(request)
    return reference_set_json(wb, wb.references.get(name))


@router.post("/reference-sets/{name}/promote", tags=["reference sets"])
def promote_references(name: str, body: ReferencePromotion, request: Request,
                       who: Principal = Depends(admin)) -> dict:
    """Add the objects people established (newest verdict confirmed or corrected) to the
    set, with their true class; a new version of the set when anything was added."""
    wb = workspace(request)
    return jsonable_encoder(wb.references.promote(name, tuple(body.labels), body.classes,
                                                  body.category))


# -- taxonomies ------------------------------------------------------------------------------
def taxonomy_json(taxonomy) -> dict[str, Any]:
    """A taxonomy in the tutorial's names."""
    data = asdict(taxonomy)
    return jsonable_encoder({"taxonomy_id": data.pop("id"), "taxonomy_name": data.pop("name"),
                             "taxonomy_type": data.pop("kind"), **data})


@router.post("/taxonomies", status_code=201, tags=["taxonomies"])
def create_taxonomy(body: TaxonomyCreate, request: Request, who: Principal = Depends(admin),
                    key: str | None = IdempotencyKey) -> Any:
    """A taxonomy over a reference set (flat: one node per class of the set, unless
    ``nodes`` are given); with ``collection_id`` it is applied to that collection in
    ``execution_mode`` (materialize: after every batch run)."""
    wb = workspace(request)

    def make():
        made = wb.taxonomies.create(body.taxonomy_name, body.reference_set,
                                    body.taxonomy_type, body.nodes, body.threshold, body.top_k,
                                    attach=body.collection_id, mode=body.execution_mode)
        return 201, taxonomy_json(made), {"Location": f"/v1/taxonomies/{made.id}"}

    return create(request, who, key, body.model_dump(), make)


@router.get("/taxonomies", tags=["taxonomies"])
def list_taxonomies(request: Request, who: Principal = Depends(reviewer)) -> list[dict]:
    """Every taxonomy."""
    return [taxonomy_json(t) for t in workspace(request).taxonomies.list()]


@router.get("/taxonomies/{taxonomy}", tags=["taxonomies"])
def get_taxonomy(taxonomy: str, request: Request, who: Principal = Depends(reviewer)) -> dict:
    """A taxonomy by name or id, with its stored assignments per label."""
    wb = workspace(request)
    found = wb.taxonomies.get(taxonomy)
    return {**taxonomy_json(found), "labels": wb.taxonomies.label_counts(found.id)}


@router.post("/taxonomies/{taxonomy}/apply", status_code=202, tags=["taxonomies"])
def apply_taxonomy(taxonomy: str, body: TaxonomyApply, request: Request,
                   who: Principal = Depends(admin), key: str | None = IdempotencyKey) -> Any:
    """Reclassify every existing detection of a version (``retroactive``): a job, answered
    at once (202) with its URL; its result says what changed."""
    wb = workspace(request)
    found = wb.taxonomies.get(taxonomy)
    if body.collection_id is not None:
        own = wb.references.get(found.reference_set_id).collection_id
        if wb.collections.get(body.collection_id).id != own:
            raise ApiError(422, "validation_error", f"taxonomy {found.name!r} classifies "
                           f"detections of collection {own}, not {body.collection_id!r}")

    def make():
        return _queued(wb.taxonomies.submit_apply(found.id, body.version),
                       taxonomy_id=found.id)

    return create(request, who, key, {"taxonomy": found.id, **body.model_dump()}, make)


@router.get("/taxonomies/{taxonomy}/assignments", tags=["taxonomies"])
def taxonomy_assignments(taxonomy: str, request: Request, label: str | None = None,
                         cursor: str | None = None,
                         limit: int = Query(100, ge=1, le=MAX_PAGE),
                         who: Principal = Depends(reviewer)) -> dict:
    """A taxonomy's stored assignments by detection id, a page at a time."""
    return page_json(workspace(request).taxonomies.assignments_page(taxonomy, label, cursor,
                                                                    limit))


@router.post("/collections/{collection}/taxonomy-applications", status_code=201,
             tags=["taxonomies"])
def apply_to_collection(collection: str, body: TaxonomyApplication, request: Request,
                        who: Principal = Depends(admin)) -> dict:
    """Apply a taxonomy to a collection in a mode (again: change its mode). ``materialize``
    classifies each batch run's new detections; ``retroactive`` is the apply route."""
    wb = workspace(request)
    wb.taxonomies.attach(body.taxonomy_id, collection, body.execution_mode)
    return applications(collection, request, who)


@router.get("/collections/{collection}/taxonomy-applications", tags=["taxonomies"])
def applications(collection: str, request: Request, who: Principal = Depends(reviewer)
                 ) -> dict:
    """The taxonomies applied to a collection, each with its mode."""
    wb = workspace(request)
    return {"taxonomy_applications": [
        {"taxonomy_id": tax.id, "taxonomy_name": tax.name, "execution_mode": mode}
        for tax, mode in wb.taxonomies.attachments(collection)]}


# -- cluster runs ----------------------------------------------------------------------------
def cluster_json(run) -> dict[str, Any]:
    """A stored cluster run."""
    return jsonable_encoder({"cluster_run_id": run.id, **asdict(run)})


def _version_of(wb, collection: str, feature_uri: str | None) -> str | None:
    """The extractor version a feature URI names (``workbench://yolo_detector@2.0.0/
    detection_embedding``; the tutorial's ``mixpeek://`` scheme too)."""
    if feature_uri is None:
        return None
    _, _, rest = feature_uri.partition("://")
    key, _, feature = rest.partition("/")
    target = wb.collections.get(collection)
    version = wb.registry.get(key)
    if version.name != target.extractor_name or feature != "detection_embedding":
        raise ApiError(422, "validation_error", f"clusters group detection embeddings of "
                       f"{target.name!r}: give workbench://{target.extractor_name}@VERSION/"
                       f"detection_embedding, not {feature_uri!r}")
    return version.version


@router.post("/clusters", status_code=202, tags=["clusters"])
def create_cluster_run(body: ClusterCreate, request: Request, who: Principal = Depends(admin),
                       key: str | None = IdempotencyKey) -> Any:
    """Queue a cluster run over the detection embeddings that pass ``filters``: 202 with the
    job; its result names the run (``run_id``), labelled when done."""
    wb = workspace(request)
    version = _version_of(wb, body.collection_id, body.feature_uri)
    reduction = body.dimension_reduction.model_dump() if body.dimension_reduction else None

    def make():
        job = wb.clusters.submit(body.collection_id, body.algorithm.name,
                                 body.algorithm.params, body.filters, reduction,
                                 body.projection, version, body.seed)
        return _queued(job, cluster_name=body.cluster_name or "")

    return create(request, who, key, body.model_dump(), make)


@router.get("/clusters", tags=["clusters"])
def list_cluster_runs(request: Request, collection_id: str | None = None,
                      cursor: str | None = None, limit: int = Query(50, ge=1, le=MAX_PAGE),
                      who: Principal = Depends(reviewer)) -> dict:
    """Cluster runs, newest first, a page at a time."""
    return page_json(workspace(request).clusters.page(collection_id, cursor, limit),
                     cluster_json)


@router.get("/clusters/{run_id}", tags=["clusters"])
def get_cluster_run(run_id: str, request: Request, who: Principal = Depends(reviewer)) -> dict:
    """A cluster run: its clusters with their size, name and summary."""
    return cluster_json(workspace(request).clusters.get(run_id))


@router.post("/clusters/{run_id}/label", tags=["clusters"])
def label_clusters(run_id: str, body: ClusterLabel, request: Request,
                   who: Principal = Depends(admin)) -> dict:
    """Label a run's clusters (built-in statistics, and the LLM when configured), and name
    some by hand (``names``: a name kept when the run is labelled again)."""
    wb = workspace(request)
    bad = [key for key in body.names if not key.lstrip("-").isdigit()]
    if bad:
        raise ApiError(422, "validation_error", f"names are keyed by cluster number "
                       f"(\"3\": \"stars\"), got {bad[0]!r}")
    run = wb.clusters.label(run_id, use_llm=body.llm)
    for cluster, name in body.names.items():
        run = wb.clusters.rename(run_id, int(cluster), name)
    return cluster_json(run)


@router.post("/clusters/{run_id}/promote", tags=["clusters"])
def promote_cluster(run_id: str, body: ClusterPromotion, request: Request,
                    who: Principal = Depends(admin)) -> dict:
    """Make a cluster a taxonomy node: its members join the taxonomy's reference set."""
    return jsonable_encoder(workspace(request).clusters.promote(
        run_id, body.cluster, body.taxonomy_id, body.node, body.parent))
