"""Cluster runs: find groups among detection embeddings that nobody has labelled yet.

A run takes the detections that pass a filter (the retriever filter syntax: a taxonomy's
``unknown``, a verdict, a class, a confidence range), optionally reduces their embeddings
(``pca``, ``umap``, ``tsne``), clusters them with one of scikit-learn's algorithms, and always
makes a 2D projection for the scatter view. Runs are stored with their members, sizes and
noise. A cluster can then be labelled (the built-in labeller from member statistics, or an
LLM through an OpenAI-compatible endpoint), renamed, promoted to a taxonomy node (its members
become references), or relabelled as a class: ``corrected`` annotations with the run as
provenance, which the next training export takes up.

UMAP compiles with numba for about a minute in each new process: the app's worker runs
clustering jobs so that it pays this once; PCA first keeps UMAP itself fast.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from workbench.errors import JobFailed, NotFoundError, ValidationError, WorkbenchError
from workbench.events import record_event
from workbench.images import load_image
from workbench.paging import Keyset, Page
from workbench.params import ALGORITHMS, REDUCTIONS, ClusterParams
from workbench.store import tables as t
from workbench.store.metadata import as_utc, new_id, utcnow
from workbench.taxonomies import parse_nodes

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.jobs import JobContext, ProgressListener

NOISE = -1
MAX_MEMBERS = 50_000
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    # Leaf clusters: a new category is usually a small, tight group next to big known ones,
    # which HDBSCAN's default ("eom") tends to swallow into one large cluster.
    "hdbscan": {"min_cluster_size": 5, "cluster_selection_method": "leaf"},
    "dbscan": {"eps": 0.5, "min_samples": 5},
    "kmeans": {"n_clusters": 8, "n_init": "auto"},
    "agglomerative": {"n_clusters": 8},
    "gaussian_mixture": {"n_components": 8},
    "spectral": {"n_clusters": 8, "affinity": "nearest_neighbors"},
    "mean_shift": {},
    "optics": {"min_samples": 5},
}


@dataclass(frozen=True)
class ClusterRun:
    """A stored cluster run: its choices, timings and clusters (sizes and labels, not members)."""

    id: str
    collection_id: str
    feature_uri: str
    algorithm: str
    params: dict[str, Any]
    reduction: dict[str, Any] | None
    projection: str
    filters: dict[str, Any] | None
    n_members: int
    clusters: dict[str, dict[str, Any]]  # "<id>" → size, name, summary, keywords, labeller…
    noise: int
    seconds: dict[str, float]
    created_at: datetime

    def name_of(self, cluster: int) -> str:
        """A cluster's name (given or from a labeller), else ``cluster <n>``."""
        return self.clusters.get(str(cluster), {}).get("name") or f"cluster {cluster}"


# -- the numerical part (pure) -------------------------------------------------------------
def make_estimator(algorithm: str, params: dict[str, Any], seed: int = 0):
    """A scikit-learn estimator for ``algorithm`` with ``params`` (unknown ones named)."""
    import hdbscan
    from sklearn import cluster, mixture

    factories = {
        # The hdbscan package (scikit-learn-compatible) ran 1.5x faster than scikit-learn's
        # own HDBSCAN on 20,000 UMAP-reduced points here.
        "hdbscan": hdbscan.HDBSCAN, "dbscan": cluster.DBSCAN, "kmeans": cluster.KMeans,
        "agglomerative": cluster.AgglomerativeClustering,
        "gaussian_mixture": mixture.GaussianMixture, "spectral": cluster.SpectralClustering,
        "mean_shift": cluster.MeanShift, "optics": cluster.OPTICS,
    }
    if algorithm not in factories:
        raise ValidationError(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    if params is not None and not isinstance(params, dict):
        raise ValidationError(f"{algorithm} parameters must be a JSON object like "
                              f"{{\"min_cluster_size\": 10}}, got {params!r:.80}")
    for key, value in (params or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(f"{algorithm} parameter {key!r} is {value}; give a finite "
                                  "number")
    factory = factories[algorithm]
    merged = {**DEFAULT_PARAMS[algorithm], **(params or {})}
    known = set(factory().get_params())
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ValidationError(f"{algorithm} has no parameter {', '.join(map(repr, unknown))}; "
                              f"it takes: {', '.join(sorted(known))}")
    if "random_state" in known:
        merged.setdefault("random_state", seed)
    try:
        return factory(**merged)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{algorithm}: {exc}") from None


def cluster_labels(vectors: np.ndarray, algorithm: str, params: dict[str, Any] | None = None,
                   seed: int = 0) -> np.ndarray:
    """One label per row; ``-1`` is noise (density-based algorithms only)."""
    estimator = make_estimator(algorithm, params or {}, seed)
    try:
        labels = estimator.fit_predict(vectors)
    except ValueError as exc:  # e.g. more clusters asked for than there are points
        raise ValidationError(f"{algorithm} cannot cluster {len(vectors)} points: {exc}"
                              ) from None
    return np.asarray(labels, dtype=int)


def reduce(vectors: np.ndarray, method: str, n_components: int, seed: int = 0) -> np.ndarray:
    """``pca``, ``umap`` or ``tsne`` to ``n_components`` dimensions (PCA to 50 before UMAP and
    t-SNE when there are more: the usual way to keep them fast)."""
    if method not in REDUCTIONS:
        raise ValidationError(f"reduction {method!r} is not one of {', '.join(REDUCTIONS)}")
    n, dim = vectors.shape
    n_components = int(n_components)
    if not 1 <= n_components <= min(n, dim):
        raise ValidationError(f"n_components must be between 1 and {min(n, dim)} for {n} "
                              f"points of {dim} dimensions, got {n_components}")
    from sklearn.decomposition import PCA

    if method == "pca":
        return PCA(n_components, random_state=seed).fit_transform(vectors)
    if dim > 50 and n > 50:
        vectors = PCA(50, random_state=seed).fit_transform(vectors)
    if method == "umap":
        try:
            import umap
        except ImportError as exc:
            raise WorkbenchError("UMAP needs umap-learn: pip install umap-learn") from exc
        # Seeded, so a run can be repeated (UMAP then uses one thread); over 10,000 points
        # 100 epochs instead of UMAP's 200 halve the time and are plenty to cluster on.
        return umap.UMAP(n_components=n_components, random_state=seed,
                         n_neighbors=min(15, n - 1),
                         n_epochs=100 if n > 10_000 else None).fit_transform(vectors)
    from sklearn.manifold import TSNE

    return TSNE(n_components, random_state=seed, perplexity=min(30.0, (n - 1) / 3),
                init="pca").fit_transform(vectors)


def describe(members: list[dict[str, Any]], everyone: list[dict[str, Any]]) -> dict[str, Any]:
    """The built-in labeller: a name and traits from the members' classes, verdicts, sizes and
    colours, compared with all the run's detections."""
    def share(rows, key):
        counts = Counter(r[key] for r in rows if r.get(key))
        top, n = counts.most_common(1)[0] if counts else (None, 0)
        return top, (n / len(rows) if rows else 0.0), counts

    predicted, predicted_share, _ = share(members, "class_name")
    true_class, true_share, _ = share([r for r in members if r.get("true_class")],
                                      "true_class")
    traits = []
    for key, word_up, word_down in (("area", "larger", "smaller"),
                                    ("brightness", "brighter", "darker"),
                                    ("confidence", "more confident", "less confident")):
        mine = [r[key] for r in members if r.get(key) is not None]
        theirs = [r[key] for r in everyone if r.get(key) is not None]
        if len(mine) >= 2 and len(theirs) >= 2 and np.std(theirs) > 0:
            z = (np.mean(mine) - np.mean(theirs)) / np.std(theirs)
            if abs(z) >= 0.75:
                traits.append(f"{word_up if z > 0 else word_down} than most ({z:+.1f} sd)")
    if predicted_share >= 0.5:
        traits.append(f"predicted {predicted} ({predicted_share:.0%})")
    if true_class:
        traits.append(f"reviewed as {true_class} ({true_share:.0%} of reviewed)")
    name = true_class if true_class and true_share >= 0.5 else (
        f"{predicted}-like" if predicted else "mixed")
    if traits and traits[0].split()[0] in ("larger", "smaller", "brighter", "darker"):
        name = f"{traits[0].split()[0]} {name}"
    sizes = [r["area"] for r in members if r.get("area") is not None]
    return {"name": name, "summary": "; ".join(traits) or "no distinctive trait",
            "keywords": list(dict.fromkeys(k for k in (predicted, true_class) if k)),
            "majority_predicted": predicted, "majority_predicted_share": round(predicted_share, 3),
            "majority_true": true_class, "mean_area": round(float(np.mean(sizes)), 1)
            if sizes else None, "labeller": "builtin"}


class LLMLabeller:
    """Names clusters through an OpenAI-compatible ``/chat/completions`` endpoint.

    It sends the built-in statistics of each cluster (never images) and asks for JSON
    ``{"name", "summary", "keywords"}``; retries with backoff on connection errors and 5xx.
    """

    def __init__(self, url: str, model: str, api_key: str | None = None,
                 timeout_s: float = 30.0):
        if not url.startswith(("http://", "https://")):
            raise ValidationError(f"the LLM URL must be http(s), got {url!r}")
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s

    def label(self, stats: dict[str, Any]) -> dict[str, Any]:
        """Name one cluster from its statistics; WorkbenchError if the answer is not usable."""
        import httpx
        from tenacity import (
            retry,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential_jitter,
        )

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, httpx.TransportError) or (
                isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500)

        prompt = ("You name clusters of object detections for a computer-vision engineer. "
                  "Given the statistics below, answer with JSON only: {\"name\": a short name, "
                  "\"summary\": one sentence, \"keywords\": up to 5 words}.\n"
                  + json.dumps(stats, default=str))

        @retry(retry=retry_if_exception(transient), stop=stop_after_attempt(3),
               wait=wait_exponential_jitter(initial=0.5, max=4), reraise=True)
        def ask() -> dict[str, Any]:
            response = httpx.post(self.url, headers=self.headers, timeout=self.timeout_s, json={
                "model": self.model, "temperature": 0,
                "messages": [{"role": "user", "content": prompt}]})
            response.raise_for_status()
            return response.json()

        try:
            body = ask()
            text = body["choices"][0]["message"]["content"]
        except (httpx.HTTPError, KeyError, IndexError, TypeError) as exc:
            raise WorkbenchError(f"the LLM at {self.url} did not answer usably: {exc}") from None
        start, end = text.find("{"), text.rfind("}")
        try:
            answer = json.loads(text[start:end + 1])
        except ValueError:
            raise WorkbenchError(f"the LLM answered no JSON object: {text[:200]!r}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            raise WorkbenchError(f"the LLM's JSON has no name: {answer!r}")
        keywords = answer.get("keywords") or []
        return {"name": answer["name"].strip()[:100],
                "summary": str(answer.get("summary", ""))[:500],
                "keywords": [str(k) for k in keywords][:5] if isinstance(keywords, list) else [],
                "labeller": f"llm:{self.model}"}


# -- the service ---------------------------------------------------------------------------
class ClusterService:
    """Cluster runs over a collection's detection embeddings, and actions on their clusters."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db

    def _params(self, collection: str, algorithm: str, params: dict[str, Any] | None,
                filters: dict[str, Any] | None, reduction: dict[str, Any] | None,
                projection: str, version: str | None, seed: int) -> dict[str, Any]:
        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version or target.active_version)
        ClusterParams(algorithm=algorithm, projection=projection, seed=seed)
        make_estimator(algorithm, params or {}, seed)  # refuse bad parameters before queueing
        if reduction is not None:
            unknown = set(reduction) - {"method", "n_components"}
            components = reduction.get("n_components", ClusterParams.components)
            if unknown or reduction.get("method") not in REDUCTIONS or not (
                    isinstance(components, int) and not isinstance(components, bool)
                    and components >= 1):
                raise ValidationError(f"reduction is {{\"method\": one of {', '.join(REDUCTIONS)}"
                                      f", \"n_components\": a positive integer}}, got "
                                      f"{reduction!r}")
        _check_members(self.wb.retrievers.count(target.name, filters, chosen.version))
        return {"collection_id": target.id, "version": chosen.version, "algorithm": algorithm,
                "params": params or {}, "filters": filters, "reduction": reduction,
                "projection": projection, "seed": seed}

    def submit(self, collection: str, algorithm: str = ClusterParams.algorithm,
               params: dict[str, Any] | None = None, filters: dict[str, Any] | None = None,
               reduction: dict[str, Any] | None = None, projection: str = ClusterParams.projection,
               version: str | None = None, seed: int = ClusterParams.seed):
        """Queue a cluster run for the worker (which keeps UMAP compiled between runs)."""
        return self.wb.jobs.submit("cluster", self._params(
            collection, algorithm, params, filters, reduction, projection, version, seed))

    def run(self, collection: str, algorithm: str = ClusterParams.algorithm,
            params: dict[str, Any] | None = None, filters: dict[str, Any] | None = None,
            reduction: dict[str, Any] | None = None, projection: str = ClusterParams.projection,
            version: str | None = None, seed: int = ClusterParams.seed,
            listener: ProgressListener | None = None) -> ClusterRun:
        """A cluster run in this process, as a job; returns the stored run."""
        job = self.wb.jobs.run_inline("cluster", self._params(
            collection, algorithm, params, filters, reduction, projection, version, seed),
            listener)
        if job.status == "failed":
            raise JobFailed(job)
        return self.get(job.result["run_id"])

    def execute(self, ctx: JobContext) -> dict[str, Any]:
        """The cluster job: select, reduce, cluster, project, and store the run with its members."""
        p = ctx.params
        collection = self.wb.collections.get(p["collection_id"])
        chosen = self.wb.registry.get(collection.extractor_name, p["version"])
        feature_uri = chosen.feature_uri("detection_embedding")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        ctx.progress(0, 4, "selecting detections")
        rows = self.wb.retrievers.select(collection.name, p["filters"], chosen.version,
                                         limit=MAX_MEMBERS + 1)
        rows = [r for r in rows if r.embedding_id]
        _check_members(len(rows))
        vectors = self.wb.vectors.get(feature_uri, [r.embedding_id for r in rows])
        timings["read"] = time.perf_counter() - started
        ctx.check_cancelled()
        ctx.progress(1, 4, f"reducing {len(rows)} embeddings")
        begun = time.perf_counter()
        space = vectors
        if p["reduction"]:
            space = reduce(vectors, p["reduction"]["method"],
                           p["reduction"].get("n_components", ClusterParams.components), p["seed"])
        timings["reduce"] = time.perf_counter() - begun
        ctx.check_cancelled()
        ctx.progress(2, 4, f"clustering with {p['algorithm']}")
        begun = time.perf_counter()
        labels = cluster_labels(space, p["algorithm"], p["params"], p["seed"])
        timings["cluster"] = time.perf_counter() - begun
        ctx.check_cancelled()
        ctx.progress(3, 4, "projecting to 2D")
        begun = time.perf_counter()
        xy = space if space.shape[1] == 2 else reduce(space, p["projection"], 2, p["seed"])
        timings["project"] = time.perf_counter() - begun
        sizes = Counter(int(label) for label in labels)
        clusters = {str(c): {"size": n} for c, n in sorted(sizes.items()) if c != NOISE}
        run_id = new_id("clu")
        begun = time.perf_counter()
        with self.db.write() as conn:
            conn.execute(t.cluster_runs.insert().values(
                id=run_id, collection_id=collection.id, feature_uri=feature_uri,
                algorithm=p["algorithm"], params=p["params"], reduction=p["reduction"],
                projection=p["projection"], filters=p["filters"], n_members=len(rows),
                clusters=clusters, noise=sizes.get(NOISE, 0),
                seconds={k: round(v, 3) for k, v in timings.items()}, created_at=utcnow()))
            conn.execute(t.cluster_members.insert(), [
                {"run_id": run_id, "detection_id": r.id, "cluster": int(label),
                 "x": float(x), "y": float(y)}
                for r, label, (x, y) in zip(rows, labels, xy, strict=True)])
            timings["write"] = time.perf_counter() - begun
            timings["total"] = time.perf_counter() - started
            conn.execute(t.cluster_runs.update().where(t.cluster_runs.c.id == run_id).values(
                seconds={k: round(v, 3) for k, v in timings.items()}))
            record_event(conn, "cluster.completed", {
                "run_id": run_id, "collection": collection.name, "algorithm": p["algorithm"],
                "members": len(rows), "clusters": len(clusters), "noise": sizes.get(NOISE, 0)})
        ctx.progress(4, 4, f"{len(clusters)} clusters, {sizes.get(NOISE, 0)} noise")
        return {"run_id": run_id, "clusters": len(clusters), "noise": sizes.get(NOISE, 0),
                "members": len(rows), "seconds": round(timings["total"], 3)}

    # -- reading -------------------------------------------------------------------------
    def get(self, run_id: str) -> ClusterRun:
        """A cluster run by id; NotFoundError if there is none."""
        row = self.db.find(t.cluster_runs, run_id)
        if row is None:
            raise NotFoundError(f"no cluster run {run_id!r}")
        return cluster_run_from_row(row)

    def list(self, collection: str | None = None, limit: int = 50) -> list[ClusterRun]:
        """The newest ``limit`` cluster runs (of ``collection``, or of all): the first
        :meth:`page`, which also says how many there are."""
        return self.page(collection, limit=limit).items

    def page(self, collection: str | None = None, cursor: str | None = None, limit: int = 50
             ) -> Page[ClusterRun]:
        """A page of cluster runs (of ``collection``, or of all), newest first, with how
        many there are and the cursor of the next page."""
        query = sa.select(t.cluster_runs)
        collection_id = None if collection is None else self.wb.collections.get(collection).id
        if collection_id is not None:
            query = query.where(t.cluster_runs.c.collection_id == collection_id)
        with self.db.read() as conn:
            return _RUN_ORDER.page(conn, query, cursor, limit, cluster_run_from_row,
                                   {"collection": collection_id})

    def members(self, run_id: str, cluster: int | None = None) -> list[dict[str, Any]]:
        """Members with their detection: id, cluster, x, y, class, confidence, box, object."""
        m, d = t.cluster_members.c, t.detections.c
        query = (sa.select(m.detection_id, m.cluster, m.x, m.y, d.class_name, d.confidence,
                           d.object_id, d.document_id, d.x1, d.y1, d.x2, d.y2)
                 .select_from(t.cluster_members.join(t.detections, d.id == m.detection_id))
                 .where(m.run_id == run_id).order_by(m.detection_id))
        if cluster is not None:
            query = query.where(m.cluster == cluster)
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # -- labelling -----------------------------------------------------------------------
    def label(self, run_id: str, use_llm: bool | None = None) -> ClusterRun:
        """Label every cluster: built-in statistics always; an LLM name on top when
        ``WORKBENCH_LLM_URL`` is set (or ``use_llm`` asks and it is)."""
        run = self.get(run_id)
        settings = self.wb.settings
        if use_llm and not settings.llm_url:
            raise ValidationError("no LLM is configured: set WORKBENCH_LLM_URL to an "
                                  "OpenAI-compatible endpoint (the built-in labeller needs none)")
        llm = (LLMLabeller(settings.llm_url, settings.llm_model, settings.llm_api_key,
                           settings.llm_timeout_s)
               if settings.llm_url and use_llm is not False else None)
        rows = self._member_stats(run)
        clusters = dict(run.clusters)
        for key, info in clusters.items():
            members = [r for r in rows if r["cluster"] == int(key)]
            stats = describe(members, rows)
            if llm is not None:
                stats = {**stats, **llm.label({k: v for k, v in stats.items()
                                               if k != "labeller"} | {"size": info["size"]})}
            if info.get("renamed"):
                stats["name"] = info["name"]
            clusters[key] = {**info, **stats}
        self._save_clusters(run.id, clusters)
        return self.get(run.id)

    def rename(self, run_id: str, cluster: int, name: str) -> ClusterRun:
        """Name a cluster by hand; labelling the run again keeps the name."""
        run = self.get(run_id)
        if str(cluster) not in run.clusters:
            raise NotFoundError(f"run {run_id} has no cluster {cluster} "
                                f"(clusters: {', '.join(run.clusters)})")
        if not name.strip():
            raise ValidationError("a cluster name cannot be empty")
        clusters = dict(run.clusters)
        clusters[str(cluster)] = {**clusters[str(cluster)], "name": name.strip(),
                                  "renamed": True}
        self._save_clusters(run_id, clusters)
        return self.get(run_id)

    def _member_stats(self, run: ClusterRun) -> list[dict[str, Any]]:
        members = self.members(run.id)
        with self.db.read() as conn:
            verdicts = {}
            for row in conn.execute(sa.select(t.annotations.c.document_id, t.annotations.c.label,
                                              t.annotations.c.payload)
                                    .where(t.annotations.c.document_id.in_(
                                        [m["detection_id"] for m in members]),
                                           t.annotations.c.deleted_at.is_(None))
                                    .order_by(t.annotations.c.created_at)):
                verdicts[row.document_id] = row
        brightness = self._brightness(members)
        rows = []
        for m in members:
            verdict = verdicts.get(m["detection_id"])
            true_class = None
            if verdict is not None and verdict.label in ("confirmed", "corrected"):
                true_class = (verdict.payload or {}).get("true_class") or m["class_name"]
            rows.append({**m, "true_class": true_class,
                         "area": (m["x2"] - m["x1"]) * (m["y2"] - m["y1"]),
                         "brightness": brightness.get(m["detection_id"])})
        return rows

    def _brightness(self, members: list[dict[str, Any]], per_image: int = 50,
                    images: int = 200) -> dict[str, float]:
        """Mean grey level inside each box, for a sample of images (enough for statistics)."""
        by_object: dict[str, list] = {}
        for m in members:
            by_object.setdefault(m["object_id"], []).append(m)
        values = {}
        for object_id in sorted(by_object)[:images]:
            try:
                image = load_image(self.wb.image_path(self.wb.buckets.get_object(object_id)))
            except (OSError, NotFoundError):
                continue
            grey = np.asarray(image.convert("L"), dtype="float32")
            for m in by_object[object_id][:per_image]:
                x1, y1, x2, y2 = (int(round(v)) for v in (m["x1"], m["y1"], m["x2"], m["y2"]))
                patch = grey[max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)]
                if patch.size:
                    values[m["detection_id"]] = float(patch.mean())
        return values

    def _save_clusters(self, run_id: str, clusters: dict[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute(t.cluster_runs.update().where(t.cluster_runs.c.id == run_id)
                         .values(clusters=clusters))

    # -- actions -------------------------------------------------------------------------
    def promote(self, run_id: str, cluster: int, taxonomy: str,
                node: str | None = None, parent: str | None = None) -> dict[str, Any]:
        """Make a cluster a taxonomy node: its members join the taxonomy's reference set as
        ``node`` (default: the cluster's name) and the node is added (a new version)."""
        run = self.get(run_id)
        name = (node or run.name_of(cluster)).strip()
        members = [m["detection_id"] for m in self.members(run_id, cluster)]
        if not members:
            raise NotFoundError(f"run {run_id} has no member in cluster {cluster}")
        tax = self.wb.taxonomies.get(taxonomy)
        nodes = [n.to_dict() for n in tax.nodes]
        new_node = name not in {n["name"] for n in nodes}
        if new_node:  # refuse a node the taxonomy cannot take before anything is written
            if tax.kind == "flat" and parent is not None:
                raise ValidationError(f"{tax.name} is flat: a node cannot have a parent")
            nodes.append({"name": name, "parent": parent})
            parse_nodes(tax.kind, nodes)
        added = self.wb.references.add(tax.reference_set_id, members, true_class=name,
                                       category=parent, source=f"cluster:{run_id}")
        if new_node:
            tax = self.wb.taxonomies.update(tax.name, nodes=nodes)
        return {"node": name, "references_added": added["added"],
                "reference_version": added["version"], "taxonomy_version": tax.version}

    def relabel(self, run_id: str, cluster: int, true_class: str, confirm: bool = False,
                author: str | None = None, exclude: Sequence[str] = ()) -> dict[str, Any]:
        """Give every member of a cluster the class ``true_class``: one ``corrected``
        annotation each (``confirmed`` where the model already said so), with the run as
        provenance; the next training export takes them up. Members whose detection id is in
        ``exclude`` are left as they are (the odd ones a look at the cluster shows). Nothing
        is written unless ``confirm`` is true (the count is returned for the user to
        confirm)."""
        if not true_class or not true_class.strip():
            raise ValidationError("relabel needs the class to give the members")
        run = self.get(run_id)
        members = self.members(run_id, cluster)
        foreign = set(exclude) - {m["detection_id"] for m in members}
        if foreign:
            raise ValidationError(f"{len(foreign)} detection(s) to leave out are not members "
                                  f"of cluster {cluster}, e.g. {sorted(foreign)[0]!r}")
        members = [m for m in members if m["detection_id"] not in set(exclude)]
        if not confirm:
            return {"would_annotate": len(members), "written": 0}
        operations = [{
            "op": "create", "document_id": m["detection_id"],
            "collection_id": run.collection_id,
            "label": "confirmed" if m["class_name"] == true_class else "corrected",
            "payload": {"true_class": true_class, "cluster_run_id": run_id,
                        "cluster": cluster},
            "reasoning": f"relabelled with {run.name_of(cluster)!r} of cluster run {run_id}",
            **({"author": author} if author else {})} for m in members]
        from workbench.annotations import MAX_BULK

        written = 0
        for start in range(0, len(operations), MAX_BULK):
            results = self.wb.annotations.bulk(operations[start:start + MAX_BULK])
            written += sum(1 for r in results if r.ok)
        return {"would_annotate": len(members), "written": written}


def _check_members(n: int) -> None:
    if n > MAX_MEMBERS:
        raise ValidationError(f"more than {MAX_MEMBERS} detections pass the filter; narrow it "
                              "(a class, a confidence range, taxonomy unknown)")
    if n < 3:
        raise ValidationError(f"only {n} detection(s) pass the filter; a cluster run needs at "
                              "least 3")


_RUN_ORDER = Keyset("cluster runs", ((t.cluster_runs.c.created_at, True),
                                     (t.cluster_runs.c.id, True)))


def cluster_run_from_row(row) -> ClusterRun:
    """The ClusterRun a row of the cluster_runs table describes."""
    return ClusterRun(row.id, row.collection_id, row.feature_uri, row.algorithm,
                      dict(row.params), row.reduction, row.projection, row.filters,
                      row.n_members, dict(row.clusters), row.noise, dict(row.seconds),
                      as_utc(row.created_at))
