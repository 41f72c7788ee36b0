"""The model registry: extractor versions, each with its spec and, for models, weights.

``yolo_detector@1.0.0`` and ``yolo_detector@2.0.0`` are two versions of one extractor with
their own weights and their own feature URIs; they coexist. A weights file is loaded and
checked before it is accepted, then copied into the workspace (``models/``) so that the
registry never depends on where the file was uploaded from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from workbench.domain import ExtractorVersion
from workbench.errors import AlreadyExistsError, NotFoundError, ValidationError
from workbench.events import record_event
from workbench.extractors.spec import bump_version, parse_spec
from workbench.extractors.weights import check_weights_in
from workbench.faults import crash_point
from workbench.store import tables as t
from workbench.store.metadata import as_utc, new_id, utcnow

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.extractors.base import Extractor

MANIFEST = "extractor.json"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelRegistry:
    """Registered extractor versions (YOLO, CLIP, custom) with their files, lineage and metrics."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db
        self.models_dir = wb.home / "models"

    # -- registering -------------------------------------------------------------------
    def register_yolo(
        self,
        weights: str | Path,
        version: str | None = None,
        name: str = "yolo_detector",
        base_model: str | None = None,
        parent_version: str | None = None,
        lineage: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        notes: str = "",
        training_job: str | None = None,
        events: tuple[tuple[str, dict[str, Any]], ...] = (),
    ) -> ExtractorVersion:
        """Check a YOLO weights file (or hub name), copy it in and register the next version.

        ``training_job`` is the job that trained it: a job registers one version at most.
        ``events`` are recorded in the same transaction as the version row.
        """
        from workbench.extractors.yolo import embedding_dims, open_yolo, yolo_spec

        model = open_yolo(weights)
        source = Path(str(model.ckpt_path or weights))
        version = version or self.next_version(name)
        if name != "yolo_detector":
            raise ValidationError("YOLO weights register as versions of 'yolo_detector'")
        self._ensure_new(name, version)
        sha = _sha256_file(source)
        target = self.models_dir / name / version / "weights.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        crash_point("register.weights_copied")
        det_dim, img_dim = embedding_dims(target)
        spec = yolo_spec(version, det_dim, img_dim)
        classes = tuple(model.names[i] for i in sorted(model.names))
        # A checkpoint registered by hand brings how it was trained: a model trained at 320
        # runs (and is fine-tuned) at 320, not at the 640 default.
        trained = getattr(model, "workbench_train_args", {})
        lineage = {**({"trained_with": trained} if trained else {}),
                   **({"imgsz": int(trained["imgsz"])} if isinstance(trained.get("imgsz"), int)
                      else {}), **(lineage or {})}
        return self._insert(
            name=name, version=version, kind="yolo", spec=spec.to_dict(),
            weights_path=str(target.relative_to(self.wb.home)), weights_sha256=sha,
            classes=list(classes), base_model=base_model or Path(str(weights)).name,
            parent_version=parent_version, lineage=lineage, metrics=metrics or {},
            notes=notes, training_job=training_job, events=events,
        )

    def register_clip(self, version: str | None = None, notes: str = "") -> ExtractorVersion:
        """Register the optional CLIP embedder from the weights the settings point to."""
        from workbench.extractors.clip import NAME, clip_spec, open_clip_model

        settings = self.wb.settings
        weights = settings.clip_weights or settings.clip_pretrained
        model, _, _ = open_clip_model(settings.clip_model, weights)
        dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") \
            and model.text_projection is not None else int(model.visual.output_dim)
        version = version or self.next_version(NAME)
        self._ensure_new(NAME, version)
        values: dict[str, Any] = {"lineage": {"model": settings.clip_model}}
        if settings.clip_weights:
            target = self.models_dir / NAME / version / Path(settings.clip_weights).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(settings.clip_weights, target)
            values.update(weights_path=str(target.relative_to(self.wb.home)),
                          weights_sha256=_sha256_file(target))
        else:
            values["lineage"]["pretrained"] = settings.clip_pretrained
        return self._insert(name=NAME, version=version, kind="clip",
                            spec=clip_spec(version, dim, settings.clip_model).to_dict(),
                            classes=[], base_model=settings.clip_model, metrics={},
                            notes=notes, **values)

    def register_custom(self, path: str | Path) -> ExtractorVersion:
        """Register a custom extractor from a folder or zip holding ``extractor.json`` + code.

        Its weights files are checked first (no pickle that would run code); then the
        extractor is imported, loaded and run on a small test image. If any of that fails,
        calls ``sys.exit`` included, the error says why, nothing is registered and the copy
        of its code is removed.
        """
        source = Path(path)
        if not source.exists():
            raise ValidationError(f"{source} does not exist")
        with tempfile.TemporaryDirectory() as tmp:
            folder = self._unpack(source, Path(tmp))
            manifest = self._read_manifest(folder)
            spec = parse_spec(manifest["spec"])
            entrypoint = manifest.get("entrypoint", "")
            if not isinstance(entrypoint, str) or ":" not in entrypoint:
                raise ValidationError(f"{MANIFEST}: 'entrypoint' must look like 'module:Class', "
                                      f"got {entrypoint!r}")
            check_weights_in(folder)
            self._ensure_new(spec.name, spec.version)
            target = self.models_dir / spec.name / spec.version / "code"
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(folder, target, symlinks=True)
        try:
            extractor = load_custom_class(target, entrypoint, spec)
            self._smoke_test(extractor, spec)
        except (Exception, SystemExit) as exc:
            _discard(target.parent)
            detail = (f"it called sys.exit({exc.code!r})" if isinstance(exc, SystemExit)
                      else traceback.format_exc(limit=8))
            raise ValidationError(
                f"custom extractor {spec.key} failed its test run and was not registered:\n"
                + detail) from None
        except BaseException:
            _discard(target.parent)
            raise
        return self._insert(
            name=spec.name, version=spec.version, kind="custom", spec=spec.to_dict(),
            code_path=str(target.relative_to(self.wb.home)), entrypoint=entrypoint,
            classes=[], lineage={"source": str(source)}, metrics={}, notes=manifest.get(
                "notes", ""),
        )

    def _unpack(self, source: Path, tmp: Path) -> Path:
        if source.is_dir():
            return source
        if not zipfile.is_zipfile(source):
            raise ValidationError(f"{source.name} is neither a folder nor a zip archive")
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                parts = Path(info.filename.replace("\\", "/")).parts
                if info.filename.startswith("/") or ".." in parts:
                    raise ValidationError(f"{source.name}: unsafe path {info.filename!r} in zip")
            archive.extractall(tmp)
        manifests = list(tmp.rglob(MANIFEST))
        if len(manifests) != 1:
            raise ValidationError(f"{source.name} must hold exactly one {MANIFEST}, found "
                                  f"{len(manifests)}")
        return manifests[0].parent

    def _read_manifest(self, folder: Path) -> dict[str, Any]:
        path = folder / MANIFEST
        if not path.exists():
            raise ValidationError(f"{folder} has no {MANIFEST} (a JSON file with 'spec' and "
                                  "'entrypoint')")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{MANIFEST} is not valid JSON: {exc}") from None
        unknown = set(manifest) - {"spec", "entrypoint", "notes"}
        if unknown or "spec" not in manifest:
            raise ValidationError(f"{MANIFEST} needs keys 'spec' and 'entrypoint' (and "
                                  f"optionally 'notes'); got {sorted(manifest)}")
        return manifest

    def _smoke_test(self, extractor: Extractor, spec) -> None:
        import numpy as np

        from workbench.extractors.base import LoadContext
        from workbench.extractors.spec import check_outputs

        extractor.load(LoadContext(spec=spec, weights=None, device="cpu"))
        image = np.full((64, 64, 3), 127, dtype=np.uint8)
        outputs = extractor.process([image])
        if len(outputs) != 1:
            raise ValidationError(f"process() returned {len(outputs)} results for 1 image")
        n = len(outputs[0].get("detections", [])) if "detections" in outputs[0] else None
        check_outputs(spec, outputs[0], n)

    def _ensure_new(self, name: str, version: str) -> None:
        with self.db.read() as conn:
            exists = conn.execute(sa.select(t.extractor_versions.c.id).where(
                t.extractor_versions.c.name == name, t.extractor_versions.c.version == version
            )).first()
        if exists:
            raise AlreadyExistsError(f"{name}@{version} is registered already; pick another "
                                     f"version (next free: {self.next_version(name)})")

    def _insert(self, events: tuple[tuple[str, dict[str, Any]], ...] = (), **values: Any
                ) -> ExtractorVersion:
        with self.db.write() as conn:
            conn.execute(t.extractor_versions.insert().values(
                id=new_id("ext"), created_at=utcnow(),
                **{"weights_path": None, "weights_sha256": None, "code_path": None,
                   "entrypoint": None, "base_model": None, "parent_version": None,
                   "training_job": None, **values},
            ))
            record_event(conn, "model.registered", {"extractor": values["name"],
                                                    "version": values["version"]})
            for kind, payload in events:
                record_event(conn, kind, payload)
        return self.get(values["name"], values["version"])

    def by_training_job(self, job_id: str) -> ExtractorVersion | None:
        """The version a training job registered, if it got that far."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(t.extractor_versions).where(
                t.extractor_versions.c.training_job == job_id)).first()
        return version_from_row(row) if row is not None else None

    # -- reading -----------------------------------------------------------------------
    def get(self, name: str, version: str | None = None) -> ExtractorVersion:
        """A version, or the newest one of ``name`` when ``version`` is None."""
        if "@" in name and version is None:
            name, version = name.split("@", 1)
        versions = self.list(name)
        if version is None and versions:
            return versions[-1]
        for item in versions:
            if item.version == version:
                return item
        known = ", ".join(v.key for v in self.list()) or "none registered yet"
        raise NotFoundError(
            f"no extractor {name}{'@' + version if version else ''} (registered: {known}); "
            "register weights with `workbench models add FILE.pt`"
        )

    def list(self, name: str | None = None) -> list[ExtractorVersion]:
        """Registered versions (of ``name``, or all), by name and then semantic version."""
        import semver

        query = sa.select(t.extractor_versions)
        if name:
            query = query.where(t.extractor_versions.c.name == name)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        items = [version_from_row(r) for r in rows]
        return sorted(items, key=lambda v: (v.name, semver.Version.parse(v.version)))

    def next_version(self, name: str) -> str:
        """The version a new registration of ``name`` gets: the newest's next major, else 1.0.0."""
        existing = self.list(name)
        return bump_version(existing[-1].version) if existing else "1.0.0"

    def update_metrics(self, name: str, version: str, metrics: dict[str, Any]) -> None:
        """Merge ``metrics`` into a version's recorded metrics."""
        current = self.get(name, version)
        with self.db.write() as conn:
            conn.execute(t.extractor_versions.update().where(
                t.extractor_versions.c.id == current.id).values(
                    metrics={**current.metrics, **metrics}))

    def weights_file(self, version: ExtractorVersion) -> Path | None:
        """The absolute path of a version's weights, or None when it has none."""
        return self.wb.home / version.weights_path if version.weights_path else None

    def load_extractor(self, version: ExtractorVersion, params: dict[str, Any] | None = None,
                       device: str | None = None) -> Extractor:
        """Instantiate and load the extractor of a version, ready for ``process``."""
        from workbench.config import resolve_device

        return build_extractor(
            version, self.weights_file(version), resolve_device(device or self.wb.settings.device),
            params, self.wb.home / version.code_path if version.code_path else None)


def build_extractor(version: ExtractorVersion, weights: Path | None, device: str,
                    params: dict[str, Any] | None = None, code_folder: Path | None = None
                    ) -> Extractor:
    """Instantiate and load a version's extractor from its files, ready for ``process``: the
    workspace's own (``ModelRegistry.load_extractor``) or copies of them on another machine
    (a Ray actor's)."""
    from workbench.extractors.base import LoadContext

    params = dict(params or {})
    if version.kind == "yolo":
        from workbench.extractors.yolo import YoloDetector

        extractor: Extractor = YoloDetector(version.spec)
    elif version.kind == "clip":
        from workbench.extractors.clip import ClipEmbedder

        extractor = ClipEmbedder(version.spec)
        params.setdefault("model", version.lineage.get("model", "ViT-B-32"))
        params.setdefault("pretrained", version.lineage.get("pretrained"))
    else:
        extractor = load_custom_class(code_folder, version.entrypoint, version.spec)
    extractor.load(LoadContext(spec=version.spec, weights=weights, device=device, params=params))
    return extractor


def _discard(version_folder: Path) -> None:
    """Remove a version's folder, and its extractor's folder if nothing else is in it."""
    shutil.rmtree(version_folder, ignore_errors=True)
    try:
        version_folder.parent.rmdir()
    except OSError:  # other versions live there
        pass


def load_custom_class(folder: Path, entrypoint: str, spec) -> Extractor:
    """Import ``module:Class`` from a custom extractor's folder and instantiate it."""
    module_name, _, class_name = entrypoint.partition(":")
    file = folder / (module_name.replace(".", "/") + ".py")
    if not file.exists():
        raise ValidationError(f"entrypoint module {module_name!r} not found ({file.name} is "
                              f"missing from {folder.name})")
    unique = f"workbench_custom_{spec.name}_{spec.version.replace('.', '_')}_{module_name}"
    module_spec = importlib.util.spec_from_file_location(unique, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[unique] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(unique, None)
        raise
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValidationError(f"{file.name} defines no class {class_name!r}")
    extractor = cls()
    extractor.spec = spec
    return extractor


def version_from_row(row) -> ExtractorVersion:
    """The ExtractorVersion a row of the extractor_versions table describes."""
    return ExtractorVersion(
        id=row.id, name=row.name, version=row.version, kind=row.kind,
        spec=parse_spec(row.spec), weights_path=row.weights_path,
        weights_sha256=row.weights_sha256, classes=tuple(row.classes),
        base_model=row.base_model, parent_version=row.parent_version, lineage=row.lineage,
        metrics=row.metrics, notes=row.notes, created_at=as_utc(row.created_at),
        code_path=row.code_path, entrypoint=row.entrypoint, training_job=row.training_job,
    )
