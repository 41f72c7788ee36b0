"""``workbench evaluate`` (compare two versions, apply the gate) and ``workbench promote``."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace, option
from workbench.params import Gate


def evaluate(
    collection: str,
    candidate: Annotated[str | None, typer.Option(help="Default: the newest version.")] = None,
    base: Annotated[str | None, typer.Option(help="Default: the candidate's parent.")] = None,
    min_gain: Annotated[float, option(Gate, "min_map50_95_gain")] = Gate.min_map50_95_gain,
    max_class_drop: Annotated[float, option(Gate, "max_class_drop")] = Gate.max_class_drop,
) -> None:
    """Compare two versions on the same held-out images (pycocotools) and apply the gate."""
    record = open_workspace().evaluation.compare_versions(collection, base, candidate,
                                                          Gate(min_gain, max_class_drop))
    b, c = record["base"], record["candidate"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"{record['base_key']} vs {record['candidate_key']} on "
             f"{len(record['images']['ids'])} images ({record['images']['chosen_by']})",
             f"  mAP50     {fmt(b['map50'])} → {fmt(c['map50'])}",
             f"  mAP50-95  {fmt(b['map50_95'])} → {fmt(c['map50_95'])}",
             f"  regressions: {len(record['comparison']['regressions'])} images, "
             f"improvements: {len(record['comparison']['improvements'])}",
             "promote" if record["decision"]["promote"] else "do not promote",
             *(f"  - {reason}" for reason in record["decision"]["reasons"])]
    emit(record, "\n".join(lines))


def promote(
    collection: str,
    version: str,
    reason: Annotated[str | None, typer.Option(help="Why, when overriding the gate.")] = None,
) -> None:
    """Make a version active (rollback included); without a passed gate, a reason is needed."""
    done = open_workspace().evaluation.promote(collection, version, reason)
    emit(done, f"{collection}: {done['from_version']} → {done['to_version']}"
               + (f" (override: {done['override_reason']})" if done["override_reason"] else ""))
