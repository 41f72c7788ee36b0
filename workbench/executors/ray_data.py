"""Batch detection on Ray (``WORKBENCH_EXECUTOR=ray``): a batch run as a Ray Data pipeline.

    object ids → decode (CPU tasks) → extractor in an actor pool (one model per actor, one
    GPU each when the cluster has GPUs) → the job's process, which writes each batch

Only where the images are decoded and where the model runs changes. The job's process (the
Ray driver) keeps everything else: the job row and its heartbeat, the list of what is left
(so a resumed run starts where the killed one stopped), progress, cancel (checked between
batches) and every write, through the local executor's own ``DetectionService._persist``:
vectors by deterministic id, then documents and detections in one transaction. A run killed
at any point resumes with no duplicate document, detection or vector, as a local one does.

The pipeline streams: Ray Data decodes the images in CPU tasks, block by block, and the
driver hands each decoded block (a reference: the images stay in Ray's object store) to a
free model actor, two blocks ahead per actor, pulling the next block only as the actors take
them, so the decoded images in flight stay bounded. The model actors are plain Ray actors
that outlive a run (:class:`ModelPool`): a worker's first run of a version starts them
(process, imports, model: seconds), its next runs of that version find them loaded. They get
the weights through Ray's object store, so a cluster's machines need the workbench installed
and the blob root mounted (the images are read where they are decoded), not the workspace.
``RAY_ADDRESS`` (setting ``ray_address``) joins an existing cluster; without it the first run
starts a local Ray in the job's process, kept for the next run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import math
import os
import socket
import tempfile
import threading
import time
import uuid
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
NAMESPACE = "workbench"  # the Ray namespace of the workers' actors
ACTOR_RESTARTS = 3  # a model actor that dies is restarted, and its calls retried, this often


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
               "logging_level": logging.WARNING, "namespace": NAMESPACE}
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
    CPUs running that many torch threads, each reserving one CPU less than it uses. Either
    way a decode task must always fit beside the actors (they stay up between runs: the
    model would wait for images that cannot be scheduled), so on a cluster too small for
    that (one CPU; as many CPUs as GPUs) the actors and a decode task share the CPUs
    evenly."""
    gpus = int(resources.get("GPU", 0)) if device != "cpu" else 0
    cpus = max(1.0, float(resources.get("CPU", 1)))
    if gpus:
        plan = RayPlan(actors=gpus, actor_cpus=1, actor_gpus=1, torch_threads=None,
                       decode_cpus=1)
    else:
        actors = max(1, int(cpus // CPU_ACTOR_THREADS))
        threads = max(1, int(cpus // actors))
        plan = RayPlan(actors=actors, actor_cpus=max(1, threads - 1), actor_gpus=0,
                       torch_threads=threads, decode_cpus=1)
    if plan.actors * plan.actor_cpus + plan.decode_cpus > cpus:
        share = round(cpus / (plan.actors + 1), 3)
        plan = dataclasses.replace(plan, actor_cpus=share, decode_cpus=share)
    return plan


def decode_images(batch: dict[str, Any]) -> dict[str, Any]:
    """A Ray task: read and decode a block of images (RGB arrays, EXIF orientation applied:
    what the local executor gives the model)."""
    import numpy as np

    from workbench.images import load_image

    return {"object_id": batch["object_id"],
            "image": [np.asarray(load_image(Path(path))) for path in batch["path"]]}


class ModelActor:
    """One model on a Ray worker: a version's extractor, loaded once and kept for the worker's
    later runs of that version (see :class:`ModelPool`), run on blocks of decoded images."""

    def __init__(self, version: ExtractorVersion, weights: str | None, weights_name: str | None,
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

    def process_block(self, block: Any, window: tuple[int, int] | None,
                      batch_size: int) -> dict[str, list]:
        """Run the model over one block of the decode stage's output (its rows
        ``window[0]:window[1]`` when Ray Data hands over a slice), ``batch_size`` images at a
        time; the object ids and the extractor's outputs, in the block's order."""
        from ray.data.block import BlockAccessor

        accessor = BlockAccessor.for_block(block)
        if window is not None:
            accessor = BlockAccessor.for_block(accessor.slice(*window, copy=False))
        batch = accessor.to_batch_format("numpy")
        object_ids, images = batch["object_id"].tolist(), list(batch["image"])
        outputs: list[dict[str, Any]] = []
        for at in range(0, len(images), batch_size):
            outputs.extend(self.extractor.process(images[at:at + batch_size]))
        return {"object_ids": object_ids, "outputs": outputs}


class WeightsHolder:
    """A model's weights on the cluster, for its actors to fetch when they start, and again
    when Ray restarts one; the actors find it by name. (Given to them as an argument that
    lives in the object store, a reference or a handle, the weights would make Ray warn at
    every start that a restart might not find them.)"""

    def __init__(self, data: bytes):
        self.data = data

    def get(self) -> bytes:
        return self.data


def _weights_here(holder: str, name: str, sha256: str | None) -> Path:
    """The weights as a file on this machine: fetched from their holder (the
    :class:`WeightsHolder` actor of that name) once per machine and checksum, into the temp
    folder (written aside, then renamed into place)."""
    import ray

    folder = Path(tempfile.gettempdir()) / "workbench-ray-weights" / (sha256 or "unhashed")
    path = folder / name
    if sha256 and path.exists():
        return path
    data = ray.get(ray.get_actor(holder, namespace=NAMESPACE).get.remote())
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.{os.getpid()}.part"
    partial.write_bytes(data)
    os.replace(partial, path)
    return path


class ModelPool:
    """A worker's model actors for one version (its weights, params and plan), kept between
    runs: Ray Data would start a new actor pool for every run (a process, torch's imports,
    the model loaded: seconds before the first batch), which a run of a few hundred images
    cannot amortise. One pool per worker process at a time (a run of another model stops it
    first, so that its GPUs are free), stopped after ``ray_actor_idle_s`` without a run, and
    with the process: the actors belong to the worker that made them."""

    _current: ModelPool | None = None
    _lock = threading.Lock()

    def __init__(self, ray: Any, key: tuple, actors: list[Any], holder: Any):
        self.ray, self.key, self.actors = ray, key, actors
        self._holder = holder  # the WeightsHolder actor the actors fetch the weights from
        self._timer: threading.Timer | None = None

    @classmethod
    def acquire(cls, ray: Any, service: DetectionService, version: ExtractorVersion,
                params: DetectParams, plan: RayPlan) -> tuple[ModelPool, bool]:
        """The pool for this run (the worker's current one when it fits, else a new one) and
        whether it is new. Holds the pool until :meth:`release_after`."""
        cls._lock.acquire()
        try:
            weights_file = service.wb.registry.weights_file(version)
            data, checksum = None, version.weights_sha256  # the registry's, taken once
            if weights_file is not None and checksum is None:
                data = weights_file.read_bytes()
                checksum = hashlib.sha256(data).hexdigest()
            context = ray.get_runtime_context()
            model_params = params.model_params()
            key = (context.get_node_id(), context.get_job_id(), version.key, checksum,
                   repr(sorted(model_params.items())), plan)
            current = cls._current
            if current is not None:
                current._cancel_timer()
                if current.key == key:
                    return current, False
                current.stop()
            if weights_file is not None and data is None:
                data = weights_file.read_bytes()
            code_folder = service.wb.home / version.code_path if version.code_path else None
            holder = f"workbench-weights-{uuid.uuid4().hex}" if data is not None else None
            holder_actor = (ray.remote(WeightsHolder).options(
                num_cpus=0, name=holder, namespace=NAMESPACE).remote(data)
                if data is not None else None)
            remote = ray.remote(ModelActor).options(
                num_cpus=plan.actor_cpus, num_gpus=plan.actor_gpus or None,
                max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS)
            environment = {k: os.environ[k] for k in FORWARDED_ENVIRONMENT if k in os.environ}
            actors = [remote.remote(
                version, holder, weights_file.name if weights_file else None, checksum,
                model_params, plan.device, environment, plan.torch_threads,
                str(code_folder) if code_folder else None) for _ in range(plan.actors)]
            cls._current = cls(ray, key, actors, holder_actor)
            return cls._current, True
        except BaseException:
            cls._lock.release()
            raise

    def release_after(self, idle_s: float) -> None:
        """The run is over: keep the actors for ``idle_s`` seconds for the next run (stop
        them now with 0; keep them while the worker lives with ``inf``), and let the next run
        have the pool."""
        try:
            if idle_s <= 0:
                self.stop()
            elif idle_s >= threading.TIMEOUT_MAX:  # inf, or past what a timer can wait:
                self._timer = None  # kept until the worker exits
            else:
                timer = self._timer = threading.Timer(idle_s, lambda: self._stop_if_idle(timer))
                timer.daemon = True
                timer.start()
        finally:
            type(self)._lock.release()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _stop_if_idle(self, timer: threading.Timer) -> None:
        with type(self)._lock:  # a run that took the pool meanwhile replaced or cleared it
            if self._timer is timer and type(self)._current is self:
                self.stop()

    def stop(self) -> None:
        """Stop the actors (their CPUs or GPUs are free again). The caller holds the lock."""
        self._cancel_timer()
        if type(self)._current is self:
            type(self)._current = None
        if self.ray.is_initialized():
            holder = [self._holder] if self._holder is not None else []
            for actor in [*self.actors, *holder]:
                try:
                    self.ray.kill(actor)
                except Exception:  # noqa: BLE001  (already gone with its node)
                    log.debug("model actor already stopped", exc_info=True)
        self.actors, self._holder = [], None

    @classmethod
    def stop_current(cls) -> None:
        """Stop the worker's model actors now, if it has any (tests, shutdown)."""
        with cls._lock:
            if cls._current is not None:
                cls._current.stop()


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
    from ray.data import DataContext
    from ray.util import ActorPool

    data_context = DataContext.get_current()
    data_context.enable_progress_bars = False  # the job's progress is the progress
    data_context.print_on_execution_start = False
    data_log = logging.getLogger("ray.data")
    if data_log.level < logging.ERROR:  # its "bars disabled" and "execution finished" lines
        data_log.setLevel(logging.ERROR)  # would land in the worker's and the CLI's output
    plan = plan or plan_for(ray.cluster_resources(), settings.device)
    pool, new = ModelPool.acquire(ray, service, version, params, plan)
    try:
        return _run_pipeline(ray, ActorPool(pool.actors), new, service, ctx, collection,
                             version, params, pending, done, total, plan)
    except BaseException:
        pool.stop()  # a failed run's actors are not trusted with the next one
        raise
    finally:
        pool.release_after(settings.ray_actor_idle_s)


def _run_pipeline(ray: Any, actors: Any, new: bool, service: DetectionService,
                  ctx: JobContext, collection: Collection, version: ExtractorVersion,
                  params: DetectParams, pending: list[Any], done: int, total: int,
                  plan: RayPlan) -> tuple[int, int]:
    """Decode on Ray Data, run the model on the pool's actors, write here (in the order the
    actors finish); the images processed and the detections found."""
    rows = {row.id: row for row in pending}
    items = [{"object_id": row.id, "path": str(service.wb.image_path(row))} for row in pending]
    dataset = ray.data.from_items(
        items, override_num_blocks=math.ceil(len(items) / (params.batch_size * DECODE_BATCHES)))
    dataset = dataset.map_batches(decode_images, batch_size=None, batch_format="numpy",
                                  num_cpus=plan.decode_cpus)
    log.info("batch run of %s on Ray: %d images, %s", version.key, len(items), plan)
    what = "starting" if new else "on"
    ctx.progress(done, total, f"{version.key}: {what} {plan.actors} model actor(s) on Ray "
                 f"for {len(items)} images")  # a start takes seconds: say so meanwhile

    started = time.perf_counter()
    processed = detections = 0
    written: set[str] = set()  # a call Ray retried on a restarted actor may repeat images
    bundles = dataset.iter_internal_ref_bundles()  # blocks stay in the object store
    blocks = ((entry.ref, (piece.start_offset, piece.end_offset) if piece else None)
              for bundle in bundles for entry, piece in zip(bundle.blocks, bundle.slices,
                                                           strict=True))
    ahead = 2 * plan.actors  # one running and one waiting per actor

    def submit(count: int) -> None:
        for block in itertools.islice(blocks, count):
            actors.submit(lambda actor, b: actor.process_block.remote(*b, params.batch_size),
                          block)

    try:
        submit(ahead)
        while actors.has_next():
            result = actors.get_next_unordered()
            submit(1)  # the stream stays ahead of the actors while this batch is written
            ctx.check_cancelled()
            fresh = [(rows[object_id], output) for object_id, output
                     in zip(result["object_ids"], result["outputs"], strict=True)
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
        close = getattr(bundles, "close", None)
        if close is not None:
            close()  # stops the decode stage (a cancel or a failure)
    return processed, detections
