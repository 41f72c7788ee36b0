"""Extractor specs: what an extractor is called, which version, and which features it makes.

A spec is checked strictly. The hosted service this product re-creates silently builds no
vector index when a feature says ``dimensions`` instead of ``embedding_dim``; here every
unknown key is an error that names the key it probably meant.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import semver

from workbench.errors import ValidationError

URI_SCHEME = "workbench://"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

SPEC_KEYS = (
    "feature_extractor_name", "version", "description", "dependencies", "features",
    "output_schema", "input_mappings", "compute_profile", "tier", "tier_label",
)
REQUIRED_SPEC_KEYS = ("feature_extractor_name", "version", "features")
FEATURE_KEYS = (
    "feature_type", "feature_name", "embedding_dim", "distance_metric", "granularity",
    "description",
)
FEATURE_TYPES = ("json", "embedding")
METRICS = ("cosine", "euclidean", "dot")
GRANULARITIES = ("image", "detection")
# Names people reach for that mean one of ours (the seed warns about exactly these).
ALIASES = {
    "name": "feature_name", "type": "feature_type", "dimensions": "embedding_dim",
    "dimension": "embedding_dim", "dim": "embedding_dim", "dims": "embedding_dim",
    "distance": "distance_metric", "metric": "distance_metric", "extractor_name":
    "feature_extractor_name",
}


def _suggest(key: str, allowed: tuple[str, ...]) -> str:
    guess = ALIASES.get(key)
    if guess not in allowed:
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        guess = close[0] if close else None
    return f" — did you mean {guess!r}?" if guess else f" (allowed: {', '.join(allowed)})"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature an extractor makes: JSON, or an embedding with its size, metric, granularity."""

    feature_type: str
    feature_name: str
    embedding_dim: int | None = None
    distance_metric: str | None = None
    granularity: str = "image"
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the embedding keys only for an embedding)."""
        data: dict[str, Any] = {"feature_type": self.feature_type,
                                "feature_name": self.feature_name}
        if self.feature_type == "embedding":
            data.update(embedding_dim=self.embedding_dim, distance_metric=self.distance_metric,
                        granularity=self.granularity)
        if self.description:
            data["description"] = self.description
        return data


@dataclass(frozen=True)
class ExtractorSpec:
    """A checked extractor spec (:func:`parse_spec`): name, version and the features it makes."""

    feature_extractor_name: str
    version: str
    features: tuple[FeatureSpec, ...]
    description: str = ""
    dependencies: tuple[str, ...] = ()
    output_schema: Mapping[str, Any] = field(default_factory=dict)
    input_mappings: Mapping[str, str] = field(default_factory=lambda: {"image": "image"})
    compute_profile: Mapping[str, Any] = field(default_factory=lambda: {"resource_type": "cpu"})

    @property
    def name(self) -> str:
        """The extractor's name (``feature_extractor_name``)."""
        return self.feature_extractor_name

    @property
    def key(self) -> str:
        """``name@version``: how the rest of the workbench refers to this extractor version."""
        return f"{self.feature_extractor_name}@{self.version}"

    def feature(self, feature_name: str) -> FeatureSpec:
        """The feature of this name; ValidationError (naming those there are) if none."""
        for feature in self.features:
            if feature.feature_name == feature_name:
                return feature
        names = ", ".join(f.feature_name for f in self.features)
        raise ValidationError(f"{self.key} has no feature {feature_name!r} (it has: {names})")

    def feature_uri(self, feature_name: str) -> str:
        """The stable address of one feature: ``workbench://name@version/feature``."""
        self.feature(feature_name)
        return f"{URI_SCHEME}{self.key}/{feature_name}"

    @property
    def embeddings(self) -> tuple[FeatureSpec, ...]:
        """The embedding features."""
        return tuple(f for f in self.features if f.feature_type == "embedding")

    def with_version(self, version: str, **changes: Any) -> ExtractorSpec:
        """The same spec under another version (with ``changes``), checked again."""
        return parse_spec({**self.to_dict(), "version": version, **changes})

    def with_embedding_dims(self, dims: Mapping[str, int]) -> ExtractorSpec:
        """The same spec with the embedding sizes in ``dims`` (by feature); not checked again."""
        features = tuple(
            replace(f, embedding_dim=dims.get(f.feature_name, f.embedding_dim))
            for f in self.features
        )
        return replace(self, features=features)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as :func:`parse_spec` reads it."""
        return {
            "feature_extractor_name": self.feature_extractor_name,
            "version": self.version,
            "description": self.description,
            "dependencies": list(self.dependencies),
            "features": [f.to_dict() for f in self.features],
            "output_schema": dict(self.output_schema),
            "input_mappings": dict(self.input_mappings),
            "compute_profile": dict(self.compute_profile),
        }


def bump_version(version: str, part: str = "major") -> str:
    """The next version: ``major`` for a retrained model, ``minor``/``patch`` for smaller steps."""
    current = semver.Version.parse(version)
    return str({"major": current.bump_major, "minor": current.bump_minor,
                "patch": current.bump_patch}[part]())


def parse_feature_uri(uri: str) -> tuple[str, str, str]:
    """``workbench://name@1.0.0/feature`` → ``(name, version, feature)``."""
    match = re.match(r"^workbench://([a-z][a-z0-9_]*)@([^/]+)/([A-Za-z0-9_]+)$", uri or "")
    if not match or not semver.Version.is_valid(match.group(2)):
        raise ValidationError(
            f"feature URI {uri!r} is not valid; expected "
            "workbench://<extractor>@<semver>/<feature>, e.g. "
            "workbench://yolo_detector@1.0.0/detection_embedding"
        )
    return match.group(1), match.group(2), match.group(3)


def parse_spec(raw: Mapping[str, Any]) -> ExtractorSpec:
    """Validate a spec dict and return it as an :class:`ExtractorSpec`; list every problem."""
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        raise ValidationError(f"an extractor spec must be a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in SPEC_KEYS:
            errors.append(f"unknown key {key!r}{_suggest(key, SPEC_KEYS)}")
    for key in REQUIRED_SPEC_KEYS:
        if key not in raw:
            errors.append(f"missing required key {key!r}")
    name = raw.get("feature_extractor_name", "")
    if "feature_extractor_name" in raw and not (isinstance(name, str) and NAME.match(name)):
        errors.append(
            f"feature_extractor_name {name!r} must be lowercase letters, digits and '_', "
            "starting with a letter"
        )
    version = raw.get("version", "")
    if "version" in raw and not (isinstance(version, str) and semver.Version.is_valid(version)):
        errors.append(f"version {version!r} is not semantic versioning (MAJOR.MINOR.PATCH, "
                      "e.g. '1.0.0')")
    features = []
    raw_features = raw.get("features", [])
    if not isinstance(raw_features, list) or ("features" in raw and not raw_features):
        errors.append("features must be a non-empty list")
        raw_features = []
    seen = set()
    for index, item in enumerate(raw_features):
        feature = _parse_feature(item, f"features[{index}]", errors)
        if feature is not None:
            if feature.feature_name in seen:
                errors.append(f"features[{index}]: feature_name {feature.feature_name!r} is "
                              "used twice")
            seen.add(feature.feature_name)
            features.append(feature)
    for key, kind in (("output_schema", Mapping), ("input_mappings", Mapping),
                      ("compute_profile", Mapping), ("dependencies", list)):
        if key in raw and not isinstance(raw[key], kind):
            errors.append(f"{key} must be a {'mapping' if kind is Mapping else 'list'}")
    if errors:
        label = name if isinstance(name, str) and name else "extractor spec"
        raise ValidationError(f"invalid spec for {label}:\n  " + "\n  ".join(errors))
    return ExtractorSpec(
        feature_extractor_name=name,
        version=version,
        features=tuple(features),
        description=str(raw.get("description", "")),
        dependencies=tuple(raw.get("dependencies", ())),
        output_schema=dict(raw.get("output_schema", {})),
        input_mappings=dict(raw.get("input_mappings", {"image": "image"})),
        compute_profile=dict(raw.get("compute_profile", {"resource_type": "cpu"})),
    )


def _parse_feature(item: Any, where: str, errors: list[str]) -> FeatureSpec | None:
    if not isinstance(item, Mapping):
        errors.append(f"{where}: must be a mapping with feature_type and feature_name")
        return None
    before = len(errors)
    for key in item:
        if key not in FEATURE_KEYS:
            errors.append(f"{where}: unknown key {key!r}{_suggest(key, FEATURE_KEYS)}")
    kind = item.get("feature_type")
    if kind not in FEATURE_TYPES:
        errors.append(f"{where}: feature_type must be one of {', '.join(FEATURE_TYPES)}, "
                      f"got {kind!r}")
    fname = item.get("feature_name")
    if not (isinstance(fname, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", fname)):
        errors.append(f"{where}: feature_name must be an identifier, got {fname!r}")
    dim, metric = item.get("embedding_dim"), item.get("distance_metric")
    granularity = item.get("granularity", "image")
    if kind == "embedding":
        if not (isinstance(dim, int) and not isinstance(dim, bool) and dim > 0):
            errors.append(f"{where}: embedding_dim must be a positive integer, got {dim!r}")
        if metric not in METRICS:
            errors.append(f"{where}: distance_metric must be one of {', '.join(METRICS)}, "
                          f"got {metric!r}")
        if granularity not in GRANULARITIES:
            errors.append(f"{where}: granularity must be one of {', '.join(GRANULARITIES)}, "
                          f"got {granularity!r}")
    elif kind == "json" and (dim is not None or metric is not None):
        errors.append(f"{where}: embedding_dim and distance_metric apply only to embeddings")
    if len(errors) > before:
        return None
    return FeatureSpec(kind, fname, dim, metric, granularity, str(item.get("description", "")))


def check_outputs(spec: ExtractorSpec, outputs: Mapping[str, Any], n_detections: int | None
                  ) -> None:
    """Check one image's outputs against the spec: every feature, the schema, the dims."""
    import numpy as np

    missing = [f.feature_name for f in spec.features if f.feature_name not in outputs]
    if missing:
        raise ValidationError(f"{spec.key} returned no {', '.join(map(repr, missing))} for an "
                              "image; every declared feature is required")
    for feature in spec.features:
        value = outputs[feature.feature_name]
        if feature.feature_type == "json":
            schema = spec.output_schema.get(feature.feature_name)
            if schema:
                _check_json(spec, feature.feature_name, value, schema)
            continue
        array = np.asarray(value, dtype="float32")
        per_detection = feature.granularity == "detection"
        expected = (n_detections, feature.embedding_dim) if per_detection else (
            feature.embedding_dim,)
        if array.shape != expected and not (per_detection and n_detections == 0
                                            and array.size == 0):
            raise ValidationError(
                f"{spec.key} feature {feature.feature_name!r} has shape {array.shape}; the "
                f"spec declares {expected} (embedding_dim {feature.embedding_dim}"
                + (", one row per detection)" if per_detection else ")")
            )
        if array.size and not np.all(np.isfinite(array)):
            raise ValidationError(f"{spec.key} feature {feature.feature_name!r} holds NaN or "
                                  "infinite values")
        if feature.distance_metric == "cosine" and array.size:
            norms = np.linalg.norm(array.reshape(-1, feature.embedding_dim), axis=1)
            if np.any(norms == 0):
                raise ValidationError(f"{spec.key} feature {feature.feature_name!r} has a zero "
                                      "vector, which has no cosine direction")


_VALIDATORS: dict[str, Any] = {}


def _validator(schema: Mapping[str, Any]):
    """A compiled validator per schema: checking the schema itself on every image is slow."""
    import json

    import jsonschema

    key = json.dumps(schema, sort_keys=True)
    if key not in _VALIDATORS:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _VALIDATORS[key] = cls(schema)
    return _VALIDATORS[key]


def _check_json(spec: ExtractorSpec, name: str, value: Any, schema: Mapping[str, Any]) -> None:
    import jsonschema

    try:
        _validator(schema).validate(value)
    except jsonschema.ValidationError as exc:
        path = ".".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValidationError(
            f"{spec.key} feature {name!r} does not match its output_schema at {path}: "
            f"{exc.message}"
        ) from None
