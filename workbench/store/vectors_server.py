"""Vectors on a Chroma server (``WORKBENCH_CHROMA_URL``), shared by workers on many machines.

The layout is the embedded store's: one collection per feature URI, named by
:func:`~workbench.store.vectors.collection_name`, with the same ids (a detection's id, or a
document's for image features). What differs is the write path. The embedded store writes a
local contiguous copy and builds Chroma's index behind it; a copy on one host is invisible
to the others, so here Chroma itself is the store of record: writes go straight to the
server in batches of its own maximum size, and the server indexes them as they arrive
(nothing is ever "behind", :meth:`index` has nothing to do).

A write that cannot reach the server (refused, reset, timed out) is retried with
exponential backoff for ``retry_s`` seconds (tenacity), so a server restart does not fail a
batch run; past that the run fails with one line saying which URL and what to do, and the
run, started again, resumes where it stopped (vectors are upserts by id, and a batch's
documents commit only after its vectors are written). Reads are not retried: a page that
cannot reach the server says so at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from workbench.config import chroma_endpoint
from workbench.errors import MissingDependencyError, ValidationError, WorkbenchError
from workbench.store.vectors import METRICS, VectorStore, collection_name

log = logging.getLogger(__name__)
T = TypeVar("T")


def open_vector_store(settings) -> VectorStore:
    """The workspace's vector store: on the Chroma server named by ``WORKBENCH_CHROMA_URL``
    (shared by every machine), else embedded in the workspace's ``vectors/`` folder."""
    if settings.chroma_url:
        return ServerVectorStore(settings.chroma_url, database=settings.chroma_database,
                                 retry_s=settings.chroma_retry_s)
    return VectorStore(settings.vectors_dir)


class VectorServerUnavailable(WorkbenchError):
    """The Chroma server named by ``WORKBENCH_CHROMA_URL`` cannot be reached."""


def unreachable(exc: BaseException) -> bool:
    """Whether an error means the server could not be reached (as opposed to a request it
    refused): an httpx transport error anywhere in the chain (chromadb wraps some of them in
    a ValueError when a client is opened)."""
    import httpx

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, httpx.TransportError | VectorServerUnavailable):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class ServerVectorStore(VectorStore):
    """Embeddings in collections of a Chroma server, one per feature URI."""

    def __init__(self, url: str, database: str | None = None, retry_s: float = 120.0,
                 path: Path | None = None):
        super().__init__(path or Path("."))  # no folder is used: nothing is kept locally
        self.url = url
        self.host, self.port, self.ssl = chroma_endpoint(url)
        self.database = database
        self.retry_s = retry_s
        self._collections: dict[str, Any] = {}
        self._batch_size: int | None = None
        self._cache_lock = threading.Lock()

    # -- connecting --------------------------------------------------------------------
    def _open(self):
        if self._client is not None:
            return self._client
        try:
            import chromadb
            from chromadb.config import DEFAULT_DATABASE
            from chromadb.errors import NotFoundError as ChromaNotFound
        except ImportError as exc:  # pragma: no cover - chromadb is in requirements.txt
            raise MissingDependencyError(
                "vectors need chromadb: pip install -r requirements.txt") from exc
        database = self.database or DEFAULT_DATABASE
        # httpx logs every request at INFO: four lines per batch in a worker's log
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            httpx_log.setLevel(logging.WARNING)
        try:
            if self.database:
                admin = chromadb.AdminClient(self._chroma_settings())
                try:
                    admin.get_database(database)
                except ChromaNotFound:
                    admin.create_database(database)
            self._client = chromadb.HttpClient(
                host=self.host, port=self.port, ssl=self.ssl, database=database,
                settings=self._chroma_settings())
        except Exception as exc:
            if unreachable(exc):
                raise self.unavailable(exc) from exc
            raise
        return self._client

    def _chroma_settings(self):
        # The admin client and the client must be given equal settings: chromadb keeps one
        # system per server and refuses a second one with other settings.
        from chromadb.config import Settings as ChromaSettings

        return ChromaSettings(
            anonymized_telemetry=False, chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host=self.host, chroma_server_http_port=self.port,
            chroma_server_ssl_enabled=self.ssl)

    def unavailable(self, exc: BaseException | None = None, waited_s: float | None = None
                    ) -> VectorServerUnavailable:
        """The one-line error of an unreachable server: which URL, why, what to do."""
        reason = _reason(exc)
        waited = f" (retried for {waited_s:.0f} s)" if waited_s else ""
        return VectorServerUnavailable(
            f"cannot reach the Chroma server at {self.url}{waited}: {reason}; start it "
            f"(`chroma run --path <folder> --host 0.0.0.0 --port {self.port}`) or point "
            "WORKBENCH_CHROMA_URL at a running one (unset it for the embedded store)")

    def describe(self) -> dict:
        """What the server says about itself, changing nothing (``workbench doctor``): its
        version, its largest batch, and whether this workspace's database exists yet."""
        import chromadb
        from chromadb.config import DEFAULT_DATABASE
        from chromadb.errors import NotFoundError as ChromaNotFound

        def ask() -> dict:
            # on the default database, which every server has: opening a client on this
            # workspace's would create it
            client = chromadb.HttpClient(host=self.host, port=self.port, ssl=self.ssl,
                                         settings=self._chroma_settings())
            client.heartbeat()
            found = {"version": client.get_version(),
                     "max_batch_size": client.get_max_batch_size(),
                     "database": self.database or DEFAULT_DATABASE, "database_exists": True}
            if self.database:
                try:
                    chromadb.AdminClient(self._chroma_settings()).get_database(self.database)
                except ChromaNotFound:
                    found["database_exists"] = False
            return found

        return self._read(ask)

    def max_batch_size(self) -> int:
        """The most records the server takes in one request."""
        if self._batch_size is None:
            self._batch_size = self._read(lambda: self.client.get_max_batch_size())
        return self._batch_size

    # -- calls, retried or not -----------------------------------------------------------
    def _read(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except Exception as exc:
            if unreachable(exc) and not isinstance(exc, VectorServerUnavailable):
                raise self.unavailable(exc) from exc
            raise

    def _write(self, call: Callable[[], T]) -> T:
        """``call`` retried with exponential backoff (0.5 s doubling up to 15 s) while the
        server cannot be reached, for ``retry_s`` seconds in all."""
        import time

        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

        def waiting(state) -> None:
            log.warning("the Chroma server at %s does not answer (%s); trying again in %.1f s "
                        "(for up to %.0f s in all)", self.url,
                        _reason(state.outcome.exception()), state.upcoming_sleep, self.retry_s)

        started = time.monotonic()
        try:
            for attempt in Retrying(retry=retry_if_exception(unreachable),
                                    stop=stop_after_delay(self.retry_s),
                                    wait=wait_exponential(multiplier=0.5, max=15),
                                    before_sleep=waiting, reraise=True):
                with attempt:
                    return call()
        except Exception as exc:
            if unreachable(exc):
                raise self.unavailable(exc, time.monotonic() - started) from exc
            raise
        raise AssertionError("unreachable")  # pragma: no cover - Retrying returns or raises

    # -- the store's interface -------------------------------------------------------------
    def collection(self, feature_uri: str, metric: str = "cosine"):
        """Get or create the collection that holds one feature's vectors."""
        if metric not in METRICS:
            raise ValidationError(
                f"distance metric {metric!r} is not supported; use one of {sorted(METRICS)}")
        key = f"{feature_uri}\n{metric}"
        with self._cache_lock:
            found = self._collections.get(key)
        if found is None:
            found = super().collection(feature_uri, metric)
            with self._cache_lock:
                self._collections[key] = found
        return found

    def _existing(self, feature_uri: str):
        """The feature's collection, or None when the server has none (reading must not
        create one)."""
        from chromadb.errors import NotFoundError as ChromaNotFound

        try:
            return self._read(lambda: self.client.get_collection(
                collection_name(feature_uri), embedding_function=None))
        except ChromaNotFound:
            return None

    def _has_collection(self, feature_uri: str) -> bool:
        return self._existing(feature_uri) is not None

    def upsert(self, feature_uri: str, ids: Sequence[str], embeddings,
               metric: str = "cosine") -> None:
        """Add or replace vectors by id, in batches of the server's maximum size, each
        retried while the server is unreachable; searchable as soon as this returns."""
        import numpy as np

        if len(ids) == 0:
            return
        matrix = np.asarray(embeddings, dtype="float32")
        if matrix.ndim != 2 or len(matrix) != len(ids):
            raise ValidationError(f"{len(ids)} ids for vectors of shape {matrix.shape}")
        ids = [str(i) for i in ids]
        step = self._write(self.max_batch_size)
        for start in range(0, len(ids), step):
            chunk_ids, chunk = ids[start:start + step], matrix[start:start + step]
            self._write(lambda c=chunk_ids, m=chunk: self.collection(
                feature_uri, metric).upsert(ids=c, embeddings=m))

    def index(self, feature_uri: str, progress=None, batch: int = 5_000,
              limit: int | None = None) -> int:
        """Nothing to do: the server indexes vectors as they are written."""
        return 0

    def unindexed(self) -> dict[str, int]:
        """Always empty: no vector waits for an index on a server."""
        return {}

    def pending(self, feature_uri: str) -> int:
        """Always 0 (see :meth:`unindexed`)."""
        return 0

    def query(self, feature_uri: str, embedding, k: int = 10) -> list[tuple[str, float]]:
        """Nearest ids to one vector, with distances in the collection's metric."""
        collection = self._existing(feature_uri)
        if collection is None or k <= 0:
            return []
        size = self._read(collection.count)
        if not size:
            return []
        result = self._read(lambda: collection.query(
            query_embeddings=[embedding], n_results=min(k, size), include=["distances"]))
        return list(zip(result["ids"][0], result["distances"][0], strict=True))

    def get_by_id(self, feature_uri: str, ids: Sequence[str]) -> dict:
        """Embeddings by id, as ``{id: float32 vector}`` (missing ids are left out)."""
        ids = list(dict.fromkeys(str(i) for i in ids))
        if not ids or self._existing(feature_uri) is None:
            return {}
        return self._read(lambda: self._chroma_get(feature_uri, ids))

    def count(self, feature_uri: str) -> int:
        """How many vectors one feature holds."""
        collection = self._existing(feature_uri)
        return 0 if collection is None else self._read(collection.count)


def _reason(exc: BaseException | None) -> str:
    """The words of the transport error behind ``exc`` (``[Errno 111] Connection refused``)."""
    import httpx

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, httpx.TransportError | OSError):
            words = getattr(exc, "strerror", None) or " ".join(str(exc).split())
            return words or type(exc).__name__
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return "no answer"
