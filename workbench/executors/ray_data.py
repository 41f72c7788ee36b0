"""Batch detection on Ray (``WORKBENCH_EXECUTOR=ray``): a batch run as a Ray Data pipeline.

    object ids → decode (CPU tasks) → extractor in an actor pool (one model per actor, one
    GPU each when the cluster has GPUs) → the job's process, which writes each batch

Only where the images are decoded and where the model runs changes. The job's process (the
Ray driver) keeps everything else: the job row and its heartbeat, the list of what is left
(so a resumed run starts where the killed one stopped), progress, cancel (checked between
batches) and every write, through the local executor's own ``DetectionService._persist``:
vectors by deterministic id, then documents and detections in one transaction. A run killed
at any point resumes with no duplicate document, detection or vector, as a local one does.

The pipeline streams: the driver takes batches as the actors finish them
(``iter_batches``), and Ray Data's backpressure bounds the decoded images in flight. (Where
the decode tasks ask what the actors ask, on a small CPU-only cluster, Ray Data fuses the two
stages and each actor decodes its own batch before running it.) The
model actors get the weights through Ray's object store, so a cluster's machines need the
workbench installed and the blob root mounted (the images are read where they are decoded),
not the workspace. ``RAY_ADDRESS`` (setting ``ray_address``) joins an existing cluster;
without it the first run starts a local Ray in the job's process, kept for the next run.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench.config import Settings
    from workbench.detection import DetectionService
    from workbench.domain import Collection, ExtractorVersion
    from workbench.jobs import JobContext
    from workbench.params import DetectParams

log = logging.getLogger(__name__)

RAY_REQUIREMENT = "ray[data]==2.60.0"
# What keeps ultralytics and Hugging Face offline and their files in one place: the job's
# process has it (Settings.apply_environment), a cluster's workers may not.
FORWARDED_ENVIRONMENT = ("YOLO_OFFLINE", "YOLO_CONFIG_DIR", "HF_HUB_OFFLINE",
                         "TRANSFORMERS_OFFLINE", "MPLCONFIGDIR")
DECODE_BATCHES = 1  # model batches per task: its results reach the driver when it ends
CPU_ACTOR_THREADS = 4  # torch threads of a model actor on CPUs (one actor per this many CPUs)


def import_ray():
    """The ``ray`` module with Ray Data, or a ConfigError that says what to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the pipeline's half of Ray)
    except ImportError:
        raise ConfigError(f"WORKBENCH_EXECUTOR=ray needs Ray Data, which is not installed: "
                          f"pip install '{RAY_REQUIREMENT}' (or set WORKBENCH_EXECUTOR=local)"
                          ) from None
    return ray


def connect(settings: Settings):
    """Join the cluster at ``settings.ray_address``, or start a local Ray on this machine's
    CPUs (and GPUs); once per process: a later run reuses the connection. Returns ``ray``."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if settings.offline:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reports usage otherwise
    options = {"include_dashboard": False, "log_to_driver": False,
               "logging_level": logging.WARNING, "namespace": "workbench"}
    address = settings.ray_address
    try:
        if address:
            _check_reachable(address)  # Ray itself retries for minutes before it gives up
            ray.init(address=address, **options)
        else:
            ray.init(address="local", **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        fix = ("start one with `ray start --head` or correct WORKBENCH_RAY_ADDRESS / "
               "RAY_ADDRESS (unset both to start a local Ray)") if address else \
            "see the Ray log under /tmp/ray/session_latest/logs"
        raise ConfigError(f"could not start or join {where}: {reason}; {fix}") from None
    return ray


def _check_reachable(address: str) -> None:
    """A ConnectionError at once when nothing listens at ``address`` (``host:port`` or
    ``ray://host:port``; ``auto`` is looked up by Ray itself)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc.strerror or exc})"
                              ) from None


@dataclass(frozen=True)
class RayPlan:
    """How a run uses the cluster: how many model actors, what each reserves, and the
    decode tasks' CPU share."""

    actors: int
    actor_cpus: float
    actor_gpus: float
    torch_threads: int | None  # None: what Ray gives the actor (OMP_NUM_THREADS = its CPUs)
    decode_cpus: float

    @property
    def device(self) -> str:
        """The device setting each actor resolves on its own machine."""
        return "auto" if self.actor_gpus else "cpu"


def plan_for(resources: dict[str, float], device: str) -> RayPlan:
    """The default plan for a cluster's total ``resources`` (``ray.cluster_resources()``).

    With GPUs (and the device setting not ``cpu``): one actor per GPU, each on its GPU and
    one CPU; decoding has the other CPUs. CPUs only: one actor per ``CPU_ACTOR_THREADS``
    CPUs running that many torch threads, each reserving one CPU less than it uses so that
    decode tasks always have a CPU to run on (decoding is a small share of the work; the
    model would otherwise wait for images that cannot be scheduled)."""
    gpus = int(resources.get("GPU", 0)) if device != "cpu" else 0
    cpus = max(1.0, float(resources.get("CPU", 1)))
    if gpus:
        return RayPlan(actors=gpus, actor_cpus=1, actor_gpus=1, torch_threads=None,
                       decode_cpus=1)
    actors = max(1, int(cpus // CPU_ACTOR_THREADS))
    threads = max(1, int(cpus // actors))
    return RayPlan(actors=actors, actor_cpus=max(1, threads - 1), actor_gpus=0,
                   torch_threads=threads, decode_cpus=1)


def decode_images(batch: dict[str, Any]) -> dict[str, Any]:
    """A Ray task: read and decode a block of images (RGB arrays, EXIF orientation applied:
    what the local executor gives the model)."""
    import numpy as np

    from workbench.images import load_image

    return {"object_id": batch["object_id"],
            "image": [np.asarray(load_image(Path(path))) for path in batch["path"]]}


class ModelActor:
    """One model on a Ray worker: a version's extractor, loaded once, run on batches. Its
    outputs go back to the driver pickled, exactly as ``process`` returned them."""

    def __init__(self, version: ExtractorVersion, weights: Any, weights_name: str | None,
                 weights_sha256: str | None, params: dict[str, Any], device: str,
                 environment: dict[str, str], torch_threads: int | None,
                 code_folder: str | None):
        for name, value in environment.items():
            os.environ.setdefault(name, value)
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        from workbench.config import resolve_device
        from workbench.registry import build_extractor

        path = None
        if weights is not None:
            path = _weights_here(weights, weights_name or "weights.pt", weights_sha256)
        self.extractor = build_extractor(version, path, resolve_device(device), params,
                                         Path(code_folder) if code_folder else None)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        outputs = self.extractor.process(list(batch["image"]))
        return {"object_id": batch["object_id"],
                "output": np.array([pickle.dumps(out, protocol=5) for out in outputs],
                                   dtype=object)}


def _weights_here(weights: Any, name: str, sha256: str | None) -> Path:
    """The weights as a file on this machine: fetched from the object store once per
    machine and checksum, into the temp folder (written aside, then renamed into place)."""
    import ray

    folder = Path(tempfile.gettempdir()) / "workbench-ray-weights" / (sha256 or "unhashed")
    path = folder / name
    if sha256 and path.exists():
        return path
    data = ray.get(weights) if isinstance(weights, ray.ObjectRef) else weights
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.{os.getpid()}.part"
    partial.write_bytes(data)
    os.replace(partial, path)
    return path


def run_on_ray(service: DetectionService, ctx: JobContext, collection: Collection,
               version: ExtractorVersion, params: DetectParams, pending: list[Any],
               done: int, total: int, plan: RayPlan | None = None) -> tuple[int, int]:
    """Run ``pending`` (the rows of the objects left, in order) through ``version`` on Ray
    and write the results as the local executor does; returns the images processed and the
    detections found. ``plan`` overrides :func:`plan_for` (a benchmark's or a test's)."""
    if not pending:
        return 0, 0
    settings = service.wb.settings
    ray = connect(settings)
    from ray.data import ActorPoolStrategy, DataContext

    data_context = DataContext.get_current()
    data_context.enable_progress_bars = False  # the job's progress is the progress
    data_context.print_on_execution_start = False
    plan = plan or plan_for(ray.cluster_resources(), settings.device)
    weights_file = service.wb.registry.weights_file(version)
    weights = name = checksum = None
    if weights_file is not None:
        data = weights_file.read_bytes()
        weights, name, checksum = ray.put(data), weights_file.name, hashlib.sha256(data).hexdigest()
    code_folder = service.wb.home / version.code_path if version.code_path else None
    environment = {k: os.environ[k] for k in FORWARDED_ENVIRONMENT if k in os.environ}

    rows = {row.id: row for row in pending}
    items = [{"object_id": row.id, "path": str(service.wb.image_path(row))} for row in pending]
    dataset = ray.data.from_items(
        items, override_num_blocks=math.ceil(len(items) / (params.batch_size * DECODE_BATCHES)))
    dataset = dataset.map_batches(decode_images, batch_size=None, batch_format="numpy",
                                  num_cpus=plan.decode_cpus)
    dataset = dataset.map_batches(
        ModelActor, batch_size=params.batch_size, batch_format="numpy",
        compute=ActorPoolStrategy(size=plan.actors), num_cpus=plan.actor_cpus,
        num_gpus=plan.actor_gpus or None,
        fn_constructor_kwargs={
            "version": version, "weights": weights, "weights_name": name,
            "weights_sha256": checksum, "params": params.model_params(),
            "device": plan.device,
            "environment": environment, "torch_threads": plan.torch_threads,
            "code_folder": str(code_folder) if code_folder else None})
    log.info("batch run of %s on Ray: %d images, %s", version.key, len(items), plan)
    ctx.progress(done, total, f"{version.key}: starting {plan.actors} model actor(s) on Ray "
                 f"for {len(items)} images")  # their start takes seconds: say so meanwhile

    started = time.perf_counter()
    processed = detections = 0
    written: set[str] = set()  # a task Ray retried may hand an image over twice
    batches = iter(dataset.iter_batches(batch_size=params.batch_size, batch_format="numpy"))
    try:
        for batch in batches:
            ctx.check_cancelled()
            fresh = [(rows[object_id], pickle.loads(output)) for object_id, output
                     in zip(batch["object_id"].tolist(), batch["output"], strict=True)
                     if object_id not in written]
            if not fresh:
                continue
            detections += service._persist(ctx, collection, version,
                                           [row for row, _ in fresh], [out for _, out in fresh])
            written.update(row.id for row, _ in fresh)
            processed += len(fresh)
            rate = processed / max(time.perf_counter() - started, 1e-9)
            ctx.progress(done + processed, total,
                         f"{version.key}: {done + processed}/{total} images "
                         f"({rate:.1f} img/s on Ray, {plan.actors} model actor(s))")
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops the pipeline and its actors (a cancel or a failure)
    return processed, detections
