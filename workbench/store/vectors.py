"""Vectors in Chroma: one collection per feature URI, on disk inside the workspace.

Chroma is only imported when vectors are used. It is always given explicit embeddings
(``embedding_function=None``) so that it never tries to fetch a model, and telemetry is off.

Beside each collection the store keeps a contiguous copy of the feature's vectors
(:class:`VectorCopy`: float16 rows appended to one file, an id → row map in SQLite). Reads by
id (taxonomies, clustering, diversity, reference sets, FiftyOne) come from the copy and never
load the Chroma index; Chroma answers nearest-neighbour queries. Ids the copy lacks (vectors
written before it existed) are read from Chroma.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from workbench.errors import MissingDependencyError, ValidationError
from workbench.faults import crash_point

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
        self._copies: dict[str, VectorCopy] = {}

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
        copy = self.copy(feature_uri)
        # A copy begun with its collection holds every vector; one begun later does not.
        copy.append(ids, embeddings, complete=copy.exists() or collection.count() == 0)
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
        copy = self.copy(feature_uri)
        found = copy.get(ids)
        missing = [i for i in ids if i not in found]
        if missing and not copy.complete():  # written before the copy existed
            result = self.collection(feature_uri).get(ids=missing, include=["embeddings"])
            rows = np.asarray(result["embeddings"], dtype="float32")
            found.update(zip(result["ids"], rows, strict=True))
        return found

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

    def copy(self, feature_uri: str) -> VectorCopy:
        """The contiguous copy of one feature's vectors (made on first use)."""
        with self._opening:
            if feature_uri not in self._copies:
                self._copies[feature_uri] = VectorCopy(
                    self.path / "copies" / collection_name(feature_uri))
            return self._copies[feature_uri]


FLOAT16_MAX = 65504.0


class VectorCopy:
    """One feature's vectors as rows of one append-only file, float16 (float32 for a feature
    whose values do not fit), with an id → row map in SQLite; an id written again gets a new
    row and the map points at it. Appends hold a file lock, and the rows are on disk before
    the map that names them commits, so a reader in another process never sees a row that is
    not there, and a kill leaves at worst rows no id points at."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._layout: tuple[int, str] | None = None  # (dim, dtype): fixed once written

    @property
    def _data(self) -> Path:
        return self.folder / "vectors.bin"

    def _meta(self) -> dict | None:
        path = self.folder / "meta.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _write_meta(self, meta: dict) -> None:
        (self.folder / "meta.json.tmp").write_text(json.dumps(meta))
        os.replace(self.folder / "meta.json.tmp", self.folder / "meta.json")

    def exists(self) -> bool:
        """Whether a vector was ever appended."""
        return (self.folder / "meta.json").exists()

    def complete(self) -> bool:
        """Whether every vector of the feature is here (so an id it lacks is nowhere)."""
        meta = self._meta()
        return bool(meta and meta.get("complete"))

    @contextmanager
    def _map(self):
        conn = sqlite3.connect(self.folder / "ids.sqlite", timeout=60)
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS ids (id TEXT PRIMARY KEY, row INTEGER "
                         "NOT NULL)")
            yield conn
        finally:
            conn.close()

    def append(self, ids: Sequence[str], embeddings, complete: bool = False) -> None:
        """Add or replace vectors by id; ``complete``: the first append of a feature that
        has no vector anywhere else."""
        import numpy as np

        matrix = np.asarray(embeddings, dtype="float32")
        if matrix.ndim != 2 or len(matrix) != len(ids):
            raise ValidationError(f"{len(ids)} ids for vectors of shape {matrix.shape}")
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            meta = self._meta()
            if meta is None:
                fits = bool(np.all(np.abs(matrix) <= FLOAT16_MAX))
                meta = {"dim": int(matrix.shape[1]), "dtype": "float16" if fits else "float32",
                        "complete": complete}
                self._write_meta(meta)
            if matrix.shape[1] != meta["dim"]:
                raise ValidationError(f"vectors of {matrix.shape[1]} dimensions for a feature "
                                      f"of {meta['dim']}")
            with self._map() as conn:
                if meta["dtype"] == "float16" and not np.all(np.abs(matrix) <= FLOAT16_MAX):
                    # Out of float16's range: these ids are read from Chroma instead.
                    self._write_meta({**meta, "complete": False})
                    with conn:
                        conn.executemany("DELETE FROM ids WHERE id = ?", [(i,) for i in ids])
                    return
                rows = np.ascontiguousarray(matrix, dtype=meta["dtype"])
                row_bytes = rows.dtype.itemsize * meta["dim"]
                size = self._data.stat().st_size if self._data.exists() else 0
                first = size // row_bytes
                with open(self._data, "ab") as data:
                    data.truncate(first * row_bytes)  # a row half-written by a kill goes
                    data.write(rows.tobytes())
                    data.flush()
                    os.fsync(data.fileno())
                crash_point("vectors.rows_written")  # rows on disk, no id names them yet
                with conn:
                    conn.executemany("INSERT OR REPLACE INTO ids (id, row) VALUES (?, ?)",
                                     [(str(i), first + n) for n, i in enumerate(ids)])

    def get(self, ids: Sequence[str]) -> dict:
        """Vectors by id as ``{id: float32 vector}``; ids the copy lacks are left out."""
        import numpy as np

        if self._layout is None and (meta := self._meta()) is not None:
            self._layout = (meta["dim"], meta["dtype"])
        if self._layout is None or not ids:
            return {}
        dim, dtype = self._layout
        where: dict[str, int] = {}
        with self._map() as conn:
            for start in range(0, len(ids), 30_000):  # SQLite's bound-variable limit
                chunk = list(ids[start:start + 30_000])
                marks = ",".join("?" * len(chunk))
                where.update(conn.execute(f"SELECT id, row FROM ids WHERE id IN ({marks})",
                                          chunk).fetchall())
        if not where:
            return {}
        dtype = np.dtype(dtype)
        count = self._data.stat().st_size // (dtype.itemsize * dim)
        matrix = np.memmap(self._data, dtype=dtype, mode="r", shape=(count, dim))
        order = sorted(where, key=where.get)  # read the file front to back
        rows = np.asarray(matrix[[where[i] for i in order]], dtype="float32")
        return dict(zip(order, rows, strict=True))

    def __len__(self) -> int:
        if self._meta() is None:
            return 0
        with self._map() as conn:
            return conn.execute("SELECT count(*) FROM ids").fetchone()[0]
