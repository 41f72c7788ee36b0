"""Several reviewers, one queue, over HTTP: the review-queue route leases its page to the
key's name; a verdict on an item leased to another key is a 409."""

from __future__ import annotations

import subprocess
import sys
import threading

import httpx
import numpy as np

from tests.api.conftest import client_for, wait_for_docs
from tests.api.test_serve import _free_port
from tests.conftest import KEY
from workbench.api.keys import KeyService
from workbench.store import tables as t
from workbench.store.metadata import utcnow


def _keys(wb, *names):
    keys = KeyService(wb.db)
    return {name: {"Authorization": f"Bearer {keys.create(name, 'reviewer')[1]}"}
            for name in names}


def _ids(answer):
    return [r["detection_id"] for r in answer.json()["results"]]


def test_review_queue_route_leases_to_the_key(review_wb):
    api, keys = client_for(review_wb), _keys(review_wb, "alice", "bob")
    alice = api.post("/v1/collections/x/review-queue", json={"limit": 2}, headers=keys["alice"])
    assert alice.status_code == 200, alice.text
    assert alice.json()["reviewer"] == "alice" and alice.json()["lease_ttl_s"] > 0
    bob = api.post("/v1/collections/x/review-queue", json={"limit": 2}, headers=keys["bob"])
    mine, theirs = _ids(alice), _ids(bob)
    assert len(mine) == 2 and theirs and not set(mine) & set(theirs)
    # a saved retriever run as a queue skips them too; without "lease" it only looks
    looked = api.post("/v1/retrievers/x:review/execute", json={"inputs": {"limit": 4}},
                      headers=keys["bob"])
    assert set(mine) & set(_ids(looked))
    leased = api.post("/v1/retrievers/x:review/execute",
                      json={"inputs": {"limit": 4}, "lease": True}, headers=keys["bob"])
    assert not set(mine) & set(_ids(leased))

    refused = api.post("/v1/annotations", headers=keys["bob"], json={
        "document_id": mine[0], "collection_id": "x", "label": "confirmed"})
    assert refused.status_code == 409
    assert refused.json()["error"] == "lease_conflict"
    assert f"{mine[0]} is leased to 'alice' until" in refused.json()["message"]
    bulk = api.post("/v1/annotations/bulk", headers=keys["bob"], json={"operations": [
        {"document_id": mine[0], "collection_id": "x", "label": "confirmed"}]})
    assert bulk.json()["failed"] == 1 and "leased to 'alice'" in bulk.json()["results"][0][
        "error"]

    held = api.get("/v1/leases", params={"collection_id": "x"}, headers=keys["alice"])
    assert sorted(lease["document_id"] for lease in held.json()["items"]) == sorted(mine)
    renewed = api.post("/v1/leases/renew", json={"collection_id": "x"}, headers=keys["alice"])
    assert renewed.json()["renewed"] == 2
    made = api.post("/v1/annotations", headers=keys["alice"], json={
        "document_id": mine[0], "collection_id": "x", "label": "confirmed"})
    assert made.status_code == 201, made.text  # the holder's verdict releases the item
    held = api.get("/v1/leases", params={"collection_id": "x"}, headers=keys["alice"])
    assert [lease["document_id"] for lease in held.json()["items"]] == [mine[1]]
    released = api.post("/v1/leases/release", json={"collection_id": "x",
                                                    "document_ids": [mine[1]]},
                        headers=keys["alice"])
    assert released.json()["released"] == 1
    taken = api.post("/v1/annotations", headers=keys["bob"], json={
        "document_id": mine[1], "collection_id": "x", "label": "false_positive"})
    assert taken.status_code == 201, taken.text


def test_image_review_queue_route(review_wb):
    api, keys = client_for(review_wb), _keys(review_wb, "alice", "bob")
    pages = {name: api.post("/v1/collections/x/review-queue",
                            json={"kind": "image-review", "limit": 2}, headers=keys[name])
             for name in ("alice", "bob")}
    docs = {name: {i["document_id"] for i in answer.json()["images"]}
            for name, answer in pages.items()}
    assert docs["alice"] and docs["bob"] and not docs["alice"] & docs["bob"]


def _fill(wb, images=30, boxes=3):
    """More open detections (all under 0.7, no vectors: the diversity stage keeps them all)."""
    ids = []
    now = utcnow()
    confidences = np.linspace(0.05, 0.68, images * boxes)
    with wb.db.write() as conn:
        for n in range(images):
            obj = f"obj_m{n:03d}"
            conn.execute(t.objects.insert().values(
                id=obj, bucket_id="bkt_x", sha256=f"{n:064x}", width=100, height=100,
                format="PNG", size_bytes=1, source=f"{obj}.png",
                metadata={"camera_id": "cam_9", "frame": 100 + n}, created_at=now))
            conn.execute(t.documents.insert().values(
                id=f"doc_{obj}", collection_id="col_x", object_id=obj, extractor_key=KEY,
                features={}, n_detections=boxes, created_at=now))
            for i in range(boxes):
                conn.execute(t.detections.insert().values(
                    id=f"{obj}_{i}", document_id=f"doc_{obj}", collection_id="col_x",
                    object_id=obj, extractor_key=KEY, idx=i, class_name="circle",
                    confidence=float(confidences[n * boxes + i]), x1=10 * i, y1=0,
                    x2=10 * i + 20, y2=30, embedding_id=None))
                ids.append(f"{obj}_{i}")
    return ids


def test_two_reviewers_through_a_real_server_never_get_the_same_item(review_wb):
    """Two threads, each with its own key, page through one queue against ``workbench
    serve`` at the same time, judging each page before asking for the next."""
    wb = review_wb
    _fill(wb)
    queue = wb.retrievers.review_queue("x", 5)
    everything = {h.detection_id for h in wb.retrievers.execute(
        queue.name, {"limit": 5000}).hits}
    keys = _keys(wb, "alice", "bob")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "workbench", "--home", str(wb.home), "serve", "--port", str(port),
         "--no-worker"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    got: dict[str, list[str]] = {"alice": [], "bob": []}
    errors: list[str] = []
    start = threading.Barrier(2)

    def review(name):
        try:
            with httpx.Client(base_url=base, headers=keys[name], timeout=60) as client:
                start.wait()
                while True:
                    answer = client.post("/v1/collections/x/review-queue",
                                         json={"limit": 5, "count": False})
                    assert answer.status_code == 200, answer.text
                    page = _ids(answer)
                    if not page:
                        return
                    got[name] += page
                    verdicts = client.post("/v1/annotations/bulk", json={"operations": [
                        {"document_id": d, "collection_id": "x", "label": "confirmed"}
                        for d in page]})
                    assert verdicts.status_code == 200, verdicts.text
                    assert verdicts.json()["failed"] == 0, verdicts.text
        except Exception as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(f"{name}: {exc!r}")

    try:
        wait_for_docs(server, base, lambda: server.stdout.read())
        threads = [threading.Thread(target=review, args=(n,)) for n in got]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not errors, (errors, server.stdout.read()[-4000:])
    alice, bob = got["alice"], got["bob"]
    assert alice and bob
    assert len(set(alice)) == len(alice) and len(set(bob)) == len(bob)
    assert not set(alice) & set(bob)
    assert set(alice) | set(bob) == everything
