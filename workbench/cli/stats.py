"""``workbench stats``: verdict counts, the health table and estimated precision/recall."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace


def stats(
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    version: Annotated[str | None, typer.Option(help="e.g. yolo_detector@1.0.0")] = None,
    window: Annotated[str, typer.Option(help="1d or 1w")] = "1d",
) -> None:
    """Verdict counts and rates, the health table and estimated precision/recall."""
    wb = open_workspace()
    collection_id = wb.collections.get(collection).id if collection else None
    report = wb.stats.report(collection_id, version, window)
    labels = report["labels"].to_dicts()
    pr = report["precision_recall"]
    carried = report["carried"]
    lines = [f"{report['total']} annotations by people" + (
        f" (and {sum(carried.values())} carried over from the ground truth to other versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(carried.items())) + ")" if carried else "")]
    lines += [f"  {r['label']:16} {r['count']:6}  {r['rate']:6.1%}" for r in labels]
    lines.append("health:")
    for row in report["health"]:
        value = "n/a" if row["value"] is None else f"{row['value']:.1%}"
        lines.append(f"  {row['metric']:22} {value:>7}  {row['status']:14} {row['action']}")
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines.append(f"precision ≈ {fmt(pr['precision'])}, recall ≈ {fmt(pr['recall'])} "
                 f"(TP {pr['tp']}, FP {pr['fp']}, FN {pr['fn']}; {pr['assumptions']})")
    data = {"total": report["total"], "carried": carried, "labels": labels,
            "health": report["health"],
            "precision_recall": pr, "confusion": report["confusion"].to_dicts()}
    emit(data, "\n".join(lines))
