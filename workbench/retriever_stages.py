"""Retriever stages: the stage types a retriever chains, their checks when a retriever is
saved, ``{{INPUT.*}}`` templates, and the stage lists of the built-in retrievers.

The stage and filter syntax is described in :mod:`workbench.retrievers`; filters compile to SQL
in :mod:`workbench.retriever_filters`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from typing import Any

from workbench.errors import ValidationError
from workbench.extractors.spec import parse_feature_uri
from workbench.retriever_filters import DIRECT_FIELDS, IMAGE_TRUTH_FIELDS

STAGE_TYPES = ("feature_search", "filter", "sort", "diversity", "sample", "taxonomy", "limit")
OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "nin", "contains", "exists")
SORTS = ("confidence", "uncertainty", "newest", "random")
# {{INPUT.name}} or {{INPUT.name|default}} (the default read as JSON when it parses).
TEMPLATE = re.compile(r"\{\{\s*INPUT\.([A-Za-z0-9_]+)\s*(?:\|\s*([^}]*?))?\s*\}\}")


# -- built-in stage lists ---------------------------------------------------------------------
def default_review_stages(limit: int = 20) -> list[dict[str, Any]]:
    """The review queue: unreviewed detections under 0.7, most uncertain first, diverse."""
    return [
        {"stage_name": "low_confidence", "stage_type": "filter", "config": {"filters": {"AND": [
            {"field": "confidence", "operator": "lt", "value": 0.7},
            {"field": "annotation.label", "operator": "exists", "value": False}]}}},
        {"stage_name": "most_uncertain", "stage_type": "sort", "config": {"by": "uncertainty"}},
        {"stage_name": "diverse", "stage_type": "diversity", "config": {"max_similarity": 0.97}},
        {"stage_name": "page", "stage_type": "limit",
         "config": {"limit": f"{{{{INPUT.limit|{limit}}}}}"}},
    ]


def spot_check_stages(limit: int = 20, min_confidence: float = 0.7) -> list[dict[str, Any]]:
    """Confident detections nobody has checked, in seeded random order.

    The uncertainty queue never shows what the model is sure of, so it cannot find the
    errors the model is sure of (an unseen class taken for a known one at 0.9). A few
    random confident detections per session find them.
    """
    return [
        {"stage_name": "confident", "stage_type": "filter", "config": {"filters": {"AND": [
            {"field": "confidence", "operator": "gte", "value": min_confidence},
            {"field": "annotation.label", "operator": "exists", "value": False}]}}},
        {"stage_name": "shuffled", "stage_type": "sort",
         "config": {"by": "random", "seed": "{{INPUT.seed|0}}"}},
        {"stage_name": "page", "stage_type": "limit",
         "config": {"limit": f"{{{{INPUT.limit|{limit}}}}}"}},
    ]


def image_review_stages(limit: int = 20) -> list[dict[str, Any]]:
    """Detections of images that are not complete, most uncertain first."""
    return [
        {"stage_name": "incomplete_images", "stage_type": "filter", "config": {"filters": {
            "field": "image.state", "operator": "ne", "value": "complete"}}},
        {"stage_name": "most_uncertain", "stage_type": "sort", "config": {"by": "uncertainty"}},
        {"stage_name": "page", "stage_type": "limit",
         "config": {"limit": f"{{{{INPUT.limit|{limit}}}}}"}},
    ]


# -- validation -------------------------------------------------------------------------------
def validate_stages(stages: Any, metadata_fields: frozenset[str] | None = None
                    ) -> list[dict[str, Any]]:
    """Check a stage list when a retriever is saved; errors name the stage and the field.

    ``metadata_fields`` are the bucket fields a filter may name (the collection's buckets');
    with None, any identifier is taken for one.
    """
    if not isinstance(stages, list) or not stages:
        raise ValidationError("a retriever needs a non-empty list of stages")
    checked = []
    for index, stage in enumerate(stages):
        where = f"stage {index}"
        if not isinstance(stage, dict):
            raise ValidationError(f"{where}: must be a mapping with stage_type and config")
        where = f"stage {index} ({stage.get('stage_name') or stage.get('stage_type')})"
        unknown = set(stage) - {"stage_name", "stage_type", "config"}
        if unknown:
            raise ValidationError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: "
                                  "stage_name, stage_type, config")
        kind = stage.get("stage_type")
        if kind not in STAGE_TYPES:
            raise ValidationError(f"{where}: stage_type {kind!r} is not one of "
                                  f"{', '.join(STAGE_TYPES)}")
        config = stage.get("config", {})
        if not isinstance(config, dict):
            raise ValidationError(f"{where}: config must be a mapping")
        if kind == "filter":
            _check_filter_stage(config, where, metadata_fields)
        else:
            _CHECKS[kind](config, where)
        checked.append({"stage_name": stage.get("stage_name") or f"{kind}_{index}",
                        "stage_type": kind, "config": config})
    return checked


def _allowed(config: dict, keys: set[str], where: str) -> None:
    unknown = set(config) - keys
    if unknown:
        raise ValidationError(f"{where}: unknown config key(s) {sorted(unknown)}; allowed: "
                              f"{', '.join(sorted(keys))}")


def _check_filter_stage(config: dict, where: str, metadata_fields: frozenset[str] | None
                        ) -> None:
    _allowed(config, {"filters"}, where)
    if "filters" not in config:
        raise ValidationError(f"{where}: config.filters is required")
    check_condition(config["filters"], f"{where}: filters", metadata_fields)


def _check_field(path: str, where: str, metadata_fields: frozenset[str] | None) -> None:
    """Refuse a field no filter can read, naming the closest one that exists."""
    if path in DIRECT_FIELDS or path in IMAGE_TRUTH_FIELDS or path == "annotation.label" \
            or _is_template(path):
        return
    if path.startswith("taxonomy.") and len(path) > len("taxonomy."):
        return
    if re.fullmatch(r"detections\.\d+\.(confidence|class|class_name)", path):
        return
    name = path.removeprefix("metadata.")
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and (
            metadata_fields is None or name in metadata_fields):
        return
    known = [*DIRECT_FIELDS, *IMAGE_TRUTH_FIELDS, "annotation.label", "taxonomy.<name>",
             "detections.<n>.confidence", *(f"metadata.{f}" for f in sorted(
                 metadata_fields or ()))]
    close = difflib.get_close_matches(path, [*known, *(metadata_fields or ())], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValidationError(
        f"{where}: field {path!r} is not known; {hint}fields: {', '.join(known)}")


def check_condition(node: Any, where: str, metadata_fields: frozenset[str] | None = None
                    ) -> None:
    """Check a filter tree (AND/OR/NOT of field-operator-value); errors begin with ``where``."""
    if isinstance(node, list):
        for i, child in enumerate(node):
            check_condition(child, f"{where}[{i}]", metadata_fields)
        return
    if not isinstance(node, dict):
        raise ValidationError(f"{where}: a condition must be a mapping")
    logic = [k for k in ("AND", "OR", "NOT") if k in node]
    if logic:
        if len(node) != 1:
            raise ValidationError(f"{where}: {logic[0]} must stand alone in its mapping")
        children = node[logic[0]]
        if logic[0] == "NOT":
            check_condition(children, f"{where}.NOT", metadata_fields)
        elif not isinstance(children, list) or not children:
            raise ValidationError(f"{where}.{logic[0]}: needs a non-empty list")
        else:
            for i, child in enumerate(children):
                check_condition(child, f"{where}.{logic[0]}[{i}]", metadata_fields)
        return
    _allowed(node, {"field", "operator", "value"}, where)
    if not isinstance(node.get("field"), str) or not node["field"]:
        raise ValidationError(f"{where}: 'field' is required (e.g. 'confidence')")
    _check_field(node["field"], where, metadata_fields)
    if node.get("operator") not in OPERATORS:
        raise ValidationError(f"{where}: operator {node.get('operator')!r} is not one of "
                              f"{', '.join(OPERATORS)}")
    if "value" not in node:
        raise ValidationError(f"{where}: 'value' is required")
    value = node["value"]
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise ValidationError(f"{where}: value {value!r} is not a finite number")
    if node["operator"] in ("in", "nin") and not (isinstance(value, list) or _is_template(value)):
        raise ValidationError(f"{where}: operator {node['operator']} needs a list value")


def _check_search(config: dict, where: str) -> None:
    _allowed(config, {"feature_uri", "query", "query_type", "top_k"}, where)
    if "feature_uri" not in config or "query" not in config:
        raise ValidationError(f"{where}: feature_search needs config.feature_uri and "
                              "config.query")
    if not _is_template(config["feature_uri"]):
        try:
            parse_feature_uri(config["feature_uri"])
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc}") from None
    if config.get("query_type", "detection") not in ("detection", "image", "text", "vector"):
        raise ValidationError(f"{where}: query_type must be detection, image, text or vector")
    top_k = config.get("top_k", 50)
    if not (_is_template(top_k) or (isinstance(top_k, int) and top_k > 0)):
        raise ValidationError(f"{where}: top_k must be a positive integer")


def _check_sort(config: dict, where: str) -> None:
    _allowed(config, {"by", "order", "seed"}, where)
    if config.get("by") not in SORTS:
        raise ValidationError(f"{where}: sort by {config.get('by')!r} is not one of "
                              f"{', '.join(SORTS)}")
    if config.get("order", "asc") not in ("asc", "desc"):
        raise ValidationError(f"{where}: order must be asc or desc")


def _check_diversity(config: dict, where: str) -> None:
    _allowed(config, {"feature_uri", "max_similarity", "max_per_image"}, where)
    similarity = config.get("max_similarity", 0.95)
    if not (isinstance(similarity, int | float) and 0 < similarity <= 1):
        raise ValidationError(f"{where}: max_similarity must be in (0, 1]")


def _check_sample(config: dict, where: str) -> None:
    _allowed(config, {"n", "seed"}, where)
    if not (isinstance(config.get("n"), int) and config["n"] > 0):
        raise ValidationError(f"{where}: sample needs a positive integer n")


def _check_limit(config: dict, where: str) -> None:
    _allowed(config, {"limit", "offset"}, where)
    for key in ("limit", "offset"):
        value = config.get(key, 0 if key == "offset" else None)
        if not (_is_template(value) or (isinstance(value, int) and value >= (key == "limit"))):
            raise ValidationError(f"{where}: {key} must be a{' positive' if key == 'limit' else ' non-negative'} integer")


def _check_taxonomy(config: dict, where: str) -> None:
    _allowed(config, {"taxonomy", "keep"}, where)
    if not isinstance(config.get("taxonomy"), str) or not config["taxonomy"]:
        raise ValidationError(f"{where}: taxonomy must name a taxonomy")
    keep = config.get("keep")
    if keep is not None and not (isinstance(keep, list) and all(isinstance(k, str)
                                                               for k in keep)):
        raise ValidationError(f"{where}: keep must be a list of labels, e.g. [\"unknown\"]")


_CHECKS = {"filter": _check_filter_stage, "feature_search": _check_search, "sort": _check_sort,
           "diversity": _check_diversity, "sample": _check_sample, "taxonomy": _check_taxonomy,
           "limit": _check_limit}


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and bool(TEMPLATE.search(value))


def render(value: Any, inputs: dict[str, Any]) -> Any:
    """Replace ``{{INPUT.name}}``; a string that is only a template keeps the input's type."""
    if isinstance(value, dict):
        return {k: render(v, inputs) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, inputs) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match) -> Any:
        name, default = match.group(1), match.group(2)
        if name in inputs:
            return inputs[name]
        if default is not None:
            try:
                return json.loads(default)
            except json.JSONDecodeError:
                return default
        raise ValidationError(f"input {name!r} is required by this retriever (given: "
                              f"{', '.join(sorted(inputs)) or 'none'})")

    whole = TEMPLATE.fullmatch(value.strip())
    if whole:
        return lookup(whole)
    return TEMPLATE.sub(lambda m: str(lookup(m)), value)
