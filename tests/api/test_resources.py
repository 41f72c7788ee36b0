"""Each resource's routes over the hand-made review workspace (review_wb): status codes,
payloads, pages with cursors, idempotent creation."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.api.conftest import client_for
from tests.conftest import image_bytes, noise_image_bytes

SCHEMA = {"properties": {"image": {"type": "image", "required": True},
                         "camera_id": {"type": "text"}}}


def _upload(api, bucket, files, metadata=None, headers=None):
    parts = [("file", (name, data, "image/jpeg")) for name, data in files]
    form = {"metadata": json.dumps(metadata)} if metadata is not None else {}
    return api.post(f"/v1/buckets/{bucket}/objects", files=parts, data=form,
                    headers=headers or {})


def test_buckets_create_list_get(api):
    made = api.post("/v1/buckets", json={"name": "cams", "bucket_schema": SCHEMA})
    assert made.status_code == 201
    body = made.json()
    assert body["bucket_schema"] == SCHEMA and body["objects"] == 0
    assert made.headers["Location"] == f"/v1/buckets/{body['bucket_id']}"
    assert [b["name"] for b in api.get("/v1/buckets").json()] == ["x", "cams"]
    assert api.get(f"/v1/buckets/{body['bucket_id']}").json()["name"] == "cams"
    assert api.get("/v1/buckets/cams").json()["bucket_id"] == body["bucket_id"]


def test_objects_upload_with_metadata(api, review_wb):
    api.post("/v1/buckets", json={"name": "cams", "bucket_schema": SCHEMA})
    answer = _upload(api, "cams", [("a.jpg", noise_image_bytes(1)), ("b.jpg",
                                                                      noise_image_bytes(2))],
                     {"camera_id": "lobby"})
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["accepted"] == 2 and [o["filename"] for o in body["objects"]] == ["a.jpg",
                                                                                  "b.jpg"]
    stored = review_wb.buckets.get_object(body["objects"][0]["object_id"])
    assert stored.metadata == {"camera_id": "lobby"}
    assert api.get("/v1/buckets/cams").json()["objects"] == 2
    assert not any(review_wb.settings.staging_dir.iterdir())  # staged files are removed


def test_upload_errors(api, review_wb):
    api.post("/v1/buckets", json={"name": "cams", "bucket_schema": SCHEMA})
    bad_meta = _upload(api, "cams", [("a.jpg", image_bytes())], {"camera": "x"})
    assert bad_meta.status_code == 422 and "'camera' is not in the schema" in \
        bad_meta.json()["message"]
    not_image = _upload(api, "cams", [("a.jpg", b"nope")])
    assert not_image.status_code == 422 and "a.jpg: not an image" in not_image.json()["message"]
    assert _upload(api, "nope", [("a.jpg", image_bytes())]).status_code == 404
    text = api.post("/v1/buckets/cams/objects", content=b"a.jpg",
                    headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and text.json()["error"] == "unsupported_media_type"
    assert _upload(api, "cams", []).status_code in (415, 422)


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(review_wb):
    api = client_for(review_wb, max_upload_bytes=10_000)
    api.post("/v1/buckets", json={"name": "cams"})
    big = noise_image_bytes(3, size=(400, 300))
    assert len(big) > 10_000
    answer = _upload(api, "cams", [("big.jpg", big)])
    assert answer.status_code == 413 and answer.json()["error"] == "payload_too_large"
    assert answer.json()["details"] == {"limit_bytes": 10_000}
    assert review_wb.buckets.count_objects(review_wb.buckets.get("cams")) == 0
    assert not any(review_wb.settings.staging_dir.iterdir())


def test_collections_create_list_get(api):
    made = api.post("/v1/collections", json={
        "name": "detected", "feature_extractors": [{"feature_extractor_name": "yolo_detector",
                                                    "version": "1.0.0"}],
        "source": {"type": "bucket", "bucket_ids": ["x"]}})
    assert made.status_code == 201, made.json()
    body = made.json()
    assert body["source"]["bucket_ids"] == ["bkt_x"]
    assert body["feature_extractors"] == [{"feature_extractor_name": "yolo_detector",
                                           "version": "1.0.0"}]
    assert [c["name"] for c in api.get("/v1/collections").json()] == ["x", "detected"]
    assert api.get("/v1/collections/detected").json()["collection_id"] == \
        body["collection_id"]
    unknown = api.post("/v1/collections", json={"name": "y", "source": {"bucket_ids": ["no"]}})
    assert unknown.status_code == 404


def test_batches_trigger_answer_at_once_with_the_job_url(api):
    answer = api.post("/v1/buckets/x/batches/trigger", json={"collection_ids": ["col_x"]})
    assert answer.status_code == 202, answer.json()
    batch = answer.json()["batches"][0]
    assert batch["status"] == "queued" and batch["kind"] == "detect"
    assert answer.headers["Location"] == batch["url"] == f"/v1/jobs/{batch['batch_id']}"
    assert api.get(batch["url"]).json()["status"] == "queued"
    status = api.get(f"/v1/batches/{batch['batch_id']}")
    assert status.status_code == 200 and status.json()["batch_id"] == batch["batch_id"]
    assert status.json()["params"]["collection_id"] == "col_x"
    cancelled = api.post(f"/v1/batches/{batch['batch_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.get(f"/v1/batches/{batch['batch_id']}").json()["status"] == "cancelled"


def test_a_batch_of_a_collection_that_does_not_read_the_bucket_is_refused(api):
    api.post("/v1/buckets", json={"name": "other"})
    answer = api.post("/v1/buckets/other/batches/trigger", json={"collection_ids": ["x"]})
    assert answer.status_code == 422 and "does not read bucket 'other'" in \
        answer.json()["message"]
    assert api.get("/v1/batches/job_nope").status_code == 404


def test_jobs_page_with_a_cursor(api, review_wb):
    ids = {review_wb.detection.submit("x").id for _ in range(5)}
    first = api.get("/v1/jobs", params={"limit": 2}).json()
    assert first["total"] == 5 and len(first["items"]) == 2 and first["next_cursor"]
    seen = [j["id"] for j in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = api.get("/v1/jobs", params={"limit": 2, "cursor": cursor}).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == 5 and set(seen) == ids
    assert api.get("/v1/jobs", params={"status": "done"}).json()["total"] == 0
    forged = api.get("/v1/jobs", params={"cursor": "garbage"})
    assert forged.status_code == 422 and "cursor" in forged.json()["message"]
    assert api.get(f"/v1/jobs/{seen[0]}").json()["url"] == f"/v1/jobs/{seen[0]}"
    assert api.get("/v1/jobs/job_nope").status_code == 404


def test_retrievers_save_get_execute(api):
    stages = [{"stage_type": "filter", "config": {"filters": {"AND": [
        {"field": "confidence", "operator": "lt", "value": 0.7}]}}},
        {"stage_type": "sort", "config": {"by": "confidence"}}]
    made = api.post("/v1/retrievers", json={"name": "review", "collection_id": "x",
                                            "stages": stages})
    assert made.status_code == 201, made.json()
    assert api.get("/v1/retrievers/review").json()["retriever_id"] == made.json()["retriever_id"]
    assert [r["name"] for r in api.get("/v1/retrievers").json()] == ["review"]
    run = api.post("/v1/retrievers/review/execute", json={"inputs": {}})
    assert run.status_code == 200
    body = run.json()
    assert body["execution_id"].startswith("exec")
    assert [r["document_id"] for r in body["results"]] == ["obj_b_1", "obj_a_1", "obj_b_0",
                                                          "obj_c_0"]
    logged = api.get(f"/v1/retrievers/executions/{body['execution_id']}").json()
    assert logged["result_ids"] == [r["document_id"] for r in body["results"]]
    misspelled = api.post("/v1/retrievers", json={"name": "bad", "collection_id": "x",
                                                  "stages": [{"stage_type": "filter", "config": {
                                                      "filters": {"AND": [{
                                                          "field": "confidance",
                                                          "operator": "lt", "value": 1}]}}}]})
    assert misspelled.status_code == 422 and "did you mean 'confidence'" in \
        misspelled.json()["message"]
    assert api.post("/v1/retrievers/nope/execute", json={}).status_code == 404


def test_idempotent_creation_replays_and_refuses_another_body(api, review_wb):
    headers = {"Idempotency-Key": "bucket-1"}
    first = api.post("/v1/buckets", json={"name": "cams"}, headers=headers)
    again = api.post("/v1/buckets", json={"name": "cams"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = api.post("/v1/buckets", json={"name": "cams2"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"
    assert [b.name for b in review_wb.buckets.list()] == ["x", "cams"]
    # an upload retried with its key stores its images once and answers the same
    up = {"Idempotency-Key": "upload-1"}
    files = [("a.jpg", noise_image_bytes(7))]
    one = _upload(api, "cams", files, headers=up)
    two = _upload(api, "cams", files, headers=up)
    assert one.status_code == two.status_code == 201 and one.json() == two.json()
    assert review_wb.buckets.count_objects(review_wb.buckets.get("cams")) == 1
    assert _upload(api, "cams", [("a.jpg", noise_image_bytes(8))],
                   headers=up).status_code == 409


def test_a_failed_request_releases_its_idempotency_key(api):
    headers = {"Idempotency-Key": "k"}
    assert api.post("/v1/buckets", json={"name": "x"}, headers=headers).status_code == 409
    assert api.post("/v1/buckets", json={"name": "fresh"}, headers=headers).status_code == 201


def test_idempotency_keys_belong_to_their_sender(keyed, review_wb):
    client, tokens = keyed
    for role in ("admin", "reviewer"):
        answer = client.post("/v1/annotations", headers={**tokens[role],
                                                         "Idempotency-Key": "same"},
                             json={"document_id": "obj_a_0", "collection_id": "col_x",
                                   "label": "confirmed"})
        assert answer.status_code == 201
    assert review_wb.annotations.list().total == 2


def test_a_key_whose_first_request_died_unanswered_is_free_again(api, review_wb):
    from datetime import timedelta

    from workbench.api.idempotency import request_hash
    from workbench.store import tables as t
    from workbench.store.metadata import utcnow

    route = "POST /v1/buckets"
    digest = request_hash(route, {"name": "a", "bucket_schema": None, "description": ""})

    def pending(key, age):
        with review_wb.db.write() as conn:
            conn.execute(t.api_idempotency.insert().values(
                principal="", key=key, route=route, request_hash=digest,
                created_at=utcnow() - age))

    pending("recent", timedelta(seconds=5))
    busy = api.post("/v1/buckets", json={"name": "a"}, headers={"Idempotency-Key": "recent"})
    assert busy.status_code == 409 and "still being served" in busy.json()["message"]
    pending("dead", timedelta(hours=1))
    taken = api.post("/v1/buckets", json={"name": "a"}, headers={"Idempotency-Key": "dead"})
    assert taken.status_code == 201


@pytest.fixture
def image_server():
    """A real HTTP server on loopback that serves one image at /frame.jpg."""
    data = noise_image_bytes(11)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            found = self.path == "/frame.jpg"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(data) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_objects_by_url_are_an_ingest_job_answered_at_once(api, review_wb, image_server):
    api.post("/v1/buckets", json={"name": "cams", "bucket_schema": SCHEMA})
    answer = api.post("/v1/buckets/cams/objects", json={
        "metadata": {"camera_id": "cam_lobby_01"},
        "blobs": [{"property": "image", "type": "image",
                   "data": {"url": f"{image_server}/frame.jpg"}}]})
    assert answer.status_code == 202, answer.json()
    job = answer.json()
    assert job["kind"] == "ingest" and job["status"] == "queued"
    assert answer.headers["Location"] == job["url"] == f"/v1/jobs/{job['job_id']}"
    claimed = review_wb.jobs.claim("test-worker", job["job_id"])
    review_wb.jobs.run_claimed(claimed, "test-worker")
    done = api.get(job["url"]).json()
    assert done["status"] == "done" and done["result"]["accepted"] == 1
    stored = review_wb.buckets.objects(review_wb.buckets.get("cams"))
    assert [o.metadata for o in stored] == [{"camera_id": "cam_lobby_01"}]


def test_objects_by_url_refuse_local_files_and_misspelled_keys(api, tmp_path):
    api.post("/v1/buckets", json={"name": "cams"})
    local = api.post("/v1/buckets/cams/objects", json={"blobs": [{"data": {
        "url": (tmp_path / "secret.jpg").as_uri()}}]})
    assert local.status_code == 422 and "http:// or https://" in local.json()["message"]
    misspelled = api.post("/v1/buckets/cams/objects", json={"blobs": [{"dat": {"url": "x"}}]})
    assert misspelled.status_code == 422
    assert "blobs.0: unknown field 'dat' — did you mean 'data'?" in \
        misspelled.json()["message"]
    bad_meta = api.post("/v1/buckets/cams/objects", json={
        "metadata": {"camera": "x"}, "blobs": [{"data": {"url": "http://127.0.0.1:9/a.jpg"}}]})
    assert bad_meta.status_code == 422 and "'camera' is not in the schema" in \
        bad_meta.json()["message"]
