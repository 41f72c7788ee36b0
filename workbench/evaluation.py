"""Model evaluation in the workspace: both versions scored on the gold set, the comparison
stored, and whether the candidate may replace the current model.

The metrics themselves (pycocotools AP, matching, confusion, comparison, bootstrap) are pure
functions in :mod:`workbench.metrics`. Here :func:`promotion_decision` applies a
:class:`Gate` to a comparison and says, in sentences, why it promotes or not, and
:class:`EvaluationService` reads truth and predictions from the workspace, evaluates, keeps
the result and promotes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from workbench.errors import ValidationError
from workbench.metrics import (
    Box,
    Comparison,
    EvalImage,
    Interval,
    bootstrap,
    compare,
    evaluate,
)
from workbench.params import Gate
from workbench.store import tables as t

if TYPE_CHECKING:
    from workbench.domain import Collection

# Float noise (0.80 - 0.75 = 0.05000000000000004) must not decide a gate check.
_GATE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Decision:
    """Whether to promote, and one sentence per check saying what passed or failed."""

    promote: bool
    reasons: list[str] = field(default_factory=list)


def promotion_decision(comparison: Comparison, gate: Gate,
                       interval: Interval | None = None) -> Decision:
    """Apply ``gate`` to ``comparison``: promote only when mAP50-95 rose by at least
    ``gate.min_map50_95_gain`` and no class's AP50-95 fell by more than
    ``gate.max_class_drop``. With a bootstrap ``interval``, the rise that counts is the lower
    bound of the gain's interval: a gain that a different sample of images could undo does
    not promote. Classes without truth boxes are not in the comparison."""
    reasons = []
    gain = comparison.map50_95.delta
    if gain is None:
        map_ok = False
        reasons.append("mAP50-95 is undefined for base or candidate (no truth boxes), "
                       "so no gain can be shown — failed")
    else:
        if round(gain, 3) > 0:
            change = f"rose by {gain:.3f}"
        elif round(gain, 3) < 0:
            change = f"fell by {-gain:.3f}"
        else:
            change = f"did not change ({gain:+.3f})"
        if interval is not None and interval.delta is not None:
            low, high = interval.delta
            map_ok = low >= gate.min_map50_95_gain - _GATE_TOLERANCE
            reasons.append(
                f"mAP50-95 {change}; its {interval.level:.0%} interval over images is "
                f"[{low:+.3f}, {high:+.3f}] and its lower bound needs ≥ "
                f"{gate.min_map50_95_gain:.3f} — {'passed' if map_ok else 'failed'}")
        else:
            map_ok = gain >= gate.min_map50_95_gain - _GATE_TOLERANCE
            reasons.append(f"mAP50-95 {change} (needs ≥ {gate.min_map50_95_gain:.3f}) — "
                           f"{'passed' if map_ok else 'failed'}")

    drops = {name: -d.delta for name, d in comparison.per_class.items()
             if d.delta is not None and d.delta < 0}
    too_large = {name: drop for name, drop in drops.items()
                 if drop > gate.max_class_drop + _GATE_TOLERANCE}
    for name, drop in sorted(too_large.items(), key=lambda item: -item[1]):
        reasons.append(f"class {name!r} dropped by {drop:.3f} "
                       f"(allowed ≤ {gate.max_class_drop:.3f}) — failed")
    if not too_large:
        if drops:
            worst = max(drops, key=drops.get)
            detail = f"largest drop: {worst!r} by {drops[worst]:.3f}"
        else:
            detail = "none dropped"
        reasons.append(f"no class dropped by more than {gate.max_class_drop:.3f} "
                       f"({detail}) — passed")
    return Decision(promote=map_ok and not too_large, reasons=reasons)


class EvaluationService:
    """v1 against v2 on the gold set; results and promotions are kept."""

    def __init__(self, wb):
        self.wb = wb

    # -- the workspace side: truth from the ground truth, predictions from stored detections
    def complete_images(self, collection_id: str, gold: bool | None = True,
                        object_ids: Sequence[str] | None = None) -> list[EvalImage]:
        """Complete images with their ground truth, as evaluation images: the gold set (the
        default), the complete images outside it (``gold=False``) or every one (``None``)."""
        truths = self.wb.truth.images(collection_id, object_ids, states=("complete",),
                                      gold=gold)
        with self.wb.db.read() as conn:
            sizes = {r.id: (r.width, r.height) for r in conn.execute(sa.select(
                t.objects.c.id, t.objects.c.width, t.objects.c.height).where(
                    t.objects.c.id.in_(list(truths))))} if truths else {}
        return [EvalImage(o, *sizes[o], tuple(Box(b.cls, b.xyxy) for b in truth.objects))
                for o, truth in sorted(truths.items())]

    def held_out_images(self, collection: Collection) -> tuple[list[str], str]:
        """Ids of the images every version is scored on (the gold set), and how they were
        chosen."""
        images = self.complete_images(collection.id)
        return [i.image_id for i in images], "the gold set (complete images never trained on)"

    def _predictions(self, collection, key: str, object_ids: list[str]) -> dict[str, list[Box]]:
        found: dict[str, list[Box]] = {i: [] for i in object_ids}
        for det in self.wb.detection.detections(collection, key, object_ids=object_ids):
            found[det.object_id].append(Box(det.class_name, det.xyxy, det.confidence))
        return found

    def compare_versions(self, collection: str, base: str | None = None,
                         candidate: str | None = None, gate: Gate | None = None,
                         object_ids: list[str] | None = None,
                         resamples: int = 500) -> dict[str, Any]:
        """Evaluate both versions on the gold set (or the complete images given) with
        pycocotools, with a bootstrap interval over images beside every figure; compare,
        apply the gate on the gain's lower bound, store the evaluation and return it."""
        import sqlalchemy as sa

        from workbench.events import record_event
        from workbench.store import tables as t
        from workbench.store.metadata import new_id, utcnow

        wb = self.wb
        gate = gate or Gate()
        target = wb.collections.get(collection)
        versions = wb.registry.list(target.extractor_name)
        cand = wb.registry.get(target.extractor_name, candidate) if candidate else versions[-1]
        base_version = wb.registry.get(target.extractor_name, base or cand.parent_version or
                                       target.active_version)
        if base_version.key == cand.key:
            raise ValidationError(f"compare two different versions (both are {cand.key})")
        if object_ids is None:
            truth = self.complete_images(target.id)
            chosen_by = "the gold set (complete images never trained on)"
        else:
            truth = self.complete_images(target.id, None, object_ids)
            chosen_by = "complete images given by the caller"
        if not truth:
            raise ValidationError(
                f"nothing to evaluate on: {chosen_by} is empty; complete images in image "
                "review (a share of them is reserved for the gold set as they are done)")
        ids = [image.image_id for image in truth]
        for version in (base_version, cand):
            with wb.db.read() as conn:
                done = set(conn.execute(sa.select(t.documents.c.object_id).where(
                    t.documents.c.collection_id == target.id,
                    t.documents.c.extractor_key == version.key)).scalars())
            missing = [i for i in ids if i not in done]
            if missing:
                raise ValidationError(
                    f"{version.key} has not processed {len(missing)} of the "
                    f"{len(ids)} evaluation images; run `workbench detect "
                    f"{target.name} --version {version.version}` first")
        classes = list(dict.fromkeys([*base_version.classes, *cand.classes]))
        base_predictions = self._predictions(target, base_version.key, ids)
        cand_predictions = self._predictions(target, cand.key, ids)
        base_result = evaluate(truth, base_predictions, classes)
        cand_result = evaluate(truth, cand_predictions, classes)
        interval = bootstrap(truth, base_predictions, cand_predictions, classes, resamples)
        comparison = compare(base_result, cand_result)
        decision = promotion_decision(comparison, gate, interval)
        target_size = wb.settings.gold_target
        warning = (f"the gold set holds {len(ids)} image(s), under its target of "
                   f"{target_size}: the interval is wide; complete more images"
                   if object_ids is None and len(ids) < target_size else None)
        record = {
            "id": new_id("eval"), "collection_id": target.id, "base_key": base_version.key,
            "candidate_key": cand.key,
            "images": {"ids": ids, "chosen_by": chosen_by, "warning": warning,
                       "gold_target": target_size},
            "base": base_result.to_dict(), "candidate": cand_result.to_dict(),
            "comparison": {**_comparison_dict(comparison), "interval": interval.to_dict()},
            "decision": {"promote": decision.promote, "reasons": decision.reasons,
                         "gate": {"min_map50_95_gain": gate.min_map50_95_gain,
                                  "max_class_drop": gate.max_class_drop}},
            "created_at": utcnow(),
        }
        with wb.db.write() as conn:
            conn.execute(t.evaluations.insert().values(**record))
            record_event(conn, "evaluation.completed", {
                "evaluation_id": record["id"], "base": base_version.key,
                "candidate": cand.key, "promote": decision.promote,
                "map50_95": [base_result.map50_95, cand_result.map50_95],
                "interval": interval.delta})
        wb.registry.update_metrics(cand.name, cand.version, {
            f"gold_mAP50_vs_{base_version.version}": cand_result.map50,
            f"gold_mAP50_95_vs_{base_version.version}": cand_result.map50_95})
        return record

    def latest(self, collection: str) -> dict[str, Any] | None:
        """The collection's newest stored evaluation, or None before the first."""
        import sqlalchemy as sa

        from workbench.store import tables as t

        target = self.wb.collections.get(collection)
        with self.wb.db.read() as conn:
            row = conn.execute(sa.select(t.evaluations).where(
                t.evaluations.c.collection_id == target.id).order_by(
                    t.evaluations.c.created_at.desc()).limit(1)).first()
        return dict(row._mapping) if row else None

    def promote(self, collection: str, version: str, override_reason: str | None = None,
                author: str | None = None) -> dict[str, Any]:
        """Make ``version`` active if its latest evaluation passed the gate, or when a reason
        for overriding the gate is given (kept with the promotion). Rolling back to an
        earlier version is a promotion too."""
        import sqlalchemy as sa

        from workbench.events import record_event
        from workbench.store import tables as t
        from workbench.store.metadata import new_id, utcnow

        target = self.wb.collections.get(collection)
        chosen = self.wb.registry.get(target.extractor_name, version)
        with self.wb.db.read() as conn:
            evaluation = conn.execute(sa.select(t.evaluations).where(
                t.evaluations.c.collection_id == target.id,
                t.evaluations.c.candidate_key == chosen.key).order_by(
                    t.evaluations.c.created_at.desc()).limit(1)).first()
        passed = bool(evaluation and evaluation.decision["promote"])
        if not passed and not (override_reason and override_reason.strip()):
            why = "; ".join(evaluation.decision["reasons"]) if evaluation else \
                "it has not been evaluated (workbench evaluate)"
            raise ValidationError(f"{chosen.key} did not pass the promotion gate ({why}); "
                                  "give a reason to override it")
        promotion = {"id": new_id("prm"), "collection_id": target.id,
                     "from_version": target.active_version, "to_version": chosen.version,
                     "evaluation_id": evaluation.id if evaluation else None,
                     "override_reason": None if passed else override_reason.strip(),
                     "author": author or self.wb.annotations.default_author,
                     "created_at": utcnow()}
        with self.wb.db.write() as conn:
            conn.execute(t.promotions.insert().values(**promotion))
            conn.execute(t.collections.update().where(t.collections.c.id == target.id)
                         .values(active_version=chosen.version))
            record_event(conn, "model.promoted", {k: v for k, v in promotion.items()
                                                  if k != "created_at"})
        return promotion


def _comparison_dict(comparison: Comparison) -> dict[str, Any]:
    return {"map50": comparison.map50._asdict(), "map50_95": comparison.map50_95._asdict(),
            "per_class": {k: v._asdict() for k, v in comparison.per_class.items()},
            "regressions": list(comparison.regressions),
            "improvements": list(comparison.improvements)}
