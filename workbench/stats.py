"""Model-quality statistics from reviewers' annotations, computed with polars.

Every function below takes the frame that :meth:`StatsService.annotations` (or
:func:`annotations_frame`, for rows already in hand) returns: one row per live annotation
with ``id, label, created_at`` (UTC), ``extractor_key`` (the model version),
``retriever_id, execution_id, author, predicted_class, true_class``. An empty frame gives
empty frames and ``None`` rates, never an error.

Two kinds of rate appear, and they are kept apart on purpose:

* **label shares** (:func:`label_summary`, :func:`by_window`, :func:`recent_vs_all`,
  :func:`by_group`): a label's count over *every* live annotation in the group, any label
  included, so that the shares of a group add up to 1;
* **verdict rates** (:func:`health_table`, :func:`precision_recall`): over the four
  verdicts only (``confirmed``, ``corrected``, ``false_positive``, ``missed``); a free-form
  label says nothing about whether the model was right, so it is left out of the denominator.

Usage::

    from workbench import Workbench
    wb = Workbench.open("data/workspace")
    report = wb.stats.report(collection_id="col_…", window="1w")
    report["health"]           # list of dicts, one per threshold rule
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import sqlalchemy as sa

from workbench.annotations import VERDICTS
from workbench.errors import ValidationError
from workbench.store import tables as t
from workbench.store.metadata import MetadataStore

SCHEMA = {
    "id": pl.String,
    "label": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
    "extractor_key": pl.String,
    "retriever_id": pl.String,
    "execution_id": pl.String,
    "author": pl.String,
    "predicted_class": pl.String,
    "true_class": pl.String,
}
# The columns by_group can split on; "class" is derived (see _with_class).
GROUP_COLUMNS = ("extractor_key", "retriever_id", "author", "class")
_EVERY = re.compile(r"^[1-9][0-9]*[hdw]$")


@dataclass(frozen=True)
class HealthRule:
    """One line of the health table: a verdict's rate against the seed's threshold."""

    label: str
    threshold: float
    higher_is_better: bool
    action: str

    def healthy(self, rate: float) -> bool:
        """Whether ``rate`` is on the good side of the threshold."""
        # Strict comparisons, as the seed states them: "> 80% confirmed", "> 15% corrected".
        return rate > self.threshold if self.higher_is_better else not rate > self.threshold


HEALTH_RULES = (
    HealthRule("confirmed", 0.80, True, "Review model quality"),
    HealthRule("corrected", 0.15, False, "Class confusion — retrain with corrected examples"),
    HealthRule("false_positive", 0.10, False,
               "Confidence threshold too low, or hard negatives needed"),
    HealthRule("missed", 0.05, False,
               "Model is missing objects — add missed annotations as positive training data"),
)

PRECISION_RECALL_ASSUMPTIONS = (
    "Estimated from reviewers' verdicts: confirmed = true positive; false_positive = false "
    "positive; missed = false negative; corrected = one false positive and one false negative "
    "(a wrong class or box is a wrong prediction and a missed true object). "
    "precision = TP / (TP + FP), recall = TP / (TP + FN). Only reviewed detections count: the "
    "sample is whatever the review queue showed, usually the uncertain ones, so these are not "
    "estimates for the whole population of detections."
)


# -- frames -------------------------------------------------------------------------------
def annotations_frame(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """The stats frame from rows shaped like the ``annotations`` table (``payload`` a dict).

    Rows may instead carry ``predicted_class``/``true_class`` directly. Timestamps may be
    naive UTC (as stored) or timezone-aware.
    """
    records = []
    for row in rows:
        payload = row.get("payload") or {}
        records.append({
            "id": row["id"], "label": row["label"],
            "created_at": _naive_utc(row["created_at"]),
            "extractor_key": row.get("extractor_key"), "retriever_id": row.get("retriever_id"),
            "execution_id": row.get("execution_id"), "author": row.get("author"),
            "predicted_class": row.get("predicted_class", payload.get("predicted_class")),
            "true_class": row.get("true_class", payload.get("true_class")),
        })
    # Built naive, then marked UTC: that is how every timestamp is stored.
    naive = {**SCHEMA, "created_at": pl.Datetime("us")}
    frame = pl.DataFrame(records, schema=naive, orient="row")
    return frame.with_columns(pl.col("created_at").dt.replace_time_zone("UTC"))


# -- label shares -------------------------------------------------------------------------
def label_summary(df: pl.DataFrame) -> pl.DataFrame:
    """``label, count, rate`` per label present; rate = count / all live annotations."""
    return _shares(df, [])


def by_window(df: pl.DataFrame, every: str = "1d") -> pl.DataFrame:
    """``window, label, count, total, rate`` per time window (``"1d"``, ``"1w"``, ``"1h"``…).

    Windows start at the truncated timestamp (UTC midnight; Monday for weeks). Every label
    seen anywhere gets a row in every window that has annotations, with count 0 where it did
    not occur, so that a line of rates drops to 0 instead of being drawn across the gap.
    """
    _check_every(every)
    windowed = df.with_columns(window=pl.col("created_at").dt.truncate(every))
    counts = windowed.group_by("window", "label").agg(count=pl.len())
    grid = (windowed.select("window").unique()
            .join(windowed.select("label").unique(), how="cross"))
    filled = (grid.join(counts, on=["window", "label"], how="left")
              .with_columns(pl.col("count").fill_null(0).cast(pl.UInt32)))
    return _add_rate(filled, ["window"]).sort("window", _label_rank(), "label")


def recent_vs_all(df: pl.DataFrame, days: int = 7, now: datetime | None = None
                  ) -> pl.DataFrame:
    """Per label: its share in the last ``days`` days (up to ``now``) against all time.

    Columns ``label, recent_count, recent_rate, all_count, all_rate, change`` (recent minus
    all-time share). ``now`` defaults to the current time; tests pass a fixed one.
    """
    now = _aware_utc(now or datetime.now(UTC))
    recent = df.filter(pl.col("created_at").is_between(now - timedelta(days=days), now))
    everything = label_summary(df).rename({"count": "all_count", "rate": "all_rate"})
    last = label_summary(recent).rename({"count": "recent_count", "rate": "recent_rate"})
    joined = everything.join(last, on="label", how="left").with_columns(
        pl.col("recent_count").fill_null(0).cast(pl.UInt32))
    if recent.height:
        # A label absent from the recent window has share 0 there; with no recent
        # annotations at all the share is undefined and stays null.
        joined = joined.with_columns(pl.col("recent_rate").fill_null(0.0))
    return (joined.select("label", "recent_count", "recent_rate", "all_count", "all_rate")
            .with_columns(change=pl.col("recent_rate") - pl.col("all_rate")))


def by_group(df: pl.DataFrame, column: str) -> pl.DataFrame:
    """``<column>, label, count, total, rate`` per group, rate within the group.

    ``column`` is ``"extractor_key"`` (model version), ``"retriever_id"``, ``"author"`` or
    ``"class"``: the reviewer's true class where one was given, else the predicted class.
    A missing value (say, no retriever) is its own group, ``null``.
    """
    if column not in GROUP_COLUMNS:
        raise ValidationError(f"cannot group statistics by {column!r}; use one of "
                              f"{', '.join(GROUP_COLUMNS)}")
    return _shares(_with_class(df) if column == "class" else df, [column])


# -- verdict rates ------------------------------------------------------------------------
def verdict_counts(df: pl.DataFrame) -> dict[str, int]:
    """How many of each of the four verdicts (0 where none); other labels are not counted."""
    counts = dict(df.filter(pl.col("label").is_in(VERDICTS)).group_by("label").len().iter_rows())
    return {verdict: int(counts.get(verdict, 0)) for verdict in VERDICTS}


def health_table(df: pl.DataFrame) -> list[dict[str, Any]]:
    """The seed's health checks, one dict per rule.

    Rates are over the four verdicts only — ``confirmed``, ``corrected``,
    ``false_positive``, ``missed`` — other labels are excluded from the denominator. Each
    row holds ``metric, label, count, value`` (the rate, ``None`` with no verdicts),
    ``threshold, healthy_when, status`` (``"healthy"``, ``"action needed"`` or ``"no data"``)
    and ``action`` (what to do; empty when healthy). Healthy means confirmed > 80%,
    corrected ≤ 15%, false_positive ≤ 10% and missed ≤ 5%.
    """
    counts = verdict_counts(df)
    reviewed = sum(counts.values())
    rows = []
    for rule in HEALTH_RULES:
        rate = counts[rule.label] / reviewed if reviewed else None
        if rate is None:
            status, action = "no data", ""
        elif rule.healthy(rate):
            status, action = "healthy", ""
        else:
            status, action = "action needed", rule.action
        rows.append({
            "metric": f"{rule.label} rate", "label": rule.label, "count": counts[rule.label],
            "value": rate, "threshold": rule.threshold,
            "healthy_when": f"{'>' if rule.higher_is_better else '≤'} {rule.threshold:.0%}",
            "status": status, "action": action,
        })
    return rows


def precision_recall(df: pl.DataFrame) -> dict[str, Any]:
    """Precision and recall estimated from verdicts (see ``assumptions`` in the result).

    confirmed = TP, false_positive = FP, missed = FN, corrected = FP + FN. Returns ``tp, fp,
    fn, reviewed`` (verdicts counted), ``precision`` and ``recall`` (``None`` when the
    denominator is 0) and the ``assumptions`` behind them.
    """
    counts = verdict_counts(df)
    tp = counts["confirmed"]
    fp = counts["false_positive"] + counts["corrected"]
    fn = counts["missed"] + counts["corrected"]
    return {
        "tp": tp, "fp": fp, "fn": fn, "reviewed": sum(counts.values()),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "assumptions": PRECISION_RECALL_ASSUMPTIONS,
    }


def confusion(df: pl.DataFrame) -> pl.DataFrame:
    """``predicted_class, true_class, count`` from ``corrected`` annotations that have both.

    A correction of the box alone (no true class) says nothing about classes and is left
    out; one that keeps the class lands on the diagonal.
    """
    return (df.filter(pl.col("label") == "corrected", pl.col("predicted_class").is_not_null(),
                      pl.col("true_class").is_not_null())
            .group_by("predicted_class", "true_class").agg(count=pl.len())
            .sort(["count", "predicted_class", "true_class"], descending=[True, False, False]))


def throughput(df: pl.DataFrame, every: str = "1h") -> dict[str, Any]:
    """How fast reviewers work: verdicts per time window (an hour by default) per author.

    Counts the four verdicts only, like the health table. Returns ``every``, ``by_window``
    (``window, author, verdicts``), ``by_author`` (``author, verdicts, active_windows,
    per_window``), ``active_windows`` (windows in which anyone gave a verdict) and
    ``mean_per_window`` (all verdicts / active windows, ``None`` with none). Averaging over
    active windows only keeps nights and weekends from diluting the rate.
    """
    _check_every(every)
    verdicts = (df.filter(pl.col("label").is_in(VERDICTS))
                .with_columns(window=pl.col("created_at").dt.truncate(every)))
    per_window = (verdicts.group_by("window", "author").agg(verdicts=pl.len())
                  .sort("window", "author"))
    per_author = (per_window.group_by("author")
                  .agg(pl.col("verdicts").sum(), active_windows=pl.len())
                  .with_columns(per_window=pl.col("verdicts") / pl.col("active_windows"))
                  .sort("author"))
    active = verdicts.select(pl.col("window").n_unique()).item()
    return {
        "every": every, "by_window": per_window, "by_author": per_author,
        "active_windows": active,
        "mean_per_window": verdicts.height / active if active else None,
    }


# -- everything at once -------------------------------------------------------------------
def summarize(df: pl.DataFrame, window: str = "1d", now: datetime | None = None
              ) -> dict[str, Any]:
    """Every statistic above for one frame; see :meth:`StatsService.report`."""
    return {
        "total": df.height,
        "window": window,
        "labels": label_summary(df),
        "over_time": by_window(df, window),
        "recent": recent_vs_all(df, now=now),
        "by_version": by_group(df, "extractor_key"),
        "by_retriever": by_group(df, "retriever_id"),
        "by_class": by_group(df, "class"),
        "health": health_table(df),
        "precision_recall": precision_recall(df),
        "confusion": confusion(df),
        "throughput": throughput(df),
    }


# -- the service ---------------------------------------------------------------------------
class StatsService:
    """Review statistics of a workspace: its annotations as frames, and every figure the
    Stats page and ``workbench stats`` show (``wb.stats``)."""

    def __init__(self, db: MetadataStore):
        self.db = db

    def annotations(self, collection_id: str | None = None,
                    extractor_key: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, origin: str = "human") -> pl.DataFrame:
        """Live (not deleted) annotations matching every given filter, as a polars frame.

        ``since`` is inclusive and ``until`` exclusive, like ``AnnotationService.list``; both
        may be naive UTC or timezone-aware. ``origin``: people's verdicts (``"human"``, the
        default) or those carried over from the ground truth to other versions
        (``"carried"``), which are counted apart.
        """
        c = t.annotations.c
        conditions = [c.deleted_at.is_(None), c.origin == origin]
        if collection_id is not None:
            conditions.append(c.collection_id == collection_id)
        if extractor_key is not None:
            conditions.append(c.extractor_key == extractor_key)
        if since is not None:
            conditions.append(c.created_at >= _naive_utc(since))
        if until is not None:
            conditions.append(c.created_at < _naive_utc(until))
        query = (sa.select(c.id, c.label, c.created_at, c.extractor_key, c.retriever_id,
                           c.execution_id, c.author, c.payload)
                 .where(*conditions).order_by(c.created_at, c.id))
        with self.db.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return annotations_frame(rows)

    def annotated_versions(self, collection_id: str | None = None) -> list[str]:
        """The model versions (extractor keys) that have live annotations, for a filter."""
        c = t.annotations.c
        query = (sa.select(c.extractor_key).distinct()
                 .where(c.deleted_at.is_(None), c.extractor_key.is_not(None)))
        if collection_id is not None:
            query = query.where(c.collection_id == collection_id)
        with self.db.read() as conn:
            return sorted(conn.execute(query).scalars())

    def report(self, collection_id: str | None = None, extractor_key: str | None = None,
               window: str = "1d", now: datetime | None = None) -> dict[str, Any]:
        """Load the annotations matching the filters and compute every statistic (page and
        CLI).

        Keys: ``total``, ``window``, ``labels``, ``over_time``, ``recent`` (last 7 days against
        all time), ``by_version``, ``by_retriever``, ``by_class``, ``confusion`` (polars
        frames), ``health`` (list of dicts), ``precision_recall`` and ``throughput`` (dicts).
        """
        _check_every(window)
        summary = summarize(self.annotations(collection_id, extractor_key), window, now)
        carried = self.annotations(collection_id, extractor_key, origin="carried")
        summary["carried"] = {row["label"]: row["count"] for row in
                              carried.group_by("label").agg(count=pl.len()).to_dicts()}
        return summary


# -- helpers ------------------------------------------------------------------------------
def _shares(df: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    counts = df.group_by(*keys, "label").agg(count=pl.len())
    return _add_rate(counts, keys).sort(*keys, _label_rank(), "label", nulls_last=True).select(
        *keys, "label", "count", *(["total"] if keys else []), "rate")


def _add_rate(counts: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    total = pl.col("count").sum().over(keys) if keys else pl.col("count").sum()
    return counts.with_columns(total=total).with_columns(
        rate=pl.col("count") / pl.col("total"))


def _label_rank() -> pl.Expr:
    # The four verdicts first, in their usual order; any other label after them.
    return pl.col("label").replace_strict(
        {verdict: rank for rank, verdict in enumerate(VERDICTS)}, default=len(VERDICTS),
        return_dtype=pl.Int32)


def _with_class(df: pl.DataFrame) -> pl.DataFrame:
    # What the object really is, as far as the review knows: the reviewer's class if given.
    return df.with_columns(pl.coalesce("true_class", "predicted_class").alias("class"))


def _check_every(every: str) -> None:
    if not isinstance(every, str) or not _EVERY.match(every):
        raise ValidationError(f"time window {every!r} is not supported; use a count and a "
                              "unit h, d or w, such as '1h', '1d' or '1w'")


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _aware_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
