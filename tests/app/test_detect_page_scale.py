"""The Detect page's reads do not grow with the version: keyset pages of the images with
detections (filtered from the class or confidence index when few detections match, by
walking the images otherwise), bounded class counts, and totals cached until the version
processes another image. Checked against a brute-force answer on rows written the way a
batch run writes them, and through the page."""

from __future__ import annotations

import random

import pytest

from tests.app.conftest import run_page, shown
from workbench.store import tables as t
from workbench.store.metadata import utcnow

KEY = "yolo_detector@1.0.0"
CLASSES = ["circle", "square", "triangle", "rare"]


def write_version(wb, images: int, seed: int = 0) -> dict[str, list[tuple[str, float]]]:
    """A collection whose version found 0-4 boxes on each image (``rare`` on a few, some
    boxes at confidence exactly 1.0, some images' uncertainty not stored, as when rows are
    written directly); returns each image's (class, confidence) pairs."""
    from workbench.extractors.yolo import yolo_spec

    rng = random.Random(seed)
    now = utcnow()
    with wb.db.write() as conn:
        conn.execute(t.buckets.insert().values(id="bkt_s", name="scale", schema={
            "properties": {"image": {"type": "image"}}}, description="", created_at=now))
        conn.execute(t.extractor_versions.insert().values(
            id="ext_s", name="yolo_detector", version="1.0.0", kind="yolo",
            spec=yolo_spec("1.0.0", 8, 8).to_dict(), classes=CLASSES, lineage={}, metrics={},
            notes="", created_at=now))
        conn.execute(t.collections.insert().values(
            id="col_s", name="scale", extractor_name="yolo_detector", active_version="1.0.0",
            bucket_ids=["bkt_s"], created_at=now))
    truth, objects, documents, detections = {}, [], [], []
    for i in range(images):
        # ids in no particular order, as real ones (random hex) are
        obj = f"obj_{rng.getrandbits(40):010x}"
        found = []
        for _ in range(rng.choice([0, 1, 2, 3, 4])):
            cls = "rare" if rng.random() < 0.01 else rng.choice(CLASSES[:3])
            found.append((cls, 1.0 if rng.random() < 0.05 else round(rng.random(), 3)))
        truth[obj] = found
        objects.append({"id": obj, "bucket_id": "bkt_s", "sha256": f"{i:064d}", "width": 64,
                        "height": 48, "format": "JPEG", "size_bytes": 1,
                        "source": f"{obj}.jpg", "metadata": {}, "created_at": now})
        documents.append({"id": f"doc_{obj}", "collection_id": "col_s", "object_id": obj,
                          "extractor_key": KEY, "features": {}, "n_detections": len(found),
                          "uncertainty": None if i % 7 == 0 else
                          sum(1 - abs(2 * c - 1) for _, c in found),
                          "created_at": now})
        detections += [{"id": f"doc_{obj}_{k}", "document_id": f"doc_{obj}",
                        "collection_id": "col_s", "object_id": obj, "extractor_key": KEY,
                        "idx": k, "class_name": cls, "confidence": conf, "x1": 1.0, "y1": 1.0,
                        "x2": 20.0, "y2": 20.0, "embedding_id": None}
                       for k, (cls, conf) in enumerate(found)]
    with wb.db.write() as conn:
        conn.execute(t.objects.insert(), objects)
        conn.execute(t.documents.insert(), documents)
        conn.execute(t.detections.insert(), detections)
    wb.db.ensure_statistics()
    return truth


@pytest.fixture
def scale(workspace):
    return workspace, write_version(workspace, 3000)


def expected(truth, classes=None, low=0.0, high=1.0) -> list[str]:
    return sorted(obj for obj, found in truth.items()
                  if any((not classes or cls in classes) and low <= conf <= high
                         for cls, conf in found))


def all_pages(wb, collection, classes=None, low=0.0, high=1.0, limit=50):
    page = wb.detection.images_with_detections(collection, KEY, classes, low, high, limit=limit)
    pages = [page]
    while page.next_cursor:
        page = wb.detection.images_with_detections(collection, KEY, classes, low, high,
                                                   cursor=page.next_cursor, limit=limit)
        pages.append(page)
    return pages


@pytest.mark.parametrize("classes, low, high", [
    (None, 0.0, 1.0),  # every image with a detection
    (["circle"], 0.0, 1.0),  # a common class: walked image by image
    (["circle", "square"], 0.5, 0.9),
    (None, 0.95, 1.0),
    (["rare"], 0.0, 1.0),  # few matches: from the class index
    (["triangle"], 1.0, 1.0),  # exactly 1.0
    (["circle"], 0.2, 0.2001),  # next to nothing
])
def test_keyset_pages_hold_every_matching_image_once(scale, monkeypatch, classes, low, high):
    import workbench.detection as detection

    monkeypatch.setattr(detection, "FEW_MATCHES", 150)  # this workspace's "few"
    wb, truth = scale
    collection = wb.collections.get("scale")
    want = expected(truth, classes, low, high)
    pages = all_pages(wb, collection, classes, low, high)
    assert [i for p in pages for i in p.items] == want
    assert all(p.total == len(want) and p.exact for p in pages)
    assert [p.start for p in pages] == list(range(0, 50 * len(pages), 50))


@pytest.mark.parametrize("few", [0, 1_000_000])
def test_both_ways_of_filtering_give_the_same_pages(scale, monkeypatch, few):
    """Whichever way the probe sends a filter, the pages are the same."""
    import workbench.detection as detection

    wb, truth = scale
    collection = wb.collections.get("scale")
    monkeypatch.setattr(detection, "FEW_MATCHES", few)
    for classes, low, high in [(["circle"], 0.3, 0.8), (["rare", "square"], 0.0, 1.0)]:
        found = [i for p in all_pages(wb, collection, classes, low, high) for i in p.items]
        assert found == expected(truth, classes, low, high)


def test_counts_are_exact_or_bounded(scale, monkeypatch):
    import workbench.paging as paging

    wb, truth = scale
    collection = wb.collections.get("scale")
    with_detections = sum(1 for found in truth.values() if found)
    assert wb.detection.count_images_with_detections(collection, KEY) == with_detections
    exact = wb.detection.class_counts(collection, KEY)
    assert exact == {cls: sum(c == cls for found in truth.values() for c, _ in found)
                     for cls in CLASSES}
    assert wb.detection.class_counts(collection, KEY, at_most=10**6) == exact
    bounded = wb.detection.class_counts(collection, KEY, at_most=100)
    assert bounded == {cls: min(n, 101) for cls, n in exact.items()}
    monkeypatch.setattr(paging, "COUNT_LIMIT", 100)
    page = wb.detection.images_with_detections(collection, KEY, limit=10)
    assert (page.total, page.exact) == (100, False)


def test_detections_of_given_images_are_filtered(scale):
    wb, truth = scale
    collection = wb.collections.get("scale")
    some = sorted(truth)[:40]
    found = wb.detection.detections(collection, KEY, ["circle"], 0.25, 0.75, some)
    assert sorted((d.object_id, d.class_name, d.confidence) for d in found) == sorted(
        (obj, cls, conf) for obj in some for cls, conf in truth[obj]
        if cls == "circle" and 0.25 <= conf <= 0.75)


def test_the_detect_page_pages_forward_and_back(scale):
    wb, truth = scale
    with_detections = expected(truth)
    at = run_page("pages/2_Detect.py")
    assert not at.exception, [e.message for e in at.exception]
    caption = next(shown(c) for c in at.caption if "matching detections" in c.value)
    assert f"{len(with_detections):,} images with matching detections" in caption
    assert at.selectbox(key="detail_image").options[0] == f"{with_detections[0]}.jpg"
    assert at.button(key="results_previous").disabled
    at.button(key="results_next").click().run()
    assert not at.exception
    assert "showing 13–24 (page 2)" in next(shown(c) for c in at.caption
                                            if "matching detections" in c.value)
    assert at.selectbox(key="detail_image").options[0] == f"{with_detections[12]}.jpg"
    at.button(key="results_previous").click().run()
    assert at.selectbox(key="detail_image").options[0] == f"{with_detections[0]}.jpg"
    # a filter starts again from the first page of what it matches
    at.button(key="results_next").click().run()
    at.multiselect(key="filter_classes").select("rare").run()
    assert not at.exception
    rare = expected(truth, ["rare"])
    assert f"{len(rare):,} images with matching detections · showing 1–" in next(
        shown(c) for c in at.caption if "matching detections" in c.value)
    assert at.selectbox(key="detail_image").options[0] == f"{rare[0]}.jpg"


def test_the_page_counts_classes_up_to_a_bound_and_refreshes_after_a_run(scale, monkeypatch):
    import workbench.ui.detect as detect

    wb, truth = scale
    rare = sum(c == "rare" for found in truth.values() for c, _ in found)
    limit = rare + 1  # the common classes have thousands
    monkeypatch.setattr(detect, "CLASS_COUNT_LIMIT", limit)
    at = run_page("pages/2_Detect.py")
    assert at.multiselect(key="filter_classes").options == [
        f"circle ({limit}+)", f"rare ({rare})", f"square ({limit}+)", f"triangle ({limit}+)"]
    # another image processed: the cached counts are read again
    obj = "obj_zzzzzzzzzz"
    now = utcnow()
    with wb.db.write() as conn:
        conn.execute(t.objects.insert().values(
            id=obj, bucket_id="bkt_s", sha256="f" * 64, width=64, height=48, format="JPEG",
            size_bytes=1, source=f"{obj}.jpg", metadata={}, created_at=now))
        conn.execute(t.documents.insert().values(
            id=f"doc_{obj}", collection_id="col_s", object_id=obj, extractor_key=KEY,
            features={}, n_detections=1, uncertainty=0.5, created_at=now))
        conn.execute(t.detections.insert().values(
            id=f"doc_{obj}_0", document_id=f"doc_{obj}", collection_id="col_s", object_id=obj,
            extractor_key=KEY, idx=0, class_name="rare", confidence=0.75, x1=1.0, y1=1.0,
            x2=9.0, y2=9.0))
    at.run()
    assert f"rare ({rare + 1})" in at.multiselect(key="filter_classes").options
