"""Machine and workspace settings, read once from ``WORKBENCH_*`` environment variables.

Run parameters (thresholds, epochs, ...) are not settings: they are dataclasses next to the
service that uses them. Settings describe where things live and what the machine may do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workbench.errors import ConfigError

DEFAULT_INCLUDE = ("*.jpg", "*.jpeg", "*.png", "*.webp", "*.bmp", "*.tif", "*.tiff")


class Settings(BaseSettings):
    """Where the workspace lives and how the machine is used.

    Every field can be set with an environment variable named ``WORKBENCH_<FIELD>``,
    for example ``WORKBENCH_HOME=/data/ws`` or ``WORKBENCH_DEVICE=cuda:0``.
    """

    model_config = SettingsConfigDict(env_prefix="WORKBENCH_", extra="forbid")

    home: Path = Field(
        Path("data/workspace"),
        description="Workspace folder: database, blobs, vectors, logs. Created on first use.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the metadata store. Default: a SQLite file "
        "`workbench.db` inside the workspace. Any SQLAlchemy URL works (e.g. postgresql://).",
    )
    device: str = Field(
        "auto",
        description="Compute device for models: `auto` (CUDA when present, else CPU), "
        "`cpu` or `cuda:N`.",
    )
    offline: bool = Field(
        True,
        description="Keep ultralytics, Hugging Face, Chroma and FiftyOne from reaching the "
        "network (no hub downloads, no telemetry).",
    )
    max_image_pixels: int = Field(
        100_000_000,
        gt=0,
        description="Images with more pixels than this are rejected as decompression bombs.",
    )
    url_timeout_s: float = Field(10.0, gt=0, description="Timeout for each URL download.")
    max_download_bytes: int = Field(
        200_000_000, gt=0, description="URL downloads larger than this are rejected."
    )
    ingest_include: tuple[str, ...] = Field(
        DEFAULT_INCLUDE,
        description="Filename patterns taken from folders and zip archives "
        "(case-insensitive). Files named one by one are always tried.",
    )
    ingest_batch_size: int = Field(
        32, gt=0, description="Images committed per transaction during ingest."
    )
    fsync: bool = Field(
        True,
        description="fsync each blob before it is renamed into place, so that a power loss "
        "never leaves a half-written image. Turn off only for throwaway workspaces.",
    )
    job_stale_after_s: float = Field(
        30.0,
        gt=0,
        description="A running job whose worker has not sent a heartbeat for this long is "
        "taken over by another worker (a dead worker on this host is detected at once).",
    )
    worker_poll_s: float = Field(0.5, gt=0, description="How often an idle worker looks for jobs.")
    gold_fraction: float = Field(
        0.2, ge=0, le=1,
        description="Share of images reserved for the gold set (never trained on, every "
        "version scored on it) when they first become complete, drawn by a hash of their "
        "bytes.",
    )
    gold_target: int = Field(
        50, ge=0, description="The gold set's size: images stop being reserved once a "
        "collection holds this many; evaluations warn below it.",
    )
    webhook_retry_window_s: float = Field(
        86_400.0, gt=0,
        description="How long a webhook delivery is retried (exponential backoff with jitter) "
        "before it is marked failed; redeliver it by hand after that. Default 24 h.",
    )
    webhook_backoff_max_s: float = Field(
        3_600.0, gt=0, description="Longest wait between two attempts of one delivery."
    )
    clip_model: str = Field("ViT-B-32", description="open_clip architecture of the optional "
                            "CLIP embedder.")
    clip_weights: Path | None = Field(
        None, description="Local open_clip checkpoint for the CLIP embedder (adds text search)."
    )
    clip_pretrained: str | None = Field(
        None, description="open_clip pretrained tag to load from the Hugging Face cache "
        "instead of a file (never downloaded while offline)."
    )
    llm_url: str | None = Field(
        None, description="Base URL of an OpenAI-compatible chat API (e.g. http://127.0.0.1:8000"
        "/v1) used to name clusters; unset, clusters get the built-in labeller only."
    )
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to that API.")
    llm_api_key: str | None = Field(None, description="Bearer token for that API, if it needs one.")
    llm_timeout_s: float = Field(30.0, gt=0, description="Timeout of one LLM request.")
    author: str | None = Field(
        None, description="Name recorded on annotations made from this machine (default: the "
        "login name)."
    )
    lease_ttl_s: float = Field(
        300.0, gt=0, description="How long a page of a review queue stays leased to the "
        "reviewer who opened it (renewed while they work, released by their verdict)."
    )
    autostart_worker: bool = Field(
        True, description="The app starts a background worker when one is not running."
    )
    executor: Literal["local", "ray"] = Field(
        "local", description="Where batch detection runs: `local` (this process: decode "
        "threads and one model) or `ray` (a Ray Data pipeline: decode tasks and an actor pool "
        "of models, one per GPU; needs `pip install 'ray[data]'`)."
    )
    ray_address: str | None = Field(
        None, validation_alias=AliasChoices("workbench_ray_address", "ray_address"),
        description="With the ray executor: the cluster to join (`ray://host:10001`, "
        "`host:6379` or `auto`), also read from Ray's own `RAY_ADDRESS`; unset, a local Ray "
        "with this machine's CPUs is started in the worker's process."
    )
    ray_actor_idle_s: float = Field(
        300.0, ge=0,
        description="With the ray executor: how long a worker keeps its model actors (and "
        "the CPUs or GPUs they reserve) after a batch run, so that its next run of the same "
        "model starts at once; 0 stops them at the end of every run, `inf` keeps them while the "
        "worker runs."
    )
    chroma_url: str | None = Field(
        None,
        description="URL of a Chroma server holding the vectors (e.g. http://host:8000, "
        "started with `chroma run`); every worker on every machine names the same one. "
        "Unset: an embedded Chroma folder in the workspace (one machine).",
    )
    chroma_database: str | None = Field(
        None,
        description="Database on that Chroma server that holds this workspace's collections "
        "(created on first use); give each workspace sharing a server its own. Default: "
        "the server's `default_database`.",
    )
    chroma_retry_s: float = Field(
        120.0,
        ge=0,
        description="How long a write to the Chroma server is retried, with exponential "
        "backoff, while the server cannot be reached; after that the batch run fails and "
        "resumes where it stopped when it is run again.",
    )
    blob_root: Path | None = Field(
        None,
        description="Folder of the content-addressed image blobs. Default: `blobs/` in the "
        "workspace. Several machines: one shared path (an NFS mount, say) mounted at the same "
        "place on every host: the one shared filesystem a multi-host install needs.",
    )

    @field_validator("chroma_url")
    @classmethod
    def _check_chroma_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        chroma_endpoint(value)  # raises ValueError saying what is wrong
        return value.strip().rstrip("/")

    @field_validator("device")
    @classmethod
    def _check_device_syntax(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "cpu") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        if value == "cuda":
            return "cuda:0"
        raise ValueError(
            f"device {value!r} is not understood; use 'auto', 'cpu' or 'cuda:N' (e.g. 'cuda:0')"
        )

    # Paths derived from home, kept here so that every module agrees on the layout.
    @property
    def db_url(self) -> str:
        """The database: ``WORKBENCH_DATABASE_URL``, else ``workbench.db`` in the workspace."""
        return self.database_url or f"sqlite:///{(self.home / 'workbench.db').resolve()}"

    @property
    def blobs_dir(self) -> Path:
        """The folder of the content-addressed image blobs: ``WORKBENCH_BLOB_ROOT``, else
        ``blobs/`` in the workspace."""
        return self.blob_root if self.blob_root is not None else self.home / "blobs"

    @property
    def vectors_dir(self) -> Path:
        """The folder of the Chroma vector store."""
        return self.home / "vectors"

    @property
    def staging_dir(self) -> Path:
        """The folder uploads are saved in before they are ingested."""
        return self.home / "staging"

    @property
    def logs_dir(self) -> Path:
        """The folder of log files."""
        return self.home / "logs"

    def apply_environment(self) -> None:
        """Set, once, the variables that keep third-party libraries offline and in the workspace."""
        home = self.home.resolve()
        os.environ.setdefault("YOLO_CONFIG_DIR", str(home / "ultralytics"))
        os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(home / "fiftyone-db"))
        os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chroma
        os.environ.setdefault("MPLCONFIGDIR", str(home / "matplotlib"))
        if self.offline:
            os.environ.setdefault("YOLO_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def chroma_endpoint(url: str) -> tuple[str, int, bool]:
    """``(host, port, ssl)`` of a Chroma server URL such as ``http://host:8000``; ValueError
    naming what is wrong otherwise."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 \
            or parts.path.strip("/") or parts.query:
        raise ValueError(
            f"chroma_url {url!r} is not a Chroma server URL; write it as http://host:port "
            "(e.g. http://127.0.0.1:8000), or unset WORKBENCH_CHROMA_URL for the embedded store"
        )
    ssl = parts.scheme == "https"
    return parts.hostname, port or (443 if ssl else 80), ssl


def load_settings(**overrides) -> Settings:
    """Read settings from the environment; keyword arguments win over it."""
    try:
        return Settings(**overrides)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise ConfigError(f"invalid WORKBENCH_* setting: {exc}") from None


def resolve_device(requested: str) -> str:
    """Turn ``auto``/``cpu``/``cuda:N`` into a device that exists, or explain what does."""
    import torch  # heavy; only callers that run models get here

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested == "auto":
        return "cuda:0" if count else "cpu"
    if requested == "cpu":
        return "cpu"
    index = int(requested.split(":", 1)[1])
    if count == 0:
        raise ConfigError(
            f"device {requested!r} was asked for, but torch sees no CUDA device on this "
            "machine; set WORKBENCH_DEVICE=cpu (or auto)"
        )
    if index >= count:
        available = ", ".join(f"cuda:{i}" for i in range(count))
        raise ConfigError(
            f"device {requested!r} was asked for, but only {count} CUDA device(s) exist "
            f"({available}); use one of them, or 'auto'"
        )
    return requested
