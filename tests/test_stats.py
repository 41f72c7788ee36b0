"""Model-quality statistics on a hand-built set of annotations whose numbers are known.

The set (``REVIEWS``) spans three weeks of March 2025, two model versions, two retrievers
and two reviewers: 21 live annotations — 14 confirmed, 3 corrected, 1 false_positive,
2 missed (20 verdicts) and 1 "unsure" — plus one deleted row that no statistic may count.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from workbench import stats
from workbench.errors import ValidationError
from workbench.store import tables as t

V1, V2 = "yolo_detector@1.0.0", "yolo_detector@2.0.0"
COLLECTION = "col_reviews"
NOW = datetime(2025, 3, 21, 18, 0, tzinfo=UTC)  # a Friday; the last 7 days are rows 14-21

# (label, created_at "MM-DD HH:MM" in March 2025 UTC, version, retriever, author,
#  predicted_class, true_class)
REVIEWS = [
    ("confirmed", "03-03 09:10", V1, "ret_a", "ana", "circle", None),  # 1, week of 03-03
    ("confirmed", "03-03 09:20", V1, "ret_a", "ana", "circle", None),
    ("confirmed", "03-03 09:40", V1, "ret_a", "ana", "square", None),
    ("corrected", "03-03 10:05", V1, "ret_a", "ana", "circle", "square"),
    ("false_positive", "03-04 14:00", V1, "ret_b", "ben", "triangle", None),
    ("confirmed", "03-05 14:30", V1, "ret_b", "ben", "triangle", None),
    ("missed", "03-05 14:45", V1, "ret_b", "ben", None, "star"),
    ("confirmed", "03-10 11:00", V1, "ret_a", "ana", "square", None),  # 8, week of 03-10
    ("confirmed", "03-10 11:15", V1, "ret_a", "ana", "square", None),
    ("corrected", "03-11 11:30", V1, "ret_a", "ana", "triangle", "square"),
    ("confirmed", "03-12 16:00", V2, "ret_b", "ben", "circle", None),
    ("unsure", "03-12 16:10", V2, "ret_b", "ben", "circle", None),
    ("confirmed", "03-13 16:20", V2, "ret_b", "ben", "triangle", None),
    ("confirmed", "03-17 09:00", V2, "ret_a", "ana", "circle", None),  # 14, week of 03-17
    ("confirmed", "03-17 09:05", V2, "ret_a", "ana", "circle", None),
    ("confirmed", "03-17 09:50", V2, "ret_a", "ana", "square", None),
    ("corrected", "03-18 10:00", V2, "ret_a", "ana", "circle", None),  # box only
    ("confirmed", "03-19 15:00", V2, "ret_b", "ben", "triangle", None),
    ("confirmed", "03-20 15:10", V2, "ret_b", "ben", "triangle", None),
    ("missed", "03-20 15:20", V2, "ret_b", "ben", None, "star"),
    ("confirmed", "03-21 08:00", V2, "ret_a", "ana", "square", None),
]
DELETED = ("false_positive", "03-21 09:00", V2, "ret_a", "ana", "circle", None)


def at(stamp: str) -> datetime:
    """Naive UTC, as the store keeps it."""
    return datetime.strptime(f"2025-{stamp}", "%Y-%m-%d %H:%M")


def seed_annotations(wb, reviews=REVIEWS, deleted=(DELETED,)) -> str:
    """Insert a collection and the given annotations straight into SQL; returns its id."""
    rows = []
    for index, (label, stamp, version, retriever, author, predicted, true) in enumerate(
            [*reviews, *deleted]):
        payload = {"image_width": 320, "image_height": 240}
        if predicted:
            payload["predicted_class"] = predicted
        if true:
            payload["true_class"] = true
        if label in ("corrected", "missed"):
            payload["bbox"] = {"x": 50.0, "y": 50.0, "w": 20.0, "h": 20.0}
        rows.append({
            "id": f"ann_{index:02d}", "document_id": f"det_{index:02d}",
            "collection_id": COLLECTION, "object_id": f"obj_{index:02d}",
            "extractor_key": version, "label": label, "confidence": None, "reasoning": "",
            "payload": payload, "retriever_id": retriever, "execution_id": None,
            "author": author, "revision": 1, "created_at": at(stamp), "updated_at": at(stamp),
            "deleted_at": at(stamp) if index >= len(reviews) else None,
        })
    with wb.db.write() as conn:
        conn.execute(t.collections.insert().values(
            id=COLLECTION, name="reviews", extractor_name="yolo_detector",
            active_version="2.0.0", bucket_ids=[], created_at=at("03-01 00:00")))
        if rows:
            conn.execute(t.annotations.insert(), rows)
    return COLLECTION


@pytest.fixture
def reviewed(wb):
    seed_annotations(wb)
    return wb


@pytest.fixture
def df(reviewed):
    return reviewed.stats.annotations()


def as_dict(frame: pl.DataFrame, *keys: str, value: str = "count") -> dict:
    """A frame as {key tuple (or key): value}, for exact comparisons."""
    result = {}
    for row in frame.iter_rows(named=True):
        key = tuple(row[k] for k in keys)
        result[key[0] if len(keys) == 1 else key] = row[value]
    return result


def test_load_keeps_live_rows_with_classes_from_the_payload(df):
    assert df.height == 21
    assert "ann_21" not in df["id"].to_list()  # the deleted one
    assert df.schema["created_at"] == pl.Datetime("us", "UTC")
    first = df.row(0, named=True)
    assert first["created_at"] == datetime(2025, 3, 3, 9, 10, tzinfo=UTC)
    assert (first["predicted_class"], first["true_class"]) == ("circle", None)
    assert df.filter(pl.col("label") == "missed")["true_class"].to_list() == ["star", "star"]


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, 21),
    ({"collection_id": COLLECTION}, 21),
    ({"collection_id": "col_other"}, 0),
    ({"extractor_key": V1}, 10),
    ({"extractor_key": V2}, 11),
    ({"since": datetime(2025, 3, 17, tzinfo=UTC)}, 8),
    ({"since": at("03-10 00:00"), "until": at("03-17 00:00")}, 6),  # naive works too
])
def test_load_filters(reviewed, filters, expected):
    assert reviewed.stats.annotations(**filters).height == expected


def test_annotated_versions(reviewed):
    assert reviewed.stats.annotated_versions(COLLECTION) == [V1, V2]
    assert reviewed.stats.annotated_versions("col_other") == []


def test_label_summary(df):
    summary = stats.label_summary(df)
    assert summary["label"].to_list() == ["confirmed", "corrected", "false_positive", "missed",
                                          "unsure"]  # verdicts first, in their usual order
    assert summary["count"].to_list() == [14, 3, 1, 2, 1]
    assert summary["rate"].to_list() == pytest.approx([14 / 21, 3 / 21, 1 / 21, 2 / 21, 1 / 21])


@pytest.mark.parametrize(("every", "expected"), [
    ("1w", {  # weeks start on Monday
        datetime(2025, 3, 3, tzinfo=UTC): {"confirmed": 4, "corrected": 1,
                                           "false_positive": 1, "missed": 1},
        datetime(2025, 3, 10, tzinfo=UTC): {"confirmed": 4, "corrected": 1, "unsure": 1},
        datetime(2025, 3, 17, tzinfo=UTC): {"confirmed": 6, "corrected": 1, "missed": 1},
    }),
    ("1d", {
        datetime(2025, 3, 3, tzinfo=UTC): {"confirmed": 3, "corrected": 1},
        datetime(2025, 3, 4, tzinfo=UTC): {"false_positive": 1},
        datetime(2025, 3, 5, tzinfo=UTC): {"confirmed": 1, "missed": 1},
        datetime(2025, 3, 10, tzinfo=UTC): {"confirmed": 2},
        datetime(2025, 3, 11, tzinfo=UTC): {"corrected": 1},
        datetime(2025, 3, 12, tzinfo=UTC): {"confirmed": 1, "unsure": 1},
        datetime(2025, 3, 13, tzinfo=UTC): {"confirmed": 1},
        datetime(2025, 3, 17, tzinfo=UTC): {"confirmed": 3},
        datetime(2025, 3, 18, tzinfo=UTC): {"corrected": 1},
        datetime(2025, 3, 19, tzinfo=UTC): {"confirmed": 1},
        datetime(2025, 3, 20, tzinfo=UTC): {"confirmed": 1, "missed": 1},
        datetime(2025, 3, 21, tzinfo=UTC): {"confirmed": 1},
    }),
])
def test_by_window(df, every, expected):
    windows = stats.by_window(df, every)
    labels = {"confirmed", "corrected", "false_positive", "missed", "unsure"}
    # Every label has a row in every window (0 where absent), so rate lines drop to 0.
    assert windows.height == len(expected) * len(labels)
    for window, counts in expected.items():
        rows = windows.filter(pl.col("window") == window)
        total = sum(counts.values())
        assert as_dict(rows, "label") == {label: counts.get(label, 0) for label in labels}
        assert as_dict(rows, "label", value="rate") == pytest.approx(
            {label: counts.get(label, 0) / total for label in labels})


def test_recent_vs_all(df):
    table = stats.recent_vs_all(df, days=7, now=NOW)
    assert as_dict(table, "label", value="recent_count") == {
        "confirmed": 6, "corrected": 1, "false_positive": 0, "missed": 1, "unsure": 0}
    assert as_dict(table, "label", value="all_count") == {
        "confirmed": 14, "corrected": 3, "false_positive": 1, "missed": 2, "unsure": 1}
    assert as_dict(table, "label", value="recent_rate") == pytest.approx({
        "confirmed": 6 / 8, "corrected": 1 / 8, "false_positive": 0.0, "missed": 1 / 8,
        "unsure": 0.0})
    assert as_dict(table, "label", value="change")["confirmed"] == pytest.approx(
        6 / 8 - 14 / 21)


def test_recent_vs_all_with_nothing_recent(df):
    table = stats.recent_vs_all(df, days=7, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert table["recent_count"].to_list() == [0] * 5
    assert table["recent_rate"].null_count() == 5  # no share of nothing


@pytest.mark.parametrize(("column", "expected"), [
    ("extractor_key", {
        (V1, "confirmed"): 6, (V1, "corrected"): 2, (V1, "false_positive"): 1,
        (V1, "missed"): 1,
        (V2, "confirmed"): 8, (V2, "corrected"): 1, (V2, "missed"): 1, (V2, "unsure"): 1}),
    ("retriever_id", {
        ("ret_a", "confirmed"): 9, ("ret_a", "corrected"): 3,
        ("ret_b", "confirmed"): 5, ("ret_b", "false_positive"): 1, ("ret_b", "missed"): 2,
        ("ret_b", "unsure"): 1}),
    ("author", {
        ("ana", "confirmed"): 9, ("ana", "corrected"): 3,
        ("ben", "confirmed"): 5, ("ben", "false_positive"): 1, ("ben", "missed"): 2,
        ("ben", "unsure"): 1}),
    ("class", {  # the reviewer's class where given, else the predicted one
        ("circle", "confirmed"): 5, ("circle", "corrected"): 1, ("circle", "unsure"): 1,
        ("square", "confirmed"): 5, ("square", "corrected"): 2,
        ("triangle", "confirmed"): 4, ("triangle", "false_positive"): 1,
        ("star", "missed"): 2}),
])
def test_by_group(df, column, expected):
    groups = stats.by_group(df, column)
    assert as_dict(groups, column, "label") == expected
    totals = {}
    for (group, _), count in expected.items():
        totals[group] = totals.get(group, 0) + count
    assert as_dict(groups, column, "label", value="rate") == pytest.approx(
        {key: count / totals[key[0]] for key, count in expected.items()})


def test_by_group_rejects_an_unknown_column(df):
    with pytest.raises(ValidationError, match="extractor_key, retriever_id, author, class"):
        stats.by_group(df, "camera")


def test_health_table(df):
    # Over the 20 verdicts ("unsure" is not one): 14 confirmed, 3 corrected, 1 FP, 2 missed.
    rows = {row["label"]: row for row in stats.health_table(df)}
    assert {label: (row["value"], row["status"]) for label, row in rows.items()} == {
        "confirmed": (pytest.approx(0.70), "action needed"),
        "corrected": (pytest.approx(0.15), "healthy"),  # at the threshold, not over it
        "false_positive": (pytest.approx(0.05), "healthy"),
        "missed": (pytest.approx(0.10), "action needed"),
    }
    assert rows["confirmed"]["action"] == "Review model quality"
    assert rows["missed"]["action"].startswith("Model is missing objects")
    assert rows["corrected"]["action"] == ""
    assert [row["threshold"] for row in rows.values()] == [0.80, 0.15, 0.10, 0.05]


def verdicts(**counts: int) -> pl.DataFrame:
    rows = [{"id": f"a{label}{i}", "label": label, "created_at": datetime(2025, 1, 1)}
            for label, n in counts.items() for i in range(n)]
    return stats.annotations_frame(rows)


@pytest.mark.parametrize(("counts", "label", "status"), [
    ({"confirmed": 81, "corrected": 19}, "confirmed", "healthy"),
    ({"confirmed": 80, "corrected": 20}, "confirmed", "action needed"),  # must be over 80%
    ({"confirmed": 84, "corrected": 16}, "corrected", "action needed"),
    ({"confirmed": 90, "false_positive": 10}, "false_positive", "healthy"),
    ({"confirmed": 89, "false_positive": 11}, "false_positive", "action needed"),
    ({"confirmed": 95, "missed": 5}, "missed", "healthy"),
    ({"confirmed": 94, "missed": 6}, "missed", "action needed"),
    ({"confirmed": 9, "unsure": 91}, "confirmed", "healthy"),  # other labels don't count
    ({"unsure": 3}, "confirmed", "no data"),
])
def test_health_thresholds(counts, label, status):
    (row,) = [r for r in stats.health_table(verdicts(**counts)) if r["label"] == label]
    assert row["status"] == status


def test_precision_recall(df):
    result = stats.precision_recall(df)
    # TP = 14 confirmed; FP = 1 false_positive + 3 corrected; FN = 2 missed + 3 corrected.
    assert (result["tp"], result["fp"], result["fn"], result["reviewed"]) == (14, 4, 5, 20)
    assert result["precision"] == pytest.approx(14 / 18)
    assert result["recall"] == pytest.approx(14 / 19)
    assert "corrected" in result["assumptions"] and "not" in result["assumptions"]


@pytest.mark.parametrize(("counts", "precision", "recall"), [
    ({"missed": 2}, None, 0.0),
    ({"false_positive": 1}, 0.0, None),
    ({"unsure": 1}, None, None),
    ({"confirmed": 3, "corrected": 1}, 0.75, 0.75),
])
def test_precision_recall_edges(counts, precision, recall):
    result = stats.precision_recall(verdicts(**counts))
    assert (result["precision"], result["recall"]) == (precision, recall)


def test_confusion(df):
    # The box-only correction has no true class and is left out.
    assert as_dict(stats.confusion(df), "predicted_class", "true_class") == {
        ("circle", "square"): 1, ("triangle", "square"): 1}


def test_throughput(df):
    result = stats.throughput(df, "1h")
    # ana: 12 verdicts in 7 distinct hours; ben: 8 in 6 ("unsure" is not a verdict).
    assert as_dict(result["by_author"], "author", value="verdicts") == {"ana": 12, "ben": 8}
    assert as_dict(result["by_author"], "author", value="active_windows") == {"ana": 7,
                                                                               "ben": 6}
    assert as_dict(result["by_author"], "author", value="per_window") == pytest.approx(
        {"ana": 12 / 7, "ben": 8 / 6})
    assert result["active_windows"] == 13
    assert result["mean_per_window"] == pytest.approx(20 / 13)
    busiest = result["by_window"].filter(pl.col("verdicts") == 3)
    assert busiest["window"].to_list() == [datetime(2025, 3, 3, 9, tzinfo=UTC),
                                           datetime(2025, 3, 17, 9, tzinfo=UTC)]


@pytest.mark.parametrize("every", ["1 day", "d", "0d", "1m", ""])
def test_windows_must_be_a_count_and_unit(df, every):
    with pytest.raises(ValidationError, match="'1d'"):
        stats.by_window(df, every)


def test_compute_all_with_filters(reviewed):
    report = reviewed.stats.report(COLLECTION, V2, window="1w", now=NOW)
    assert report["total"] == 11
    assert as_dict(report["labels"], "label") == {"confirmed": 8, "corrected": 1, "missed": 1,
                                                  "unsure": 1}
    assert report["over_time"]["window"].unique().sort().to_list() == [
        datetime(2025, 3, 10, tzinfo=UTC), datetime(2025, 3, 17, tzinfo=UTC)]
    assert report["precision_recall"]["precision"] == pytest.approx(8 / 9)
    assert report["by_version"]["extractor_key"].unique().to_list() == [V2]


def test_everything_is_defined_on_no_annotations(wb):
    report = wb.stats.report(window="1w", now=NOW)
    assert report["total"] == 0
    for key in ("labels", "over_time", "recent", "by_version", "by_retriever", "by_class",
                "confusion"):
        assert report[key].is_empty(), key
    assert [row["status"] for row in report["health"]] == ["no data"] * 4
    assert all(row["value"] is None for row in report["health"])
    pr = report["precision_recall"]
    assert (pr["tp"], pr["fp"], pr["fn"], pr["precision"], pr["recall"]) == (0, 0, 0, None,
                                                                              None)
    assert report["throughput"]["mean_per_window"] is None
    assert report["throughput"]["by_author"].is_empty()
