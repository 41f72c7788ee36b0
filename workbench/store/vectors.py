"""Vectors: a contiguous copy per feature (the write path) and a Chroma index behind it.

A write appends to the feature's :class:`VectorCopy` (float16 rows in one file, an id → row
map in SQLite): tens of thousands of vectors a second, so a detection run never waits on an
index. Chroma's HNSW index is built behind the copy by :meth:`VectorStore.index` (the
``index`` job, queued after each detection run), which records how many rows it has taken
in; a nearest-neighbour query asks Chroma for the indexed rows and searches the rows after
that watermark exactly, so a vector is found from the moment it is written. Reads by id
(taxonomies, clustering, diversity, reference sets, FiftyOne) come from the copy and never
load the Chroma index. Ids the copy lacks (vectors written before it existed, or values
beyond float16 in a float16 copy) live only in Chroma and are read from there.

Chroma is only imported when the index is used. It is always given explicit embeddings
(``embedding_function=None``) so that it never tries to fetch a model, and telemetry is off.
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
from typing import Any

from workbench.errors import MissingDependencyError, ValidationError
from workbench.faults import crash_point

METRICS = {"cosine": "cosine", "euclidean": "l2", "dot": "ip"}
HNSW = {"ef_construction": 64, "max_neighbors": 12}  # see VectorStore.collection


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
        # A lighter graph than Chroma's default (ef_construction 100, 16 neighbours): on
        # clustered 1,024-d vectors it indexes twice as fast (1,765 against 898 vectors/s at
        # 20k) with the same recall@10 (0.995), and the index is what lags behind the writes
        # (bench/vectors.py). A collection made before keeps the settings it was made with.
        return self.client.get_or_create_collection(
            name=collection_name(feature_uri),
            embedding_function=None,
            metadata={"feature_uri": feature_uri},
            configuration={"hnsw": {"space": METRICS[metric], **HNSW}},
        )

    def upsert(
        self,
        feature_uri: str,
        ids: Sequence[str],
        embeddings,
        metric: str = "cosine",
    ) -> None:
        """Add or replace vectors by id (re-running a batch never duplicates them). They are
        searchable at once; Chroma indexes them later (:meth:`index`)."""
        if len(ids) == 0:
            return
        if metric not in METRICS:
            raise ValidationError(
                f"distance metric {metric!r} is not supported; use one of {sorted(METRICS)}"
            )
        copy = self.copy(feature_uri)
        # A copy begun with its collection holds every vector; one begun later does not.
        fresh = not copy.exists() and not self._has_collection(feature_uri)
        if not copy.append(ids, embeddings, complete=fresh, metric=metric):
            # Beyond float16 in a float16 copy: these go to the index directly.
            self._index_rows(feature_uri, list(ids), embeddings, metric)

    def _index_rows(self, feature_uri: str, ids: list[str], embeddings, metric: str) -> None:
        collection = self.collection(feature_uri, metric)
        step = self.client.get_max_batch_size()  # Chroma refuses larger batches
        for start in range(0, len(ids), step):
            collection.upsert(ids=ids[start:start + step],
                              embeddings=embeddings[start:start + step])

    def _has_collection(self, feature_uri: str) -> bool:
        if not (self.path / "chroma.sqlite3").exists():
            return False
        try:
            self.client.get_collection(collection_name(feature_uri))
        except Exception:  # chromadb raises NotFoundError (ValueError in older versions)
            return False
        return True

    def index(self, feature_uri: str, progress=None, batch: int = 5_000,
              limit: int | None = None) -> int:
        """Take the copy's rows past the watermark into Chroma's index, in order (at most
        ``limit`` of them); returns how many vectors were indexed. Safe to interrupt (the
        watermark moves after each batch, and a batch indexed twice is an upsert) and to run
        twice (one indexer at a time)."""
        copy = self.copy(feature_uri)
        if not copy.exists():
            return 0
        with copy.indexing():
            start, end = copy.indexed_rows(), copy.rows()
            tail = copy.tail(start, end)
            if limit is not None and len(tail) > limit:
                tail, end = tail[:limit], tail[limit][1]
            if not tail:
                copy.mark_indexed(end)
                return 0
            collection = self.collection(feature_uri, copy.metric())
            step = min(batch, self.client.get_max_batch_size())
            for first in range(0, len(tail), step):
                chunk = tail[first:first + step]
                vectors = copy.read_rows([row for _, row in chunk])
                collection.upsert(ids=[i for i, _ in chunk], embeddings=vectors)
                last = chunk[-1][1] + 1
                copy.mark_indexed(end if first + step >= len(tail) else last)
                if progress is not None:
                    progress(min(first + step, len(tail)), len(tail))
            return len(tail)

    def unindexed(self) -> dict[str, int]:
        """Features with vectors not yet in Chroma's index: ``{feature_uri: rows behind}``
        (rows, not ids: a rewritten id leaves its old row behind it)."""
        behind = {}
        for meta_path in sorted((self.path / "copies").glob("*/meta.json")):
            meta = json.loads(meta_path.read_text())
            if not meta.get("feature_uri"):
                continue  # begun before the index was built behind it: indexed on write
            copy = self.copy(meta["feature_uri"])
            if copy.rows() > copy.indexed_rows():
                behind[meta["feature_uri"]] = copy.rows() - copy.indexed_rows()
        return behind

    def pending(self, feature_uri: str) -> int:
        """How many vectors are written but not yet in Chroma's index."""
        copy = self.copy(feature_uri)
        return len(copy.tail(copy.indexed_rows(), copy.rows())) if copy.exists() else 0

    def query(self, feature_uri: str, embedding, k: int = 10) -> list[tuple[str, float]]:
        """Nearest ids to one vector, with distances in the collection's metric: Chroma's
        answer over the indexed rows merged with an exact search of the rows after them."""
        import numpy as np

        copy = self.copy(feature_uri)
        found: dict[str, float] = {}
        indexed = copy.indexed_rows() if copy.exists() else None
        if (indexed is None or indexed > 0 or not copy.complete()) \
                and self._has_collection(feature_uri):
            collection = self.collection(feature_uri, copy.metric() if copy.exists()
                                         else "cosine")
            size = collection.count()
            if size:
                result = collection.query(query_embeddings=[embedding], n_results=min(k, size),
                                          include=["distances"])
                found.update(zip(result["ids"][0], result["distances"][0], strict=True))
        if indexed is not None:
            # The tail's vectors are the newest: they replace what the index holds for an id.
            found.update(copy.search(np.asarray(embedding, dtype="float32"), k, indexed))
        return sorted(found.items(), key=lambda item: item[1])[:k]

    def get_by_id(self, feature_uri: str, ids: Sequence[str]) -> dict:
        """Embeddings by id, as ``{id: float32 vector}`` (missing ids are left out; an id asked
        for twice is fetched once — Chroma refuses duplicate ids). A feature with no vector
        anywhere gives ``{}`` (asking must not create its Chroma collection)."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        copy = self.copy(feature_uri)
        found = copy.get(ids)
        missing = [i for i in ids if i not in found]
        if missing and not copy.complete() and self._has_collection(feature_uri):
            found.update(self._chroma_get(feature_uri, missing))  # written before the copy
        return found

    def _chroma_get(self, feature_uri: str, ids: list[str], per_call: int = 500) -> dict:
        """Vectors of ``ids`` from the Chroma collection, ``per_call`` ids at a time: Chroma
        puts every id of a ``get`` in one SQL statement, and past SQLite's bound-variable
        limit that fails ("too many SQL variables")."""
        import numpy as np

        collection = self.client.get_collection(collection_name(feature_uri),
                                                embedding_function=None)
        found = {}
        for start in range(0, len(ids), per_call):
            result = collection.get(ids=ids[start:start + per_call], include=["embeddings"])
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
        """How many vectors one feature holds."""
        copy = self.copy(feature_uri)
        if copy.complete():
            return len(copy)
        if not self._has_collection(feature_uri):
            return len(copy)
        # Written before the copy existed: the index holds those, the copy the newer ones.
        return self.collection(feature_uri).count() + self.pending(feature_uri)

    def copy(self, feature_uri: str) -> VectorCopy:
        """The contiguous copy of one feature's vectors (made on first use)."""
        with self._opening:
            if feature_uri not in self._copies:
                self._copies[feature_uri] = VectorCopy(
                    self.path / "copies" / collection_name(feature_uri), feature_uri)
            return self._copies[feature_uri]


FLOAT16_MAX = 65504.0
SEARCH_CHUNK = 1024  # rows widened to float32 at a time by an exact search


class VectorCopy:
    """One feature's vectors as rows of one append-only file, float16 (float32 for a feature
    whose values do not fit), with an id → row map in SQLite; an id written again gets a new
    row and the map points at it. Appends hold a file lock, and the rows are on disk before
    the map that names them commits, so a reader in another process never sees a row that is
    not there, and a kill leaves at worst rows no id points at."""

    def __init__(self, folder: Path, feature_uri: str | None = None):
        self.folder = Path(folder)
        self.feature_uri = feature_uri
        self._layout: tuple[int, str] | None = None  # (dim, dtype): fixed once written
        self._tail: tuple[tuple[int, int], list[tuple[str, int]]] | None = None
        self._squares: tuple[tuple[int, int, int], Any] | None = None  # see search

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
            conn.execute("CREATE INDEX IF NOT EXISTS ids_by_row ON ids (row)")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _locked(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextmanager
    def indexing(self):
        """Held while rows are taken into the index: one indexer at a time per feature."""
        with open(self.folder / "index.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def append(self, ids: Sequence[str], embeddings, complete: bool = False,
               metric: str = "cosine") -> bool:
        """Add or replace vectors by id; ``complete``: the first append of a feature that
        has no vector anywhere else. False when the values do not fit this copy's dtype (the
        caller keeps them elsewhere; the copy forgets those ids)."""
        import numpy as np

        matrix = np.asarray(embeddings, dtype="float32")
        if matrix.ndim != 2 or len(matrix) != len(ids):
            raise ValidationError(f"{len(ids)} ids for vectors of shape {matrix.shape}")
        with self._locked():
            meta = self._meta()
            if meta is None:
                fits = bool(np.all(np.abs(matrix) <= FLOAT16_MAX))
                meta = {"dim": int(matrix.shape[1]), "dtype": "float16" if fits else "float32",
                        "complete": complete, "metric": metric, "indexed_rows": 0,
                        "feature_uri": self.feature_uri}
                self._write_meta(meta)
            elif "indexed_rows" not in meta:
                # Written before the index was built behind the copy: every row so far went
                # to Chroma with it.
                meta = {**meta, "indexed_rows": self.rows(meta), "metric": metric,
                        "feature_uri": self.feature_uri}
                self._write_meta(meta)
            if matrix.shape[1] != meta["dim"]:
                raise ValidationError(f"vectors of {matrix.shape[1]} dimensions for a feature "
                                      f"of {meta['dim']}")
            with self._map() as conn:
                if meta["dtype"] == "float16" and not np.all(np.abs(matrix) <= FLOAT16_MAX):
                    self._write_meta({**meta, "complete": False})
                    self._tail = None
                    with conn:
                        conn.executemany("DELETE FROM ids WHERE id = ?", [(i,) for i in ids])
                    return False
                rows = np.ascontiguousarray(matrix, dtype=meta["dtype"])
                first = self.rows(meta)
                with open(self._data, "ab") as data:
                    data.truncate(first * rows.dtype.itemsize * meta["dim"])  # a row
                    data.write(rows.tobytes())  # half-written by a kill goes
                    data.flush()
                    os.fsync(data.fileno())
                crash_point("vectors.rows_written")  # rows on disk, no id names them yet
                with conn:
                    conn.executemany("INSERT OR REPLACE INTO ids (id, row) VALUES (?, ?)",
                                     [(str(i), first + n) for n, i in enumerate(ids)])
        return True

    def _layout_of(self) -> tuple[int, str] | None:
        if self._layout is None and (meta := self._meta()) is not None:
            self._layout = (meta["dim"], meta["dtype"])
        return self._layout

    def rows(self, meta: dict | None = None) -> int:
        """How many whole rows the file holds (an id names each at most once)."""
        import numpy as np

        layout = (meta["dim"], meta["dtype"]) if meta else self._layout_of()
        if layout is None or not self._data.exists():
            return 0
        return self._data.stat().st_size // (np.dtype(layout[1]).itemsize * layout[0])

    def metric(self) -> str:
        """The distance the feature is searched by."""
        return (self._meta() or {}).get("metric", "cosine")

    def indexed_rows(self) -> int:
        """The watermark: rows before it are in Chroma's index."""
        meta = self._meta()
        if meta is None:
            return 0
        return meta.get("indexed_rows", self.rows(meta))

    def mark_indexed(self, rows: int) -> None:
        """Move the watermark (only forward)."""
        with self._locked():
            meta = self._meta()
            if meta is not None and rows > meta.get("indexed_rows", 0):
                self._write_meta({**meta, "indexed_rows": rows})

    def tail(self, start: int, end: int | None = None) -> list[tuple[str, int]]:
        """``(id, row)`` of the ids whose newest row is at or after ``start`` (before
        ``end``), in row order: what the index has not taken in yet."""
        if not (self.folder / "ids.sqlite").exists():
            return []
        end = self.rows() if end is None else end
        key = (start, end)
        if self._tail is not None and self._tail[0] == key:
            return self._tail[1]
        with self._map() as conn:
            found = conn.execute("SELECT id, row FROM ids WHERE row >= ? AND row < ? "
                                 "ORDER BY row", (start, end)).fetchall()
        self._tail = (key, found)  # rows past ``end`` only ever get added
        return found

    def read_rows(self, rows: Sequence[int]):
        """Rows by position, as a float32 matrix."""
        import numpy as np

        dim, dtype = self._layout_of()
        return self._gather(list(rows), dim, np.dtype(dtype))

    def _gather(self, rows: list[int], dim: int, dtype):
        """Rows by position as float32, read with ``pread`` (a run of consecutive rows as
        one read). Through a memory map the kernel maps far more of the file than the rows
        (read-ahead in large folios: 100 scattered rows held 140 MB resident), and the
        image-review queue at 1M detections, gathering 14,000 rows of a 2 GB copy, held
        860 MB of it in the app's memory for 28 MB of vectors. Reading costs about 14 µs
        a scattered row against 8 through the map."""
        import numpy as np

        width = dtype.itemsize * dim
        order = np.argsort(np.asarray(rows, dtype=np.int64), kind="stable")
        ordered = np.asarray(rows, dtype=np.int64)[order].tolist()
        buffer = bytearray(width * len(ordered))
        view = memoryview(buffer)
        fd = os.open(self._data, os.O_RDONLY)
        try:
            i = 0
            while i < len(ordered):
                j = i + 1
                while j < len(ordered) and ordered[j] == ordered[j - 1] + 1:
                    j += 1
                if os.preadv(fd, [view[i * width:j * width]], ordered[i] * width) != \
                        width * (j - i):
                    raise IndexError(f"row {ordered[j - 1]} is past the end of {self._data}")
                i = j
        finally:
            os.close(fd)
        picked = np.empty((len(ordered), dim), dtype="float32")
        picked[order] = np.frombuffer(buffer, dtype=dtype).reshape(-1, dim)
        return picked
        order = np.argsort(rows, kind="stable")
        ordered = np.asarray(rows, dtype=np.int64)[order]
        # Runs of consecutive rows: [begin, end) in ``ordered``.
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        bounds = zip(np.r_[0, breaks], np.r_[breaks, len(ordered)], strict=True)
        fd = os.open(self._data, os.O_RDONLY)
        try:
            for begin, end in bounds:
                count = int(end - begin)
                data = os.pread(fd, width * count, int(ordered[begin]) * width)
                if len(data) != width * count:
                    raise IndexError(f"row {int(ordered[end - 1])} is past the end of "
                                     f"{self._data}")
                picked[order[begin:end]] = np.frombuffer(data, dtype=dtype).reshape(count, dim)
        finally:
            os.close(fd)
        return picked

    def search(self, query, k: int, start: int = 0) -> list[tuple[str, float]]:
        """Exact nearest ids among the rows from ``start`` on, in the feature's metric and
        with Chroma's distances (cosine: 1 - cos; l2: squared; ip: 1 - dot)."""
        import numpy as np

        tail = self.tail(start)
        if not tail or k <= 0:
            return []
        space = METRICS[self.metric()]
        query = np.asarray(query, dtype="float32").ravel()
        query_norm = float(np.linalg.norm(query))
        rows = np.fromiter((row for _, row in tail), dtype=np.int64, count=len(tail))
        dim, dtype = self._layout_of()
        dtype = np.dtype(dtype)
        # The rows' squared lengths do not change: measured once per tail, they save a
        # second pass over the rows in every later search.
        key = (start, len(tail), int(rows[-1]))
        squares = self._squares[1] if self._squares and self._squares[0] == key else None
        measure = squares is None and space != "ip"
        if measure:
            squares = np.empty(len(rows), dtype=np.float32)
        dots = np.empty(len(rows), dtype=np.float32)
        # Small blocks, read (not mapped: see _gather) and widened to float32 while they are
        # still in the CPU's cache; a run of consecutive rows (the usual tail) is one read.
        for first in range(0, len(rows), SEARCH_CHUNK):
            part = rows[first:first + SEARCH_CHUNK]
            block = self._gather(part.tolist(), dim, dtype)
            # einsum, not BLAS: a matrix-vector product this small is memory-bound, and
            # BLAS's threads waiting on each other made it three times slower on a busy
            # machine (bench figures in the closing note of issue 15).
            dots[first:first + len(part)] = np.einsum("ij,j->i", block, query)
            if measure:
                squares[first:first + len(part)] = np.einsum("ij,ij->i", block, block)
        if measure:
            self._squares = (key, squares)
        if space == "cosine":
            norms = np.sqrt(squares) * query_norm
            distances = 1.0 - np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        elif space == "l2":
            distances = squares - 2 * dots + query_norm ** 2
        else:
            distances = 1.0 - dots
        keep = np.arange(len(distances)) if len(distances) <= k else \
            np.argpartition(distances, k)[:k]
        keep = keep[np.argsort(distances[keep], kind="stable")]
        return [(tail[i][0], float(distances[i])) for i in keep]

    def get(self, ids: Sequence[str]) -> dict:
        """Vectors by id as ``{id: float32 vector}``; ids the copy lacks are left out."""
        import numpy as np

        if self._layout_of() is None or not ids:
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
        order = sorted(where, key=where.get)  # read the file front to back
        rows = self._gather([where[i] for i in order], dim, np.dtype(dtype))
        return dict(zip(order, rows, strict=True))

    def __len__(self) -> int:
        if self._meta() is None:
            return 0
        with self._map() as conn:
            return conn.execute("SELECT count(*) FROM ids").fetchone()[0]
