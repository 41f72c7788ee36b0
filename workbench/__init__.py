"""Flywheel Workbench: a local workbench for object detection that gets better with use.

``Workbench.open(path)`` is the one entry point for scripts, the CLI and the app::

    from workbench import Workbench
    wb = Workbench.open("data/workspace")
    wb.buckets.create("footage", {"properties": {"image": {"type": "image", "required": True},
                                                  "camera_id": {"type": "text"}}})
    report = wb.ingest.run("footage", ["frames/"], metadata={"camera_id": "cam_lobby_01"})

Importing this package loads no heavy library (torch, ultralytics, chromadb, fiftyone, umap,
hdbscan, streamlit); services import them when they are used.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from workbench.config import Settings, load_settings
from workbench.errors import WorkbenchError
from workbench.images import FORMAT_EXTENSIONS
from workbench.store.blobs import BlobStore
from workbench.store.metadata import MetadataStore

__all__ = ["Settings", "Workbench", "WorkbenchError"]
__version__ = "0.1.0"


class Workbench:
    """A workspace and the services that work on it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.apply_environment()
        self.db = MetadataStore(settings.db_url, lock_dir=settings.home)
        self.db.migrate()
        self.db.ensure_statistics()
        self.blobs = BlobStore(settings.blobs_dir, fsync=settings.fsync)

    @classmethod
    def open(cls, home: str | Path | None = None, **overrides) -> Workbench:
        """Open (creating and migrating if needed) the workspace at ``home``.

        Without ``home`` the ``WORKBENCH_HOME`` setting is used (default ``data/workspace``).
        Other keyword arguments override settings for this process only.
        """
        if home is not None:
            overrides["home"] = Path(home)
        return cls(load_settings(**overrides))

    @property
    def home(self) -> Path:
        """The workspace folder."""
        return self.settings.home

    @cached_property
    def vectors(self):
        """The vector store: Chroma in the workspace's ``vectors/`` folder, or the Chroma
        server of ``WORKBENCH_CHROMA_URL``."""
        from workbench.store.vectors_server import open_vector_store

        return open_vector_store(self.settings)

    @cached_property
    def buckets(self):
        """Buckets: named image sets with a metadata schema."""
        from workbench.buckets import BucketService

        return BucketService(self.db)

    @cached_property
    def ingest(self):
        """Ingest of files, folders, zips and URLs into a bucket."""
        from workbench.ingest import IngestService

        return IngestService(self)

    @cached_property
    def jobs(self):
        """The durable job queue."""
        from workbench.jobs import JobService

        return JobService(self)

    @cached_property
    def registry(self):
        """The model registry: extractor versions with their weights, lineage and metrics."""
        from workbench.registry import ModelRegistry

        return ModelRegistry(self)

    @cached_property
    def collections(self):
        """Collections: source buckets bound to an extractor."""
        from workbench.detection import CollectionService

        return CollectionService(self)

    @cached_property
    def detection(self):
        """Batch runs of a collection through an extractor version, and their detections."""
        from workbench.detection import DetectionService

        return DetectionService(self, truth=self.truth, taxonomies=self.taxonomies)

    @cached_property
    def annotations(self):
        """Reviewers' verdicts on detections and images, with their history."""
        from workbench.annotations import AnnotationService

        return AnnotationService(self.db, self.settings.author, self.settings.gold_fraction,
                                 self.settings.gold_target)

    @cached_property
    def retrievers(self):
        """Retrievers: stored stage lists that pick detections to review."""
        from workbench.retrievers import RetrieverService

        return RetrieverService(self)

    @cached_property
    def training(self):
        """Fine-tuning jobs that register a model's next version."""
        from workbench.training import TrainingService

        return TrainingService(self)

    @cached_property
    def events(self):
        """The workspace's event log."""
        from workbench.events import EventService

        return EventService(self.db)

    @cached_property
    def stats(self):
        """Review statistics (the Stats page, ``workbench stats``)."""
        from workbench.stats import StatsService

        return StatsService(self.db)

    @cached_property
    def export(self):
        """Exports of the ground truth as YOLO (and COCO) training sets."""
        from workbench.export import ExportService

        return ExportService(self)

    @cached_property
    def evaluation(self):
        """Evaluations of one version against another on the gold set, and promotions."""
        from workbench.evaluation import EvaluationService

        return EvaluationService(self)

    @cached_property
    def references(self):
        """Reference sets: labelled detections that taxonomies compare against."""
        from workbench.references import ReferenceService

        return ReferenceService(self)

    @cached_property
    def taxonomies(self):
        """Taxonomies: detections classified by their nearest references."""
        from workbench.taxonomies import TaxonomyService

        return TaxonomyService(self)

    @cached_property
    def clusters(self):
        """Cluster runs over detection embeddings, and what is done with their clusters."""
        from workbench.clusters import ClusterService

        return ClusterService(self)

    @cached_property
    def demo(self):
        """The demo workspace: ShapeWorld scenes and the starter detector."""
        from workbench.demo import DemoService

        return DemoService(self)

    @cached_property
    def image_review(self):
        """The image review queue and whole-image review passes."""
        from workbench.image_review import ImageReviewService

        return ImageReviewService(self)

    @cached_property
    def truth(self):
        """Ground truth per image, carried verdicts and the gold set."""
        from workbench.truth import TruthService

        return TruthService(self)

    @cached_property
    def webhooks(self):
        """Webhook subscriptions and their deliveries."""
        from workbench.webhooks import WebhookService

        return WebhookService(self)

    @cached_property
    def rules(self):
        """Automation rules and the engine that applies them to events."""
        from workbench.rules import RuleService

        return RuleService(self)

    @cached_property
    def fiftyone(self):
        """Sync of collections into FiftyOne datasets."""
        from workbench.fiftyone_sync import FiftyOneSync

        return FiftyOneSync(self)

    def image_path(self, obj) -> Path:
        """Where an image object's bytes live on disk."""
        return self.blobs.path_for(obj.sha256, FORMAT_EXTENSIONS[obj.format])

    @property
    def schema_version(self) -> str | None:
        """The workspace database's migration revision."""
        return self.db.schema_version()

    def summary(self) -> dict[str, int]:
        """Counts for the home page and ``workbench init``."""
        import sqlalchemy as sa

        from workbench.store import tables as t

        with self.db.read() as conn:

            def count(table, *where):
                query = sa.select(sa.func.count()).select_from(table)
                return conn.execute(query.where(*where) if where else query).scalar_one()

            return {
                "buckets": count(t.buckets),
                "images": count(t.objects),
                "jobs_active": count(t.jobs, t.jobs.c.status.in_(("queued", "running"))),
                "jobs_failed": count(t.jobs, t.jobs.c.status == "failed"),
            }

    def close(self) -> None:
        """Close the metadata store's pooled connections."""
        self.db.dispose()
