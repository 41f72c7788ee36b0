"""Retriever filters compiled to SQL: a condition tree of ``{field, operator, value}`` becomes a
SQLAlchemy condition on detections (``d``) joined to their images (``o``).

The fields and operators are described in :mod:`workbench.retrievers`; a tree is checked by
:func:`workbench.retriever_stages.check_condition` before it is compiled here.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from workbench.errors import ValidationError
from workbench.store import tables as t

# Compiled conditions name these aliases: a query selects from DETECTIONS joined to OBJECTS.
DETECTIONS = t.detections.alias("d")
OBJECTS = t.objects.alias("o")
_D, _O = DETECTIONS, OBJECTS  # short names for the expressions below

IMAGE_TRUTH_FIELDS = ("image.state", "image.gold")
DIRECT_FIELDS = {
    "confidence": _D.c.confidence, "class": _D.c.class_name, "class_name": _D.c.class_name,
    "object_id": _D.c.object_id, "document_id": _D.c.document_id, "id": _D.c.id,
    "detection_id": _D.c.id, "image.width": _O.c.width, "image.height": _O.c.height,
    "bbox.w": _D.c.x2 - _D.c.x1, "bbox.h": _D.c.y2 - _D.c.y1,
    "bbox.x": (_D.c.x1 + _D.c.x2) / 2, "bbox.y": (_D.c.y1 + _D.c.y2) / 2,
    "area": (_D.c.x2 - _D.c.x1) * (_D.c.y2 - _D.c.y1),
}


def _field(path: str, value: Any) -> sa.ColumnElement:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(value, list) and value:
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if path in DIRECT_FIELDS:
        return DIRECT_FIELDS[path]
    if path in IMAGE_TRUTH_FIELDS:  # the image's review state (unreviewed if no row)
        it = t.image_truth.alias("it")
        column = it.c.state if path == "image.state" else it.c.gold
        value = sa.select(column).where(it.c.collection_id == _D.c.collection_id,
                                         it.c.object_id == _D.c.object_id).scalar_subquery()
        return sa.func.coalesce(value, "unreviewed" if path == "image.state" else False)
    if path == "annotation.label":
        a = t.annotations.alias("a")
        return (sa.select(a.c.label).where(a.c.document_id == _D.c.id, a.c.deleted_at.is_(None))
                .order_by(a.c.created_at.desc()).limit(1).scalar_subquery())
    if path.startswith("taxonomy."):  # the stored label of a materialized taxonomy
        a = t.taxonomy_assignments.alias("ta")
        tax = t.taxonomies.alias("tx")
        return (sa.select(a.c.label).where(
            a.c.detection_id == _D.c.id,
            a.c.taxonomy_id == sa.select(tax.c.id).where(
                tax.c.name == path.removeprefix("taxonomy.")).scalar_subquery())
            .scalar_subquery())
    match = re.fullmatch(r"detections\.(\d+)\.(confidence|class|class_name)", path)
    if match:
        d2 = t.detections.alias("d2")
        column = d2.c.confidence if match.group(2) == "confidence" else d2.c.class_name
        return (sa.select(column).where(d2.c.document_id == _D.c.document_id)
                .order_by(d2.c.confidence.desc(), d2.c.idx).offset(int(match.group(1)))
                .limit(1).scalar_subquery())
    name = path.removeprefix("metadata.")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValidationError(f"field {path!r} is not known; use confidence, class, bbox.w, "
                              "metadata.<field>, detections.<n>.confidence, annotation.label, "
                              "taxonomy.<name>, …")
    element = _O.c.metadata[name]
    return element.as_float() if numeric else element.as_string()


def compile_condition(node: Any) -> sa.ColumnElement:
    """A checked filter tree as one SQL condition on DETECTIONS joined to OBJECTS."""
    if isinstance(node, list):
        return sa.and_(*(compile_condition(child) for child in node))
    if "AND" in node:
        return sa.and_(*(compile_condition(child) for child in node["AND"]))
    if "OR" in node:
        return sa.or_(*(compile_condition(child) for child in node["OR"]))
    if "NOT" in node:
        return sa.not_(compile_condition(node["NOT"]))
    operator, value = node["operator"], node["value"]
    column = _field(node["field"], value)
    if operator == "exists":
        return column.is_not(None) if value else column.is_(None)
    if operator == "contains":
        return column.contains(str(value), autoescape=True)
    if operator in ("in", "nin"):
        clause = column.in_(list(value))
        return clause if operator == "in" else sa.or_(sa.not_(clause), column.is_(None))
    return {"eq": column == value, "ne": sa.or_(column != value, column.is_(None)),
            "lt": column < value, "lte": column <= value, "gt": column > value,
            "gte": column >= value}[operator]
