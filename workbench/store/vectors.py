"""Vectors in Chroma: one collection per feature URI, on disk inside the workspace.

Chroma is only imported when vectors are used. It is always given explicit embeddings
(``embedding_function=None``) so that it never tries to fetch a model, and telemetry is off.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from workbench.errors import MissingDependencyError, ValidationError

METRICS = {"cosine": "cosine", "euclidean": "l2", "dot": "ip"}


def collection_name(feature_uri: str) -> str:
    """A Chroma-legal name (3-512 chars of [a-zA-Z0-9._-]) that is unique per URI."""
    readable = re.sub(r"[^a-zA-Z0-9._-]+", "-", feature_uri.split("://", 1)[-1]).strip("-._")
    digest = hashlib.sha256(feature_uri.encode()).hexdigest()[:10]
    return f"{readable[:200]}-{digest}"


class VectorStore:
    """Embeddings in a persistent Chroma client, one collection per feature URI."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._client = None
        # The app shares one workspace between script runs, and a rerun can start while the
        # previous run is still opening the client: two half-made Chroma clients fail
        # ("Could not connect to tenant default_tenant").
        self._opening = threading.Lock()

    @property
    def client(self):
        """The Chroma client, opened on first use (once, however many threads ask)."""
        if self._client is not None:
            return self._client
        with self._opening:
            return self._open()

    def _open(self):
        if self._client is None:
            try:
                import chromadb
                from chromadb.config import Settings as ChromaSettings
            except ImportError as exc:  # pragma: no cover - chromadb is in requirements.txt
                raise MissingDependencyError(
                    "vectors need chromadb: pip install -r requirements.txt"
                ) from exc
            self.path.mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(
                path=str(self.path),
                settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False),
            )
        return self._client

    def collection(self, feature_uri: str, metric: str = "cosine"):
        """Get or create the collection that holds one feature's vectors."""
        if metric not in METRICS:
            raise ValidationError(
                f"distance metric {metric!r} is not supported; use one of {sorted(METRICS)}"
            )
        return self.client.get_or_create_collection(
            name=collection_name(feature_uri),
            embedding_function=None,
            metadata={"feature_uri": feature_uri, "hnsw:space": METRICS[metric]},
        )

    def upsert(
        self,
        feature_uri: str,
        ids: Sequence[str],
        embeddings,
        metadatas: Sequence[dict] | None = None,
        metric: str = "cosine",
    ) -> None:
        """Add or replace vectors by id: re-running a batch never duplicates them."""
        if len(ids) == 0:
            return
        collection = self.collection(feature_uri, metric)
        step = self.client.get_max_batch_size()  # Chroma refuses larger batches
        for start in range(0, len(ids), step):
            end = start + step
            collection.upsert(
                ids=list(ids[start:end]), embeddings=embeddings[start:end],
                metadatas=list(metadatas[start:end]) if metadatas else None,
            )

    def query(self, feature_uri: str, embedding, k: int = 10) -> list[tuple[str, float]]:
        """Nearest ids to one vector, with distances in the collection's metric."""
        result = self.collection(feature_uri).query(
            query_embeddings=[embedding], n_results=k, include=["distances"]
        )
        return list(zip(result["ids"][0], result["distances"][0], strict=True))

    def get_by_id(self, feature_uri: str, ids: Sequence[str]) -> dict:
        """Embeddings by id, as ``{id: float32 vector}`` (missing ids are left out; an id asked
        for twice is fetched once — Chroma refuses duplicate ids)."""
        import numpy as np

        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        result = self.collection(feature_uri).get(ids=ids, include=["embeddings"])
        rows = np.asarray(result["embeddings"], dtype="float32")
        return dict(zip(result["ids"], rows, strict=True))

    def get(self, feature_uri: str, ids: Sequence[str]):
        """Embeddings by id (a numpy array in the order of ``ids``; missing ids are left out)."""
        import numpy as np

        found = self.get_by_id(feature_uri, ids)
        if not found:
            return np.zeros((0, 0), dtype="float32")
        return np.asarray([found[i] for i in ids if i in found], dtype="float32")

    def count(self, feature_uri: str) -> int:
        """How many vectors one feature holds (its collection is created, empty, if missing)."""
        return self.collection(feature_uri).count()
