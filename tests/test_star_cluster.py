"""The compound flow on the demo workspace, with ShapeWorld's ground truth as the reviewer.

The starter detector has never seen a star: it calls stars triangles (or squares). Reviewed
detections of the three known classes become references, a flat taxonomy leaves what is
like none of them ``unknown``, and clustering the unknowns must find the stars as one group
(purity >= 0.8) that a user can name, promote to a taxonomy node and relabel for training.
"""

from __future__ import annotations

import pytest

from workbench.demo import DEMO_COLLECTION
from workbench.demo.reviewer import GroundTruth, SimulatedReviewer, judge

pytestmark = pytest.mark.slow

KNOWN = ["circle", "square", "triangle"]
UNKNOWN = {"field": "taxonomy.shapes", "operator": "eq", "value": "unknown"}


def true_classes(wb, truth) -> dict[str, str]:
    """Detection id -> the class ShapeWorld drew there (``background`` where nothing was)."""
    import sqlalchemy as sa

    from workbench.store import tables as t

    with wb.db.read() as conn:
        rows = conn.execute(sa.select(t.detections)).all()
    by_object: dict[tuple[str, str], list] = {}  # each version's boxes judged on their own
    for row in rows:
        by_object.setdefault((row.object_id, row.extractor_key), []).append(row)
    found = {}
    for (object_id, _), detections in by_object.items():
        boxes = truth.boxes(wb.buckets.get_object(object_id).sha256) or []
        verdicts = judge([(d.class_name, (d.x1, d.y1, d.x2, d.y2)) for d in detections], boxes)
        for detection, verdict in zip(detections, verdicts, strict=True):
            found[detection.id] = verdict.true_class or "background"
    return found


def test_unknown_stars_cluster_and_flow_into_the_next_export(wb, tmp_path):
    wb.demo.setup()
    truth = GroundTruth.for_demo(wb)
    SimulatedReviewer(wb, truth).review(DEMO_COLLECTION, budget=150, strategy="plan")

    wb.references.create("shapes", DEMO_COLLECTION)
    promoted = wb.references.promote("shapes", classes=KNOWN)
    assert promoted["added"] >= 30
    wb.taxonomies.create("shapes", "shapes")  # the default threshold
    wb.taxonomies.attach("shapes", DEMO_COLLECTION, "retroactive")
    wb.taxonomies.run_apply("shapes")

    run = wb.clusters.run(DEMO_COLLECTION, "hdbscan", filters=UNKNOWN)  # default parameters
    classes = true_classes(wb, truth)
    members = wb.clusters.members(run.id)
    stars_unknown = sum(classes[m["detection_id"]] == "star" for m in members)
    assert stars_unknown >= 10, "the taxonomy should leave most stars unknown"

    def star_share(cluster: str) -> tuple[float, int]:
        inside = [classes[m["detection_id"]] for m in members if m["cluster"] == int(cluster)]
        return inside.count("star") / len(inside), inside.count("star")

    best = max(run.clusters, key=lambda c: (star_share(c)[1] >= 5, star_share(c)[0]))
    purity, n_stars = star_share(best)
    assert n_stars >= 5 and purity >= 0.8, (purity, n_stars, run.clusters)

    # Name it, promote it to a taxonomy node, relabel its members into the next export.
    wb.clusters.label(run.id)
    wb.clusters.rename(run.id, int(best), "star")
    promoted = wb.clusters.promote(run.id, int(best), "shapes")
    assert promoted["node"] == "star" and promoted["references_added"] > 0
    assert "star" in [n.name for n in wb.taxonomies.get("shapes").nodes]
    assert wb.clusters.relabel(run.id, int(best), "star")["written"] == 0  # not confirmed yet
    written = wb.clusters.relabel(run.id, int(best), "star", confirm=True)["written"]
    assert written == len([m for m in members if m["cluster"] == int(best)])

    from workbench.export import ExportOptions

    dataset = wb.export.yolo(DEMO_COLLECTION, tmp_path / "ds",
                          options=ExportOptions(unreviewed="fill"))
    assert "star" in dataset.names and dataset.class_counts.get("star", 0) >= n_stars


def test_the_tutorials_order_across_versions(wb, tmp_path, starter_weights):
    """Review v1, promote v2, then: references made on v1 classify v2's detections, v2's
    unknowns cluster, the star cluster is promoted into the v1 taxonomy and relabelled, and
    the next export holds v1's reviewed boxes and the stars."""
    from workbench.export import ExportOptions

    wb.demo.setup()
    truth = GroundTruth.for_demo(wb)
    SimulatedReviewer(wb, truth).review_images(DEMO_COLLECTION, budget=300)
    v1 = wb.registry.get("yolo_detector", "1.0.0")
    # v2: another version (here the same weights, registered again, so that the test is not
    # about training), run over the collection and promoted.
    v2 = wb.registry.register_yolo(starter_weights, parent_version="1.0.0",
                                   lineage={"imgsz": 320})
    wb.detection.run(DEMO_COLLECTION, v2.version)
    wb.evaluation.promote(DEMO_COLLECTION, v2.version, override_reason="the tutorial's order")
    carried = wb.annotations.list(collection_id=wb.collections.get(DEMO_COLLECTION).id,
                                  origin="carried", limit=1).total
    assert carried > 100  # what was reviewed on v1 is known on v2 without asking again

    refs = wb.references.create("v1-refs", DEMO_COLLECTION, v1.feature_uri("detection_embedding"))
    assert wb.references.promote(refs.name, classes=KNOWN)["added"] >= 30
    wb.taxonomies.create("shapes", refs.name)
    report = wb.taxonomies.apply("shapes", version=v2.version)
    assert report["extractor"] == v2.key and report["classified"] > 0

    run = wb.clusters.run(DEMO_COLLECTION, "hdbscan", filters=UNKNOWN, version=v2.version)
    assert run.feature_uri == v2.feature_uri("detection_embedding")
    classes = true_classes(wb, truth)
    members = wb.clusters.members(run.id)

    def star_share(cluster: str) -> tuple[float, int]:
        inside = [classes[m["detection_id"]] for m in members if m["cluster"] == int(cluster)]
        return inside.count("star") / len(inside), inside.count("star")

    best = max(run.clusters, key=lambda c: (star_share(c)[1] >= 5, star_share(c)[0]))
    purity, n_stars = star_share(best)
    assert n_stars >= 5 and purity >= 0.8, (purity, n_stars)
    wb.clusters.rename(run.id, int(best), "star")
    promoted = wb.clusters.promote(run.id, int(best), "shapes")  # v2 boxes, v1 references
    assert promoted["references_added"] > 0
    assert "star" in [n.name for n in wb.taxonomies.get("shapes").nodes]
    wb.clusters.relabel(run.id, int(best), "star", confirm=True)

    dataset = wb.export.yolo(DEMO_COLLECTION, tmp_path / "ds",
                          options=ExportOptions(unreviewed="fill"))
    assert dataset.boxes_by_origin.get(f"review {v1.key}", 0) > 100  # v1's review, kept
    assert dataset.class_counts.get("star", 0) >= n_stars
