"""Widgets of the Stats page: filters, the health table and plotly charts of the verdicts.

The numbers come from :mod:`workbench.stats`; this module only chooses what to ask for and
draws it. Frames stay polars end to end (plotly express reads them through narwhals).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.express as px
import plotly.graph_objects as go
import polars as pl
import streamlit as st

from workbench import Workbench
from workbench.annotations import VERDICTS
from workbench.domain import Collection
from workbench.stats import health_table as health_rows

ALL_VERSIONS = "all"
WINDOWS = {"1d": "Day", "1w": "Week"}
# One colour per verdict on every chart, so that "red" always means false positives.
LABEL_COLOURS = {"confirmed": "#3cb44b", "corrected": "#f58231", "false_positive": "#e6194b",
                 "missed": "#911eb4"}
STATUS_COLOURS = {"healthy": "#3cb44b", "action needed": "#e6194b", "no data": "#a0a0a0"}
NO_VALUE = "(none)"
ALL_TIME = "all"
RECENT_DAYS = 7
PERIODS = {ALL_TIME: "All time", "7d": f"Last {RECENT_DAYS} days"}


@dataclass(frozen=True)
class StatsFilters:
    collection: Collection
    extractor_key: str | None  # None: every version
    window: str


def choose_filters(wb: Workbench) -> StatsFilters | None:
    """Collection, model version (or all) and time window; None when there is no collection."""
    collections = wb.collections.list()
    if not collections:
        return None
    left, middle, right = st.columns([2, 2, 1])
    names = [c.name for c in collections]
    collection = wb.collections.get(left.selectbox("Collection", names, key="stats_collection"))
    versions = [ALL_VERSIONS, *wb.stats.annotated_versions(collection.id)]
    version = middle.selectbox(
        "Model version", versions, key="stats_version",
        format_func=lambda v: "all versions" if v == ALL_VERSIONS else v)
    window = right.radio("Window", list(WINDOWS), format_func=WINDOWS.get, horizontal=True,
                         key="stats_window")
    return StatsFilters(collection, None if version == ALL_VERSIONS else version, window)


def load_report(wb: Workbench, filters: StatsFilters) -> dict[str, Any]:
    return wb.stats.report(filters.collection.id, filters.extractor_key,
                             window=filters.window)


def render_report(wb: Workbench, filters: StatsFilters, report: dict[str, Any]) -> None:
    """Everything on the page below the filters; a short note instead when nothing is there."""
    if report["total"] == 0:
        st.info("No annotations yet for this selection. Verdicts that reviewers give on "
                "detections (confirmed, corrected, false positive, missed) are counted here.")
        return
    headline(report)
    health_section(wb, filters, report)
    st.subheader("Labels")
    left, right = st.columns(2)
    with left:
        label_counts_chart(report["labels"])
    with right:
        rates_over_time_chart(report["over_time"], WINDOWS.get(report["window"], "window"))
    recent_table(report["recent"])
    st.subheader("By model version, retriever and class")
    left, right = st.columns(2)
    with left:
        group_chart(report["by_version"], "extractor_key", "Model version")
    with right:
        group_chart(report["by_retriever"], "retriever_id", "Retriever")
    left, right = st.columns(2)
    with left:
        group_chart(report["by_class"], "class", "Class (true if corrected, else predicted)")
    with right:
        confusion_chart(report["confusion"])
    st.subheader("Review throughput")
    throughput_chart(report["throughput"])


def headline(report: dict[str, Any]) -> None:
    """Counts, estimated precision and recall, and the assumptions behind them."""
    pr = report["precision_recall"]
    pace = report["throughput"]["mean_per_window"]
    cols = st.columns(4)
    cols[0].metric("Annotations", report["total"])
    cols[1].metric("Precision (est.)", _percent(pr["precision"]))
    cols[2].metric("Recall (est.)", _percent(pr["recall"]))
    cols[3].metric("Verdicts per active hour", "—" if pace is None else f"{pace:.1f}")
    st.caption(f"{pr['reviewed']} verdicts: TP {pr['tp']}, FP {pr['fp']}, FN {pr['fn']}. "
               f"{pr['assumptions']}")


def health_section(wb: Workbench, filters: StatsFilters, report: dict[str, Any],
                   now: datetime | None = None) -> None:
    """The health table over the chosen period: all time, or the last days beside all time
    (a model that was healthy may not be now, and the all-time rates hide it)."""
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    left.subheader("Health")
    period = right.radio("Health over", list(PERIODS), format_func=PERIODS.get,
                         horizontal=True, key="stats_health_period")
    if period == ALL_TIME:
        health_table(report["health"])
        return
    since = (now or datetime.now(UTC)) - timedelta(days=RECENT_DAYS)
    recent = wb.stats.annotations(filters.collection.id, filters.extractor_key, since=since)
    if not recent.height:
        st.caption(f"No verdicts in the last {RECENT_DAYS} days (since "
                   f"{since:%Y-%m-%d %H:%M} UTC): nothing to judge the model by over this "
                   "period.")
    health_table(health_rows(recent), all_time=report["health"])


def health_table(rows: list[dict[str, Any]],
                 all_time: list[dict[str, Any]] | None = None) -> None:
    """The threshold checks, the status as a coloured tag (no pandas Styler needed); with
    ``all_time``, the rows are a recent period's and each rate is shown beside its all-time
    rate."""
    before = {row["metric"]: row["value"] for row in all_time or []}
    frame = pl.DataFrame([{
        "metric": row["metric"], "count": row["count"], "rate": row["value"],
        **({"all time": before.get(row["metric"])} if all_time is not None else {}),
        "healthy when": row["healthy_when"], "status": [row["status"]],
        "action": row["action"]} for row in rows],
        schema_overrides={"rate": pl.Float64, "all time": pl.Float64})
    label = f"rate, last {RECENT_DAYS} days" if all_time is not None else "rate"
    st.dataframe(frame, hide_index=True, width="stretch", key="health_table", column_config={
        "rate": st.column_config.NumberColumn(label, format="percent"),
        "all time": st.column_config.NumberColumn("rate, all time", format="percent"),
        "status": st.column_config.MultiselectColumn(
            "status", options=list(STATUS_COLOURS), color=list(STATUS_COLOURS.values())),
        "action": st.column_config.TextColumn("action", width="large"),
    })
    st.caption("Rates over the four verdicts only; other labels are left out of the "
               "denominator.")


def label_counts_chart(labels: pl.DataFrame) -> None:
    figure = px.bar(labels, x="label", y="count", color="label", text="count",
                    color_discrete_map=LABEL_COLOURS, title="Annotations per label")
    _show(figure.update_layout(showlegend=False))


def rates_over_time_chart(over_time: pl.DataFrame, window_name: str) -> None:
    figure = px.line(over_time, x="window", y="rate", color="label", markers=True,
                     color_discrete_map=LABEL_COLOURS, category_orders=_label_order(over_time),
                     hover_data=["count", "total"],
                     title=f"Share of each label per {window_name.lower()}")
    # Whole days or weeks on the axis, even when there is only one (plotly would zoom to ms).
    figure.update_xaxes(tickformat="%b %d", dtick=86_400_000 if window_name == "Day" else
                        7 * 86_400_000)
    _show(figure.update_yaxes(tickformat=".0%", rangemode="tozero"))


def recent_table(recent: pl.DataFrame) -> None:
    if not recent["recent_count"].sum():
        st.caption("No annotations in the last 7 days to compare with all time.")
        return
    st.caption("Last 7 days against all time (each label's share of annotations)")
    st.dataframe(recent, hide_index=True, width="stretch", column_config={
        "recent_count": st.column_config.NumberColumn("last 7 days"),
        "recent_rate": st.column_config.NumberColumn("share, last 7 days", format="percent"),
        "all_count": st.column_config.NumberColumn("all time"),
        "all_rate": st.column_config.NumberColumn("share, all time", format="percent"),
        "change": st.column_config.NumberColumn("change", format="percent")})


def group_chart(frame: pl.DataFrame, column: str, title: str) -> None:
    """Grouped bars of each label's share within each group."""
    frame = frame.with_columns(pl.col(column).fill_null(NO_VALUE))
    figure = px.bar(frame, x=column, y="rate", color="label", barmode="group",
                    color_discrete_map=LABEL_COLOURS, hover_data=["count", "total"],
                    category_orders=_label_order(frame),
                    title=title, labels={column: ""})
    _show(figure.update_yaxes(tickformat=".0%"))


def confusion_chart(confusion: pl.DataFrame) -> None:
    """Predicted against true class, from corrections that changed (or kept) the class."""
    if confusion.is_empty():
        st.caption("No corrections with a true class yet: no class confusion to show.")
        return
    predicted = sorted(confusion["predicted_class"].unique())
    true = sorted(confusion["true_class"].unique())
    counts = {(p, t): c for p, t, c in confusion.iter_rows()}
    z = [[counts.get((p, t), 0) for t in true] for p in predicted]
    # Counts are printed in the cells, so the colour bar would only repeat them.
    figure = go.Figure(go.Heatmap(z=z, x=true, y=predicted, colorscale="Oranges", zmin=0,
                                  showscale=False, text=z, texttemplate="%{text}"))
    figure.update_layout(title="Class confusion (corrected annotations)",
                         xaxis_title="true class", yaxis_title="predicted class")
    _show(figure)


def throughput_chart(throughput: dict[str, Any]) -> None:
    per_window = throughput["by_window"]
    if per_window.is_empty():
        st.caption("No verdicts yet.")
        return
    figure = px.line(per_window, x="window", y="verdicts", color="author", markers=True,
                     title="Verdicts per hour, per reviewer")
    _show(figure)
    st.dataframe(throughput["by_author"], hide_index=True, width="stretch", column_config={
        "active_windows": st.column_config.NumberColumn("active hours"),
        "per_window": st.column_config.NumberColumn("verdicts per active hour",
                                                    format="%.1f")})


def _show(figure: go.Figure) -> None:
    st.plotly_chart(figure.update_layout(margin={"t": 48, "b": 8}), width="stretch")


def _label_order(frame: pl.DataFrame) -> dict[str, list[str]]:
    # The same legend order on every chart: the verdicts first, then any other label.
    present = set(frame["label"].to_list())
    return {"label": [v for v in VERDICTS if v in present] + sorted(present - set(VERDICTS))}


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"
