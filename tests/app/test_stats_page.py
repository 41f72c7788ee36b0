"""The Stats page renders empty and with annotations; its filters change what it counts."""

from __future__ import annotations

import pytest

from tests.app.conftest import run_page
from tests.test_stats import V1, V2, seed_annotations

PAGE = "pages/4_Stats.py"


def health_table(at):
    (table,) = [d for d in at.dataframe if "healthy when" in d.value.columns]
    return table.value


def test_empty_workspace_explains_itself(workspace):
    at = run_page(PAGE)
    assert not at.exception, [e.message for e in at.exception]
    assert any("collection" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_collection_without_annotations_explains_itself(workspace):
    seed_annotations(workspace, reviews=[], deleted=[])
    at = run_page(PAGE)
    assert not at.exception, [e.message for e in at.exception]
    assert any("No annotations yet" in i.value for i in at.info)
    assert not at.get("plotly_chart") and not at.dataframe


def test_annotations_give_health_table_metrics_and_charts(workspace):
    seed_annotations(workspace)
    at = run_page(PAGE)
    assert not at.exception, [e.message for e in at.exception]
    table = health_table(at)
    assert list(table["metric"]) == ["confirmed rate", "corrected rate",
                                     "false_positive rate", "missed rate"]
    assert [s[0] if len(s) else None for s in table["status"]] == [
        "action needed", "healthy", "healthy", "action needed"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Annotations"] == "21"
    assert metrics["Precision (est.)"] == "78%"  # 14 / 18
    assert any("not estimates for the whole population" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 7  # labels, over time, version, retriever, class,
    #                                          confusion, throughput


def test_filters_narrow_the_statistics(workspace):
    seed_annotations(workspace)
    at = run_page(PAGE)
    assert at.selectbox(key="stats_version").options == ["all versions", V1, V2]
    at.selectbox(key="stats_version").select(V1).run()
    at.radio(key="stats_window").set_value("1w").run()
    assert not at.exception, [e.message for e in at.exception]
    assert {m.label: m.value for m in at.metric}["Annotations"] == "10"


def test_health_over_the_last_7_days_beside_all_time(workspace):
    from datetime import timedelta

    from workbench.store import tables as t
    from workbench.store.metadata import utcnow

    seed_annotations(workspace)
    # The seeded set's last week (rows 14-21: six confirmed, one corrected, one missed)
    # happened yesterday; the rest is a year and more ago.
    with workspace.db.write() as conn:
        conn.execute(t.annotations.update().where(t.annotations.c.id.in_(
            [f"ann_{i:02d}" for i in range(13, 21)])).values(
            created_at=utcnow() - timedelta(days=1)))
    at = run_page(PAGE)
    assert at.radio(key="stats_health_period").value == "all"
    assert list(health_table(at)["rate"]) == pytest.approx([0.70, 0.15, 0.05, 0.10])
    at.radio(key="stats_health_period").set_value("7d").run()
    assert not at.exception, [e.message for e in at.exception]
    table = health_table(at)
    assert list(table["count"]) == [6, 1, 0, 1]
    assert list(table["rate"]) == pytest.approx([0.75, 0.125, 0.0, 0.125])
    assert list(table["all time"]) == pytest.approx([0.70, 0.15, 0.05, 0.10])
    assert [s[0] for s in table["status"]] == ["action needed", "healthy", "healthy",
                                               "action needed"]


def test_health_over_a_week_without_verdicts_says_so(workspace):
    seed_annotations(workspace)  # every verdict more than a year old
    at = run_page(PAGE)
    at.radio(key="stats_health_period").set_value("7d").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("No verdicts in the last 7 days" in c.value for c in at.caption)
    assert [s[0] for s in health_table(at)["status"]] == ["no data"] * 4
