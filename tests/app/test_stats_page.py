"""The Stats page renders empty and with annotations; its filters change what it counts."""

from __future__ import annotations

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
