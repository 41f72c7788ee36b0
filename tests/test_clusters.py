"""Cluster runs: every algorithm on small data, reductions, stored runs, the built-in and
LLM labellers (against a real local HTTP server), rename, promote, relabel."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from workbench.clusters import ALGORITHMS, LLMLabeller, cluster_labels, describe, reduce
from workbench.errors import NotFoundError, ValidationError, WorkbenchError


def _blobs(n_per: int = 30, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:3] * 10
    points = np.concatenate([c + rng.normal(scale=0.5, size=(n_per, dim)) for c in centres])
    return points.astype("float32"), np.repeat(np.arange(3), n_per)


PARAMS = {
    "hdbscan": {"min_cluster_size": 5},
    "dbscan": {"eps": 3.0, "min_samples": 5},
    "kmeans": {"n_clusters": 3},
    "agglomerative": {"n_clusters": 3},
    "gaussian_mixture": {"n_components": 3},
    "spectral": {"n_clusters": 3, "n_neighbors": 10},
    "mean_shift": {"bandwidth": 4.0},
    "optics": {"min_samples": 5, "cluster_method": "dbscan", "eps": 3.0},
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_finds_three_blobs(algorithm):
    from sklearn.metrics import adjusted_rand_score

    points, truth = _blobs()
    labels = cluster_labels(points, algorithm, PARAMS[algorithm])
    assert labels.shape == truth.shape
    clustered = labels != -1
    assert clustered.mean() >= 0.8
    assert adjusted_rand_score(truth[clustered], labels[clustered]) >= 0.95


@pytest.mark.parametrize(("algorithm", "params", "message"), [
    ("kmeans", {"n_cluster": 3}, "no parameter 'n_cluster'"),
    ("birch", {}, "not one of"),
    ("dbscan", {"eps": -1}, "dbscan"),
    ("kmeans", {"n_clusters": 500}, "cannot cluster 90 points"),
])
def test_bad_parameters_are_explained(algorithm, params, message):
    points, _ = _blobs()
    with pytest.raises(ValidationError, match=message):
        cluster_labels(points, algorithm, params)


@pytest.mark.parametrize("method", ["pca", "tsne", pytest.param("umap", marks=pytest.mark.slow)])
def test_reductions_keep_the_blobs_apart(method):
    from sklearn.metrics import adjusted_rand_score

    points, truth = _blobs()
    reduced = reduce(points, method, 2)
    assert reduced.shape == (90, 2)
    labels = cluster_labels(reduced, "kmeans", {"n_clusters": 3})
    assert adjusted_rand_score(truth, labels) >= 0.95
    with pytest.raises(ValidationError, match="n_components"):
        reduce(points, method, 20)


def test_builtin_labeller_names_what_stands_out():
    everyone = [{"cluster": 0, "class_name": "triangle", "true_class": None, "area": 100.0,
                 "brightness": 120.0, "confidence": 0.9} for _ in range(20)]
    stars = [{"cluster": 1, "class_name": "triangle", "true_class": "star", "area": 400.0,
              "brightness": 30.0, "confidence": 0.5} for _ in range(5)]
    stats = describe(stars, everyone + stars)
    assert stats["majority_true"] == "star" and stats["name"].endswith("star")
    assert "larger than most" in stats["summary"] and "darker than most" in stats["summary"]
    assert stats["keywords"] == ["triangle", "star"]


# -- a real local OpenAI-compatible endpoint ---------------------------------------------------
class _ChatServer:
    """Answers /v1/chat/completions like an OpenAI-compatible API; can fail first."""

    def __init__(self, content: str, fail_first: int = 0):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body,
                                       "auth": self.headers.get("Authorization")})
                if len(outer.requests) <= fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                answer = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}]}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat():
    servers = []

    def start(content, fail_first=0):
        servers.append(_ChatServer(content, fail_first))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_llm_labeller_speaks_the_openai_chat_format_and_retries(chat):
    server = chat('Sure: {"name": "stars", "summary": "Five-pointed shapes.", '
                  '"keywords": ["star", "pointy"]}', fail_first=1)
    got = LLMLabeller(server.url, "local-model", api_key="k").label({"size": 5})
    assert got == {"name": "stars", "summary": "Five-pointed shapes.",
                   "keywords": ["star", "pointy"], "labeller": "llm:local-model"}
    assert len(server.requests) == 2  # a 500, then the answer
    request = server.requests[-1]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k"
    assert request["body"]["model"] == "local-model"
    assert '"size": 5' in request["body"]["messages"][0]["content"]
    bad = chat("I cannot help with that.")
    with pytest.raises(WorkbenchError, match="no JSON object"):
        LLMLabeller(bad.url, "m").label({})
    with pytest.raises(ValidationError, match="http"):
        LLMLabeller("ftp://x", "m")


# -- the service on hand-made detections ------------------------------------------------------
@pytest.fixture
def clustered(review_wb):
    return review_wb, review_wb.clusters.run("x", "kmeans", {"n_clusters": 2})


def test_a_run_is_stored_with_members_sizes_and_a_projection(clustered):
    wb, run = clustered
    assert run.n_members == 5 and run.noise == 0
    assert sum(c["size"] for c in run.clusters.values()) == 5
    members = wb.clusters.members(run.id)
    assert {m["detection_id"] for m in members} == {
        "obj_a_0", "obj_a_1", "obj_b_0", "obj_b_1", "obj_c_0"}
    by_id = {m["detection_id"]: m["cluster"] for m in members}
    assert by_id["obj_a_0"] == by_id["obj_b_1"]  # nearly the same vector
    assert all(np.isfinite([m["x"], m["y"]]).all() for m in members)
    assert run.seconds["total"] > 0
    assert [r.id for r in wb.clusters.list("x")] == [run.id]

    assert wb.events.recent("cluster.completed")[0]["payload"]["run_id"] == run.id
    with pytest.raises(ValidationError, match="at least 3"):
        wb.clusters.run("x", "kmeans", {"n_clusters": 2},
                        filters={"field": "class", "operator": "eq", "value": "triangle"})


def test_label_rename_relabel_and_promote(clustered, chat, monkeypatch):
    wb, run = clustered
    labelled = wb.clusters.label(run.id)
    assert all(c["labeller"] == "builtin" for c in labelled.clusters.values())
    with pytest.raises(ValidationError, match="WORKBENCH_LLM_URL"):
        wb.clusters.label(run.id, use_llm=True)
    server = chat('{"name": "round things", "summary": "s", "keywords": ["round"]}')
    monkeypatch.setattr(wb.settings, "llm_url", server.url)
    named = wb.clusters.label(run.id)
    assert {c["name"] for c in named.clusters.values()} == {"round things"}
    assert len(server.requests) == len(named.clusters)

    target = next(m for m in wb.clusters.members(run.id) if m["detection_id"] == "obj_b_1")
    cluster = target["cluster"]
    renamed = wb.clusters.rename(run.id, cluster, "roundish")
    assert renamed.name_of(cluster) == "roundish"
    with pytest.raises(NotFoundError, match="no cluster 9"):
        wb.clusters.rename(run.id, 9, "x")
    assert wb.clusters.label(run.id).name_of(cluster) == "roundish"  # a rename sticks

    size = renamed.clusters[str(cluster)]["size"]
    assert wb.clusters.relabel(run.id, cluster, "disc") == {"would_annotate": size,
                                                            "written": 0}
    assert wb.annotations.list(collection_id="col_x").total == 0
    done = wb.clusters.relabel(run.id, cluster, "disc", confirm=True)
    assert done["written"] == size
    notes = wb.annotations.list(collection_id="col_x", limit=50).items
    assert {a.payload["true_class"] for a in notes} == {"disc"}
    assert {a.payload["cluster_run_id"] for a in notes} == {run.id}
    assert {a.label for a in notes} == {"corrected"}

    wb.references.create("refs", "x")
    wb.references.add("refs", ["obj_b_0"])
    wb.taxonomies.create("shapes", "refs")
    before = wb.references.get("refs").version
    # A node the taxonomy cannot take is refused before its members join the set.
    with pytest.raises(ValidationError, match="is flat: a node cannot have a parent"):
        wb.clusters.promote(run.id, cluster, "shapes", parent="shapes")
    with pytest.raises(ValidationError):
        wb.clusters.promote(run.id, cluster, "shapes", node="unknown")  # a reserved name
    assert wb.references.get("refs").version == before
    assert "roundish" not in wb.references.class_counts("refs")
    promoted = wb.clusters.promote(run.id, cluster, "shapes")
    assert promoted["node"] == "roundish" and promoted["references_added"] == size
    taxonomy = wb.taxonomies.get("shapes")
    assert [n.name for n in taxonomy.nodes] == ["triangle", "roundish"]
    assert taxonomy.version == 2
    assert wb.references.class_counts("refs")["roundish"] == size


def test_builtin_labeller_counts_reviewed_share_among_reviewed_members_only():
    members = [{"cluster": 0, "class_name": "triangle", "true_class": "star" if i < 2 else None,
                "area": 100.0, "confidence": 0.8} for i in range(10)]
    stats = describe(members, members)
    assert stats["name"] == "star" and "reviewed as star (100% of reviewed)" in stats["summary"]
    assert stats["keywords"] == ["triangle", "star"]
