"""The loop's routes through the TestClient: extractors and models (uploads), exports (a job,
then the zip), training runs, evaluations and promotion, reference sets, taxonomies, cluster
runs and webhooks — status codes, validation errors, jobs answered 202 with their URL, and a
reviewer key refused on admin routes."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.api.conftest import client_for
from tests.extractors.test_custom import make_extractor
from tests.test_export import ewb  # noqa: F401  (the export tests' reviewed workspace)
from workbench.api.keys import KeyService
from workbench.store import tables as t


def run_queued(wb, job_id: str):
    """Run a job the API queued, here, as a worker would."""
    claimed = wb.jobs.claim("tests", job_id)
    assert claimed is not None, f"job {job_id} is not claimable"
    return wb.jobs.run_claimed(claimed, "tests")


def keyed_client(wb):
    keys = KeyService(wb.db)
    _, admin = keys.create("ops", "admin")
    _, reviewer = keys.create("alice", "reviewer")
    return client_for(wb, require_key=True), {"admin": {"X-API-Key": admin},
                                              "reviewer": {"X-API-Key": reviewer}}


def assert_error(answer, status: int, code: str, words: str):
    body = answer.json()
    assert answer.status_code == status, body
    assert body["error"] == code and words in body["message"], body


# -- extractors and models -------------------------------------------------------------------
def test_extractors_and_model_uploads(ewb, starter_weights, tmp_path):  # noqa: F811
    client, keys = keyed_client(ewb)
    listed = client.get("/v1/extractors", headers=keys["reviewer"]).json()
    assert [e["extractor"] for e in listed] == ["yolo_detector@1.0.0"]
    assert "workbench://yolo_detector@1.0.0/detection_embedding" in [
        f["feature_uri"] for f in listed[0]["features"]]

    weights = starter_weights.read_bytes()

    def upload(data, name="best.pt", headers=keys["admin"], **fields):
        return client.post("/v1/models", files={"file": (name, data)}, data=fields,
                           headers=headers)

    assert_error(upload(weights, headers=keys["reviewer"]), 403, "forbidden", "admin key")
    assert_error(upload(b"x", name="notes.txt"), 422, "validation_error", "not YOLO weights")
    assert_error(upload(b"not a checkpoint"), 422, "validation_error", "best.pt")
    assert_error(upload(weights, colour="red"), 422, "validation_error",
                 "unknown form field 'colour'")
    made = upload(weights, version="2.0.0", notes="fine-tuned elsewhere")
    assert made.status_code == 201, made.json()
    assert made.json()["extractor"] == "yolo_detector@2.0.0"
    assert made.headers["Location"] == "/v1/models/yolo_detector/2.0.0"
    assert_error(upload(weights, version="2.0.0"), 409, "already_exists", "registered already")
    got = client.get("/v1/models/yolo_detector/latest", headers=keys["reviewer"]).json()
    assert got["version"] == "2.0.0" and got["notes"] == "fine-tuned elsewhere"
    assert [m["version"] for m in client.get("/v1/models", params={"name": "yolo_detector"},
                                             headers=keys["reviewer"]).json()] == ["1.0.0",
                                                                                   "2.0.0"]
    assert_error(client.get("/v1/models/yolo_detector/9.0.0", headers=keys["reviewer"]),
                 404, "not_found", "no extractor yolo_detector@9.0.0")
    assert not any(ewb.settings.staging_dir.iterdir())  # uploads are not kept

    custom = make_extractor(tmp_path).read_bytes()
    registered = client.post("/v1/extractors", files={"file": ("colour.zip", custom)},
                             headers=keys["admin"])
    assert registered.status_code == 201, registered.json()
    assert registered.json()["extractor"] == "colour_stats@0.1.0"
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "no manifest")
    assert_error(client.post("/v1/extractors", files={"file": ("x.zip", empty.getvalue())},
                             headers=keys["admin"]), 422, "validation_error",
                 "exactly one extractor.json")


# -- exports and training runs ---------------------------------------------------------------
def test_an_export_is_a_job_then_a_zip(ewb):  # noqa: F811
    client, keys = keyed_client(ewb)
    body = {"collection_id": "c", "options": {"val_fraction": 0.3}}
    assert_error(client.post("/v1/exports", json=body, headers=keys["reviewer"]), 403,
                 "forbidden", "admin")
    assert_error(client.post("/v1/exports", json={**body, "options": {"val_fracton": 0.3}},
                             headers=keys["admin"]), 422, "validation_error",
                 "did you mean 'val_fraction'")
    assert_error(client.post("/v1/exports", json={**body, "options": {"val_fraction": 2}},
                             headers=keys["admin"]), 422, "validation_error",
                 "val_fraction must be in [0, 1]")
    assert_error(client.post("/v1/exports", json={"collection_id": "nope"},
                             headers=keys["admin"]), 404, "not_found", "no collection 'nope'")
    queued = client.post("/v1/exports", json=body, headers=keys["admin"])
    assert queued.status_code == 202, queued.json()
    export = queued.json()
    assert export["status"] == "queued" and export["url"] == f"/v1/jobs/{export['id']}"
    assert export["download_url"] is None
    download = f"/v1/exports/{export['export_id']}/download"
    assert_error(client.get(download, headers=keys["reviewer"]), 409, "not_ready", "queued")
    assert run_queued(ewb, export["id"]).status == "done"
    done = client.get(f"/v1/exports/{export['id']}", headers=keys["reviewer"]).json()
    assert done["status"] == "done" and done["download_url"] == download
    assert sum(done["result"]["images"].values()) >= 1 and done["result"]["zip_bytes"] > 0
    zipped = client.get(download, headers=keys["reviewer"])
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    assert f"{export['id']}/data.yaml" in names and any("/labels/" in n for n in names)
    assert_error(client.get(f"/v1/exports/{export['id']}x", headers=keys["reviewer"]), 404,
                 "not_found", "no job with id")


def test_a_training_run_is_queued_read_and_cancelled(ewb):  # noqa: F811
    client, keys = keyed_client(ewb)
    body = {"collection_id": "c", "train": {"epochs": 1, "imgsz": 64}}
    assert_error(client.post("/v1/training-runs", json={**body, "train": {"epoch": 1}},
                             headers=keys["admin"]), 422, "validation_error",
                 "did you mean 'epochs'")
    assert_error(client.post("/v1/training-runs", json={**body, "train": {"epochs": 0}},
                             headers=keys["admin"]), 422, "validation_error",
                 "epochs must be at least 1")
    assert_error(client.post("/v1/training-runs", json=body, headers=keys["reviewer"]), 403,
                 "forbidden", "admin")
    queued = client.post("/v1/training-runs", json=body, headers=keys["admin"])
    assert queued.status_code == 202, queued.json()
    run = queued.json()
    assert run["kind"] == "train" and run["epochs"] == [] and run["version"] is None
    assert queued.headers["Location"] == f"/v1/training-runs/{run['id']}"
    read = client.get(f"/v1/training-runs/{run['id']}", headers=keys["reviewer"]).json()
    assert read["status"] == "queued" and read["params"]["train"]["epochs"] == 1
    assert_error(client.post(f"/v1/training-runs/{run['id']}/cancel",
                             headers=keys["reviewer"]), 403, "forbidden", "admin")
    cancelled = client.post(f"/v1/training-runs/{run['id']}/cancel", headers=keys["admin"])
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    export = client.post("/v1/exports", json={"collection_id": "c"}, headers=keys["admin"])
    assert_error(client.get(f"/v1/training-runs/{export.json()['id']}",
                            headers=keys["reviewer"]), 404, "not_found", "not a training run")


def test_evaluate_then_promote(ewb, starter_weights):  # noqa: F811
    """Version 2.0.0 (the same weights, the same boxes) is scored beside 1.0.0 on the complete
    images: no gain, so the gate holds it back until a reason is given."""
    ewb.registry.register_yolo(starter_weights, version="2.0.0")
    complete = sorted(ewb.truth.images(ewb.collections.get("c").id, states=["complete"]))
    with ewb.db.write() as conn:
        for table in (t.documents, t.detections):
            rows = [dict(r._mapping) for r in conn.execute(table.select())]
            for row in rows:
                row["id"] = row["id"].replace("doc_", "v2_")
                row["extractor_key"] = "yolo_detector@2.0.0"
                if "document_id" in row:
                    row["document_id"] = row["document_id"].replace("doc_", "v2_")
            conn.execute(table.insert(), rows)
    client, keys = keyed_client(ewb)
    body = {"collection_id": "c", "candidate_version": "2.0.0", "base_version": "1.0.0",
            "image_ids": complete}
    assert_error(client.post("/v1/evaluations", json={**body, "gate": {"min_gain": 0}},
                             headers=keys["admin"]), 422, "validation_error",
                 "unknown field 'min_gain'")
    assert_error(client.post("/v1/evaluations", json={**body, "candidate_version": "1.0.0"},
                             headers=keys["admin"]), 422, "validation_error",
                 "two different versions")
    made = client.post("/v1/evaluations", json=body, headers=keys["admin"])
    assert made.status_code == 201, made.json()
    record = made.json()
    assert record["candidate_key"] == "yolo_detector@2.0.0" and not record["decision"]["promote"]
    latest = client.get("/v1/evaluations/latest", params={"collection_id": "c"},
                        headers=keys["reviewer"]).json()
    assert latest["id"] == record["id"]
    assert_error(client.post("/v1/collections/c/promote", json={"version": "2.0.0"},
                             headers=keys["admin"]), 422, "validation_error",
                 "did not pass the promotion gate")
    assert_error(client.post("/v1/collections/c/promote", json={"version": "2.0.0",
                                                                "reason": "same model"},
                             headers=keys["reviewer"]), 403, "forbidden", "admin")
    promoted = client.post("/v1/collections/c/promote",
                           json={"version": "2.0.0", "reason": "same model"},
                           headers=keys["admin"])
    assert promoted.status_code == 200, promoted.json()
    assert promoted.json()["to_version"] == "2.0.0" and promoted.json()["author"] == "ops"
    assert ewb.collections.get("c").active_version == "2.0.0"


# -- reference sets, taxonomies, clusters ----------------------------------------------------
@pytest.fixture
def reviewed(review_wb):
    for det, label, payload in (("obj_a_0", "confirmed", {}),
                                ("obj_a_1", "corrected", {"true_class": "hexagon"}),
                                ("obj_b_0", "confirmed", {})):
        review_wb.annotations.create(document_id=det, collection_id="col_x", label=label,
                                     payload=payload)
    return review_wb


def test_reference_sets_and_taxonomies(reviewed):
    client, keys = keyed_client(reviewed)
    made = client.post("/v1/reference-sets", json={"name": "verified", "collection_id": "x"},
                       headers=keys["admin"])
    assert made.status_code == 201, made.json()
    assert made.json()["feature_uri"].endswith("@1.0.0/detection_embedding")
    assert_error(client.post("/v1/reference-sets/verified/promote",
                             json={"labels": ["false_positive"]}, headers=keys["admin"]),
                 422, "validation_error", "labels.0")
    promoted = client.post("/v1/reference-sets/verified/promote", json={},
                           headers=keys["admin"]).json()
    assert promoted["added"] == 3
    assert client.get("/v1/reference-sets/verified", headers=keys["reviewer"]).json()[
        "classes"] == {"circle": 1, "hexagon": 1, "triangle": 1}

    taxonomy = {"taxonomy_name": "object-catalog", "taxonomy_type": "flat",
                "reference_set": "verified", "threshold": 0.95, "top_k": 1,
                "collection_id": "x", "execution_mode": "materialize"}
    assert_error(client.post("/v1/taxonomies", json={**taxonomy, "retriever_id": "r"},
                             headers=keys["admin"]), 422, "validation_error",
                 "unknown field 'retriever_id'")
    assert_error(client.post("/v1/taxonomies", json={**taxonomy, "execution_mode": "later"},
                             headers=keys["admin"]), 422, "validation_error",
                 "execution_mode")
    assert_error(client.post("/v1/taxonomies", json=taxonomy, headers=keys["reviewer"]),
                 403, "forbidden", "admin")
    created = client.post("/v1/taxonomies", json=taxonomy, headers=keys["admin"])
    assert created.status_code == 201, created.json()
    tax_id = created.json()["taxonomy_id"]
    assert [n["name"] for n in created.json()["nodes"]] == ["circle", "hexagon", "triangle"]
    applied = client.get("/v1/collections/x/taxonomy-applications",
                         headers=keys["reviewer"]).json()
    assert applied == {"taxonomy_applications": [{"taxonomy_id": tax_id, "taxonomy_name":
                                                  "object-catalog",
                                                  "execution_mode": "materialize"}]}
    changed = client.post("/v1/collections/x/taxonomy-applications",
                          json={"taxonomy_id": tax_id, "execution_mode": "on_demand"},
                          headers=keys["admin"])
    assert changed.status_code == 201
    assert changed.json()["taxonomy_applications"][0]["execution_mode"] == "on_demand"

    assert_error(client.post(f"/v1/taxonomies/{tax_id}/apply",
                             json={"execution_mode": "materialize"}, headers=keys["admin"]),
                 422, "validation_error", "execution_mode")
    queued = client.post(f"/v1/taxonomies/{tax_id}/apply",
                         json={"execution_mode": "retroactive", "collection_id": "x"},
                         headers=keys["admin"])
    assert queued.status_code == 202, queued.json()
    job = queued.json()
    assert job["kind"] == "taxonomy" and queued.headers["Location"] == job["url"]
    assert run_queued(reviewed, job["job_id"]).result["classified"] == 5
    page = client.get(f"/v1/taxonomies/{tax_id}/assignments", params={"limit": 2},
                      headers=keys["reviewer"]).json()
    assert len(page["items"]) == 2 and page["total"] == 5 and page["next_cursor"]
    assert sum(client.get(f"/v1/taxonomies/{tax_id}", headers=keys["reviewer"]).json()[
        "labels"].values()) == 5


def test_cluster_runs(reviewed):
    client, keys = keyed_client(reviewed)
    body = {"collection_id": "x", "cluster_name": "unknown-objects",
            "feature_uri": "workbench://yolo_detector@1.0.0/detection_embedding",
            "algorithm": {"name": "kmeans", "params": {"n_clusters": 2}}}
    assert_error(client.post("/v1/clusters", json={**body, "feature_uri":
                                                   "workbench://yolo_detector@1.0.0/detections"},
                             headers=keys["admin"]), 422, "validation_error",
                 "clusters group detection embeddings")
    assert_error(client.post("/v1/clusters", json={**body, "algoritm": {}},
                             headers=keys["admin"]), 422, "validation_error",
                 "did you mean 'algorithm'")
    assert_error(client.post("/v1/clusters", json=body, headers=keys["reviewer"]), 403,
                 "forbidden", "admin")
    queued = client.post("/v1/clusters", json=body, headers=keys["admin"])
    assert queued.status_code == 202, queued.json()
    run_id = run_queued(reviewed, queued.json()["job_id"]).result["run_id"]
    listed = client.get("/v1/clusters", params={"collection_id": "x"},
                        headers=keys["reviewer"]).json()
    assert [r["cluster_run_id"] for r in listed["items"]] == [run_id]
    assert_error(client.post(f"/v1/clusters/{run_id}/label", json={"names": {"a": "x"}},
                             headers=keys["admin"]), 422, "validation_error", "cluster number")
    members = reviewed.clusters.members(run_id)
    cluster = next(m["cluster"] for m in members if m["detection_id"] == "obj_b_0")
    labelled = client.post(f"/v1/clusters/{run_id}/label",
                           json={"names": {str(cluster): "pyramids"}}, headers=keys["admin"])
    assert labelled.status_code == 200, labelled.json()
    assert labelled.json()["clusters"][str(cluster)]["name"] == "pyramids"

    reviewed.references.create("refs", "x")
    reviewed.references.add("refs", ["obj_a_0"])
    reviewed.taxonomies.create("shapes", "refs")
    promoted = client.post(f"/v1/clusters/{run_id}/promote",
                           json={"cluster": cluster, "taxonomy_id": "shapes"},
                           headers=keys["admin"])
    assert promoted.status_code == 200, promoted.json()
    assert promoted.json()["node"] == "pyramids" and promoted.json()["taxonomy_version"] == 2
    assert_error(client.post(f"/v1/clusters/{run_id}/promote",
                             json={"cluster": 99, "taxonomy_id": "shapes"},
                             headers=keys["admin"]), 404, "not_found", "no member")


# -- webhooks --------------------------------------------------------------------------------
def test_webhooks_deliveries_and_redelivery(review_wb):
    client, keys = keyed_client(review_wb)
    body = {"webhook_name": "detection-review-events", "url": "https://example.com/hooks",
            "events": ["annotation.created", "annotation.updated", "batch.completed"]}
    assert_error(client.post("/v1/webhooks", json=body, headers=keys["reviewer"]), 403,
                 "forbidden", "admin")
    assert_error(client.post("/v1/webhooks", json={**body, "events": ["annotation.made"]},
                             headers=keys["admin"]), 422, "validation_error",
                 "unknown event type")
    assert_error(client.post("/v1/webhooks", json={**body, "url": "ftp://x"},
                             headers=keys["admin"]), 422, "validation_error", "http")
    made = client.post("/v1/webhooks", json=body, headers=keys["admin"])
    assert made.status_code == 201, made.json()
    hook = made.json()
    assert hook["secret"].startswith("whsec_")
    assert hook["secret_hint"] == "…" + hook["secret"][-4:]
    assert "secret" not in client.get("/v1/webhooks", headers=keys["admin"]).json()[0]
    client.post("/v1/annotations", json={"document_id": "obj_a_0", "collection_id": "x",
                                         "label": "confirmed"}, headers=keys["reviewer"])
    deliveries = client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries",
                            headers=keys["admin"]).json()
    (delivery,) = deliveries["items"]
    assert delivery["event_type"] == "annotation.created" and delivery["status"] == "pending"
    again = client.post(f"/v1/webhooks/deliveries/{delivery['id']}/redeliver",
                        headers=keys["admin"])
    assert again.status_code == 202 and again.json()["status"] == "pending"
    assert_error(client.post("/v1/webhooks/deliveries/dlv_nope/redeliver",
                             headers=keys["admin"]), 404, "not_found", "no delivery")
    assert_error(client.get("/v1/webhooks/nope", headers=keys["admin"]), 404, "not_found",
                 "no webhook 'nope'")


# -- the tutorial's search stage --------------------------------------------------------------
def test_the_tutorials_search_stage_is_taken(api):
    from tests.conftest import URI

    def stage(parameters):
        return {"name": "similar", "collection_id": "x", "replace": True, "stages": [
            {"stage_name": "low_confidence", "stage_type": "filter",
             "config": {"stage_id": "feature_search", "parameters": parameters}}]}

    search = {"searches": [{"feature_uri": URI, "query": "{{INPUT.query}}"}],
              "filters": {"AND": [{"field": "confidence", "operator": "lt", "value": 0.9}]}}
    saved = api.post("/v1/retrievers", json=stage(search))
    assert saved.status_code == 201, saved.json()
    assert [s["stage_type"] for s in saved.json()["stages"]] == ["filter", "feature_search"]
    run = api.post("/v1/retrievers/similar/execute", json={"inputs": {"query": "obj_a_0"}})
    assert run.status_code == 200, run.json()
    found = [r["detection_id"] for r in run.json()["results"]]
    assert found and "obj_a_0" not in found and "obj_b_1" in found  # nearest, conf < 0.9
    assert_error(api.post("/v1/retrievers", json=stage({"searchs": []})), 422,
                 "validation_error", "did you mean 'searches'")


def test_every_admin_route_refuses_a_reviewer_key(review_wb):
    """Found from the app's own routes, so that a new admin route is covered too."""
    from workbench.api.auth import admin
    from workbench.api.routes import ROUTERS

    client, keys = keyed_client(review_wb)
    guarded = [(method, "/v1" + route.path) for router in ROUTERS for route in router.routes
               if any(d.call is admin for d in route.dependant.dependencies)
               for method in route.methods]
    assert len(guarded) >= 29 and ("POST", "/v1/models") in guarded
    for method, path in guarded:
        answer = client.request(method, path.replace("{", "").replace("}", ""), json={},
                                headers=keys["reviewer"])
        assert answer.status_code == 403, (method, path, answer.json())
        assert answer.json()["error"] == "forbidden"
