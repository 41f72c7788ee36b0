"""Automation rules: built-in reactions to events, each switched on or off, with parameters.

- ``reference_on_verdict`` (off; on ``annotation.created|updated``): a confirmed or corrected
  detection joins the reference set ``reference_set`` with its true class (the set is made
  over the verdict's collection when it does not exist).
- ``hard_negative`` (**on**; on ``annotation.created|updated``): a false-positive detection
  joins its collection's hard-negative list (the ``hard_negatives`` table, per version) for as
  long as the detection's newest verdict is ``false_positive``. (The export's manifest takes
  its hard negatives from the ground truth, so it needs no worker.)
- ``retrain_on_corrections`` (off; on ``annotation.created``): once ``threshold``
  corrections — ``corrected`` and ``missed`` annotations, counted by creation time — have
  accumulated in a collection since its last training (a train job or a retrain chain,
  whatever its outcome), one ``retrain`` job exports, fine-tunes, runs the new version on the
  gold set, evaluates it against its parent and applies the promotion gate (and, with
  ``promote``, promotes a version that passes and runs it over the whole collection).
- ``evaluate_on_batch`` (off; on ``batch.completed``): a batch run of a version that is not
  the collection's first queues an ``evaluate`` job against the active version (or, for the
  active version itself, its parent); the gate's decision is logged, nothing is promoted.

Only ``hard_negative`` is on by default: it only writes a list, and changes no label. The
others create sets, train or evaluate, so they wait to be asked.

**The engine** consumes the ``events`` table in order, from a cursor stored in the database
(``event_cursors``), on a thread of the worker (``run_engine``) or synchronously
(``process_pending``). One engine runs at a time per workspace (``rules.lock``; on Postgres
the database's advisory lock, which reaches every host). For each event, the matching rules
react and, in one transaction, their runs are logged (``rule_runs``, unique per rule and
event), their in-database effects written (a hard-negative row, a queued job) and the cursor
moved past the event. A crash before that commit replays the event; a crash after it has
nothing left to do: a rule never fires twice for one event and no firing is lost. The one
effect outside that transaction — adding to a reference set, which reads vectors — is
idempotent (a member is not added again).

A rule reacts to the events that happen while it is on (from ``enabled_at``), not to history
(``workbench references promote`` takes that). Long reactions are durable jobs whose run row
is settled (done, failed, cancelled) when the job ends. A retrain chain is not started while
another one for the same collection is queued or running; the batches a chain runs itself are
evaluated by the chain, not by ``evaluate_on_batch``.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from workbench.errors import JobCancelled, NotFoundError, ValidationError
from workbench.evaluation import Gate
from workbench.export import ExportOptions
from workbench.paging import Keyset, Page
from workbench.params import broken_bound
from workbench.params import spec as field_spec
from workbench.store import tables as t
from workbench.store.metadata import RULES_LOCK_KEY, as_utc, new_id, utcnow
from workbench.training import TrainParams

if TYPE_CHECKING:
    from workbench import Workbench
    from workbench.jobs import JobContext

log = logging.getLogger(__name__)

CONSUMER = "rules"  # the engine's row in event_cursors
PAGE = 200  # events read per query
CORRECTIONS = ("corrected", "missed")  # what retrain_on_corrections counts
VERIFIED = ("confirmed", "corrected")  # what reference_on_verdict adds
# Outside SQLite, write transactions are not serialised: an event may commit a moment after
# a later-stamped one. The engine leaves the newest few seconds for its next pass.
SETTLE_S = 5.0

_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


# -- rule definitions ---------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One parameter of a rule: its type, default and meaning."""

    kind: type  # int, float, bool or str
    default: Any
    doc: str
    optional: bool = False  # None is a value: the default comes from elsewhere
    choices: tuple[str, ...] | None = None
    min: float | None = None  # bounds the forms offer (the dataclass behind it checks them)
    max: float | None = None

    @classmethod
    def of(cls, owner: type, name: str, doc: str | None = None) -> Param:
        """The parameter ``name`` of a run-parameter dataclass (``TrainParams``, ``Gate``, …),
        with its type, default, choices and bounds from there."""
        s = field_spec(owner, name)
        return cls(s.kind, s.default, doc or s.help, s.optional, s.choices, s.min, s.max)

    def check(self, rule: str, name: str, value: Any) -> Any:
        """The value if it has the right type (an int is a fine float) and is within the
        bounds, else an error."""
        if value is None:
            if self.optional:
                return None
            raise ValidationError(f"{rule}.{name} needs a value: {self.doc}")
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not self.kind:
            raise ValidationError(f"{rule}.{name} must be {_KINDS[self.kind]}, got {value!r} "
                                  f"({type(value).__name__})")
        bound = (broken_bound(self.kind, self.min, self.max, value)
                 if self.kind in (int, float) else None)
        if bound is not None:
            raise ValidationError(f"{rule}.{name} must be {bound}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ValidationError(f"{rule}.{name} must be one of {', '.join(self.choices)}, "
                                  f"got {value!r}")
        return value

    def parse(self, rule: str, name: str, text: str) -> Any:
        """The value written as text (the CLI's ``-p key=value``, the page's inputs)."""
        text = text.strip()
        if self.optional and text.lower() in ("", "none", "default"):
            return None
        try:
            if self.kind is bool:
                if text.lower() not in _TRUE + _FALSE:
                    raise ValueError(text)
                value: Any = text.lower() in _TRUE
            else:
                value = self.kind(text)
        except ValueError:
            raise ValidationError(f"{rule}.{name} must be {_KINDS[self.kind]}, got "
                                  f"{text!r}") from None
        return self.check(rule, name, value)


@dataclass
class Outcome:
    """What a rule did with one event (one row of ``rule_runs``)."""

    status: str  # done | skipped | failed | submitted (a job runs the rest)
    message: str
    result: dict[str, Any] | None = None
    job_id: str | None = None


@dataclass(frozen=True)
class RuleSpec:
    """A built-in rule: its name, triggers, parameters and reactions."""

    name: str
    description: str
    triggers: tuple[str, ...]
    default_enabled: bool
    params: dict[str, Param]
    # Inside the transaction that logs the run and moves the cursor: (service, event,
    # params, conn) -> Outcome, or None when the event is nothing to this rule.
    react: Callable[..., Outcome | None] | None = None
    # Before that transaction, for effects that need services of their own: (service,
    # event, params) -> Outcome | None. It may run twice for one event: it must be idempotent.
    prepare: Callable[..., Outcome | None] | None = None
    # (params, enabled) -> None; raises when the values do not go together.
    check: Callable[[dict[str, Any], bool], None] | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        """Each parameter's default, by name."""
        return {name: p.default for name, p in self.params.items()}


@dataclass(frozen=True)
class Rule:
    """A rule as configured in this workspace."""

    name: str
    description: str
    triggers: tuple[str, ...]
    enabled: bool
    params: dict[str, Any]  # the defaults, with the values set over them
    enabled_at: datetime | None  # reacts to events from then on (None: to every event)
    updated_at: datetime | None  # None: never configured
    last_run: dict[str, Any] | None


@dataclass(frozen=True)
class Event:
    """One row of the event log, as the rules engine hands it to a reaction."""

    id: str
    type: str
    payload: dict[str, Any]
    created_at: datetime  # naive UTC, as stored


# -- the reactions ------------------------------------------------------------------------
def _reference_prepare(svc: RuleService, event: Event, params: dict[str, Any]
                       ) -> Outcome | None:
    if event.payload.get("label") not in VERIFIED:
        return None
    wb = svc.wb
    detection = wb.db.find(t.detections, event.payload["document_id"])
    if detection is None:
        return None  # a verdict on a whole image: no detection to add
    try:
        annotation = wb.annotations.get(event.payload["annotation_id"])
    except NotFoundError:
        return Outcome("skipped", "the annotation was deleted before the rule ran")
    if annotation.label not in VERIFIED:
        return Outcome("skipped", f"its verdict is {annotation.label!r} by now")
    name = params["reference_set"]
    try:
        refs = wb.references.get(name)
    except NotFoundError:
        refs = wb.references.create(name, annotation.collection_id,
                                    description="made by the reference_on_verdict rule")
    if refs.collection_id != annotation.collection_id:
        return Outcome("skipped", f"reference set {name!r} is over another collection; "
                                  "verdicts of this one are not added to it")
    added = wb.references.add(name, [detection.id], annotation.payload.get("true_class"),
                              source=annotation.label)
    message = (f"{detection.id} added to {name!r} (version {added['version']})"
               if added["added"] else f"{detection.id} was in {name!r} already")
    return Outcome("done", message, {"reference_set": name, "detection_id": detection.id,
                                     **added})


def _reference_check(params: dict[str, Any], enabled: bool) -> None:
    if enabled and not params["reference_set"].strip():
        raise ValidationError(
            "reference_on_verdict needs reference_set, the set that confirmed and corrected "
            "detections join (made over the verdict's collection if missing): `workbench "
            "rules enable reference_on_verdict -p reference_set=NAME`")


def _hard_negative_react(svc: RuleService, event: Event, params: dict[str, Any],
                         conn: sa.Connection) -> Outcome | None:
    if event.payload.get("label") != "false_positive":
        return None
    detection = svc.db.find(t.detections, event.payload["document_id"], conn)
    if detection is None:
        return None
    values = {"collection_id": detection.collection_id,
              "extractor_key": detection.extractor_key, "object_id": detection.object_id,
              "class_name": detection.class_name,
              "xyxy": [detection.x1, detection.y1, detection.x2, detection.y2],
              "annotation_id": event.payload["annotation_id"], "event_id": event.id}
    hn = t.hard_negatives
    if conn.execute(sa.select(hn.c.detection_id).where(
            hn.c.detection_id == detection.id)).first():
        conn.execute(hn.update().where(hn.c.detection_id == detection.id).values(**values))
        message = f"{detection.id} is on the hard-negative list already (verdict renewed)"
    else:
        conn.execute(hn.insert().values(detection_id=detection.id, created_at=utcnow(),
                                        **values))
        message = (f"{detection.id} ({detection.class_name}) joins the hard-negative list "
                   "of the next export")
    return Outcome("done", message, {"detection_id": detection.id,
                                     "collection_id": detection.collection_id,
                                     "extractor_key": detection.extractor_key})


def _train_options(params: dict[str, Any]):
    """The export, training and gate settings of a retrain chain, validated."""
    return (ExportOptions(unreviewed=params["unreviewed"],
                          fill_threshold=params["fill_threshold"],
                          val_fraction=params["val_fraction"],
                          holdout_fraction=params["holdout_fraction"]),
            TrainParams(epochs=params["epochs"], imgsz=params["imgsz"], batch=params["batch"],
                        patience=params["patience"], device=params["device"],
                        workers=params["workers"]),
            Gate(min_map50_95_gain=params["min_map50_95_gain"],
                 max_class_drop=params["max_class_drop"]))


def _retrain_check(params: dict[str, Any], enabled: bool) -> None:
    _train_options(params)  # the values must also go together (warm-up within epochs, …)


def _retrain_react(svc: RuleService, event: Event, params: dict[str, Any],
                   conn: sa.Connection) -> Outcome | None:
    if event.payload.get("label") not in CORRECTIONS:
        return None
    collection_id = event.payload["collection_id"]
    jobs = [j for j in conn.execute(
        sa.select(t.jobs.c.id, t.jobs.c.kind, t.jobs.c.status, t.jobs.c.params,
                  t.jobs.c.created_at)
        .where(t.jobs.c.kind.in_(("train", "retrain"))).order_by(t.jobs.c.created_at.desc()))
        if (j.params or {}).get("collection_id") == collection_id]
    if any(j.kind == "retrain" and j.status in ("queued", "running") for j in jobs):
        return None  # one chain in flight per collection; it trains on these too
    since = jobs[0].created_at if jobs else None
    a = t.annotations.c
    conditions = [a.collection_id == collection_id, a.label.in_(CORRECTIONS),
                  a.deleted_at.is_(None), a.created_at <= event.created_at]
    if since is not None:
        conditions.append(a.created_at > since)
    count = conn.execute(sa.select(sa.func.count()).select_from(t.annotations)
                         .where(*conditions)).scalar_one()
    if count < params["threshold"]:
        return None
    collection = conn.execute(sa.select(t.collections).where(
        t.collections.c.id == collection_id)).one()
    parent = f"{collection.extractor_name}@{collection.active_version}"
    kind = conn.execute(sa.select(t.extractor_versions.c.kind).where(
        t.extractor_versions.c.name == collection.extractor_name,
        t.extractor_versions.c.version == collection.active_version)).scalar()
    facts = {"corrections": count, "since": as_utc(since).isoformat() if since else None,
             "parent": parent}
    if kind != "yolo":
        return Outcome("failed", f"{parent} is not a YOLO model; only YOLO versions can be "
                                 "fine-tuned", facts)
    export, train, gate = _train_options(params)
    job = svc.wb.jobs.submit("retrain", {
        "collection_id": collection_id, "parent_version": collection.active_version,
        "export": asdict(export), "train": asdict(train), "gate": asdict(gate),
        "promote": params["promote"]}, conn=conn)
    when = f"since {as_utc(since):%Y-%m-%d %H:%M}" if since else "and no training yet"
    return Outcome("submitted", f"{count} corrections in {collection.name} {when}: retrain "
                                f"chain {job.id} from {parent}", facts, job.id)


def _evaluate_react(svc: RuleService, event: Event, params: dict[str, Any],
                    conn: sa.Connection) -> Outcome | None:
    payload = event.payload
    if payload.get("requested_by") or not payload.get("processed_now"):
        return None  # a retrain chain's own batch, or a run that added nothing
    c = t.collections.c
    collection = conn.execute(sa.select(t.collections).where(
        c.id == payload["collection_id"] if payload.get("collection_id")
        else c.name == payload["collection"])).first()
    if collection is None:
        return Outcome("skipped", f"collection {payload.get('collection')!r} is gone")
    name, _, version = payload["version"].partition("@")
    v = t.extractor_versions.c
    parent = conn.execute(sa.select(v.parent_version).where(
        v.name == name, v.version == version)).scalar()
    base = collection.active_version if collection.active_version != version else parent
    ran = base is not None and conn.execute(sa.select(t.documents.c.id).where(
        t.documents.c.collection_id == collection.id,
        t.documents.c.extractor_key == f"{name}@{base}").limit(1)).first()
    if not ran:
        return Outcome("skipped", f"{payload['version']} is the first version run on "
                                  f"{collection.name}: nothing to compare it with")
    gate = Gate(params["min_map50_95_gain"], params["max_class_drop"])
    job = svc.wb.jobs.submit("evaluate", {
        "collection_id": collection.id, "base_version": base, "candidate_version": version,
        "gate": asdict(gate)}, conn=conn)
    return Outcome("submitted", f"evaluating {payload['version']} against {name}@{base} "
                                f"(job {job.id})",
                   {"base": f"{name}@{base}", "candidate": payload["version"]}, job.id)


def _gate_params() -> dict[str, Param]:
    return {
        # The bar of the app and CLI: an unattended chain must show a gain, never 0 → 0.
        "min_map50_95_gain": Param.of(Gate, "min_map50_95_gain",
                                      "the gate: mAP50-95 must rise by at least this"),
        "max_class_drop": Param.of(Gate, "max_class_drop",
                                   "the gate: no class's AP50-95 may fall by more"),
    }


RULES: dict[str, RuleSpec] = {spec.name: spec for spec in (
    RuleSpec(
        "reference_on_verdict",
        "A confirmed or corrected detection joins a reference set (with its true class).",
        ("annotation.created", "annotation.updated"), False,
        {"reference_set": Param(str, "", "the reference set (made over the verdict's "
                                         "collection if it does not exist)")},
        prepare=_reference_prepare, check=_reference_check),
    RuleSpec(
        "hard_negative",
        "A false-positive detection joins the collection's hard-negative list (per "
        "version).",
        ("annotation.created", "annotation.updated"), True, {}, react=_hard_negative_react),
    RuleSpec(
        "retrain_on_corrections",
        "After `threshold` new corrections (corrected + missed) since the collection's last "
        "training: export, fine-tune, run the new version on the gold set, evaluate "
        "and apply the promotion gate, as one job.",
        ("annotation.created",), False,
        {"threshold": Param(int, 50, "corrections since the last training that start one",
                            min=1),
         **{name: Param.of(TrainParams, name)
            for name in ("epochs", "imgsz", "batch", "patience", "workers", "device")},
         **{name: Param.of(ExportOptions, name)
            for name in ("unreviewed", "fill_threshold", "val_fraction", "holdout_fraction")},
         **_gate_params(),
         "promote": Param(bool, True, "promote the new version when it passes the gate, "
                                      "and run it over the whole collection")},
        react=_retrain_react, check=_retrain_check),
    RuleSpec(
        "evaluate_on_batch",
        "When a batch run of a version that is not the collection's first completes, "
        "evaluate it against the active version (or, for the active one, its parent).",
        ("batch.completed",), False, _gate_params(), react=_evaluate_react),
)}


# -- the service --------------------------------------------------------------------------
class RuleService:
    """Configure the automation rules, and the engine that applies them to events."""

    def __init__(self, wb: Workbench):
        self.wb = wb
        self.db = wb.db

    # -- configuration -------------------------------------------------------------------
    def spec(self, name: str) -> RuleSpec:
        """A built-in rule's spec; NotFoundError (with the closest name) if there is none."""
        if name not in RULES:
            close = difflib.get_close_matches(name, RULES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise NotFoundError(f"no rule {name!r}{hint}; rules: {', '.join(RULES)}")
        return RULES[name]

    def list(self) -> list[Rule]:
        """Every built-in rule as configured in this workspace."""
        return [self.get(name) for name in RULES]

    def get(self, name: str) -> Rule:
        """A rule as configured in this workspace, with its last run; NotFoundError if unknown."""
        spec = self.spec(name)
        with self.db.read() as conn:
            row = conn.execute(sa.select(t.rules).where(t.rules.c.name == name)).first()
            last = conn.execute(self._runs_query(name, 1)).first()
        enabled, params, enabled_at = _settings(spec, row)
        return Rule(spec.name, spec.description, spec.triggers, enabled, params,
                    as_utc(enabled_at), as_utc(row.updated_at) if row else None,
                    rule_run_from_row(last) if last else None)

    def configure(self, name: str, enabled: bool | None = None,
                  params: dict[str, Any] | None = None) -> Rule:
        """Switch a rule on or off and/or set some of its parameters (the others keep their
        values). Unknown parameters, wrong types and values that do not go together are
        refused, and nothing changes."""
        spec = self.spec(name)
        checked = {}
        for key, value in (params or {}).items():
            checked[key] = self._param(spec, key).check(name, key, value)
        if enabled is not None and not isinstance(enabled, bool):
            raise ValidationError(f"enabled must be true or false, got {enabled!r}")
        now = utcnow()
        with self.db.write() as conn:
            row = conn.execute(sa.select(t.rules).where(t.rules.c.name == name)).first()
            was_enabled, current, enabled_at = _settings(spec, row)
            stored = {**(row.params if row else {}), **checked}
            on = was_enabled if enabled is None else enabled
            if spec.check is not None:
                spec.check({**spec.defaults, **stored}, on)
            if on and not was_enabled:
                enabled_at = now  # a rule reacts to what happens from now on
            values = {"enabled": on, "params": stored, "enabled_at": enabled_at,
                      "updated_at": now}
            if row is None:
                conn.execute(t.rules.insert().values(name=name, **values))
            else:
                conn.execute(t.rules.update().where(t.rules.c.name == name).values(**values))
        return self.get(name)

    def parse_params(self, name: str, pairs: list[str]) -> dict[str, Any]:
        """``["epochs=5", "promote=false"]`` as typed values, checked."""
        spec = self.spec(name)
        values = {}
        for pair in pairs:
            key, sep, text = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ValidationError(f"parameter {pair!r} should look like key=value")
            values[key] = self._param(spec, key).parse(name, key, text)
        return values

    def _param(self, spec: RuleSpec, key: str) -> Param:
        if key not in spec.params:
            close = difflib.get_close_matches(key, spec.params, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(spec.params) or "none"
            raise ValidationError(f"{spec.name} has no parameter {key!r}{hint}; its "
                                  f"parameters: {known}")
        return spec.params[key]

    # -- the log -------------------------------------------------------------------------
    def runs(self, rule: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` runs (of one rule, or of all): the first :meth:`runs_page`,
        which also says how many there are."""
        return self.runs_page(rule, limit=limit).items

    def runs_page(self, rule: str | None = None, cursor: str | None = None, limit: int = 50
                  ) -> Page[dict[str, Any]]:
        """A page of runs (of one rule, or of all), newest first, with how many there are
        and the cursor of the next page."""
        if rule is not None:
            self.spec(rule)
        with self.db.read() as conn:
            return _RUN_ORDER.page(conn, self._runs_query(rule), cursor, limit,
                                   rule_run_from_row, {"rule": rule})

    def _runs_query(self, rule: str | None, limit: int | None = None) -> sa.Select:
        """Runs with their event's type; with ``limit``, the newest that many, in order."""
        query = (sa.select(t.rule_runs, t.events.c.type.label("event_type"))
                 .join(t.events, t.events.c.id == t.rule_runs.c.event_id))
        if rule is not None:
            query = query.where(t.rule_runs.c.rule == rule)
        return query if limit is None else _RUN_ORDER.ordered(query).limit(limit)

    # -- the engine ----------------------------------------------------------------------
    def process_pending(self, limit: int | None = None) -> dict[str, int]:
        """Consume the events after the cursor (all, or about ``limit``) and let the rules
        react; returns how many events, runs, queued jobs and failed runs there were."""
        with self._engine_lock():
            return self._process(limit)

    def run_engine(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Consume events until ``stop`` is set (the worker runs this on a thread)."""
        while not stop.is_set():
            try:
                consumed = self.process_pending(limit=PAGE)["events"]
            except Exception:  # noqa: BLE001 — the engine must outlive a bad moment
                log.exception("rules engine pass failed; trying again")
                consumed = 0
            if not consumed:
                stop.wait(poll_s)

    def cursor(self) -> tuple[datetime, str] | None:
        """The last event consumed: its time and id (None: none yet)."""
        with self.db.read() as conn:
            position = _position(conn)
        return (as_utc(position[0]), position[1]) if position else None

    @contextmanager
    def _engine_lock(self) -> Iterator[None]:
        # One engine at a time: a file lock beside a SQLite workspace, the database's own
        # advisory lock when workers on several hosts share a Postgres.
        with self.db.exclusive("rules.lock", RULES_LOCK_KEY):
            yield

    def _process(self, limit: int | None) -> dict[str, int]:
        summary = {"events": 0, "runs": 0, "jobs": 0, "failed": 0}
        with self.db.read() as conn:
            rows = {r.name: r for r in conn.execute(sa.select(t.rules))}
        active = []
        for spec in RULES.values():
            enabled, params, enabled_at = _settings(spec, rows.get(spec.name))
            if enabled:
                active.append((spec, params, enabled_at))
        e = t.events.c
        while limit is None or summary["events"] < limit:
            with self.db.read() as conn:
                position = _position(conn)
                query = sa.select(t.events).order_by(e.created_at, e.id).limit(PAGE)
                if position is not None:
                    query = query.where(sa.or_(
                        e.created_at > position[0],
                        sa.and_(e.created_at == position[0], e.id > position[1])))
                if not self.db.is_sqlite:
                    query = query.where(e.created_at < utcnow() - timedelta(seconds=SETTLE_S))
                page = [Event(r.id, r.type, r.payload or {}, r.created_at)
                        for r in conn.execute(query)]
            if not page:
                break
            passed = None  # the last event no rule wanted, not yet behind the cursor
            for event in page:
                matching = [(spec, params) for spec, params, since in active
                            if event.type in spec.triggers
                            and (since is None or event.created_at >= since)]
                if matching:
                    self._consume(event, matching, summary)
                    passed = None
                else:
                    passed = event
                summary["events"] += 1
            if passed is not None:
                with self.db.write() as conn:
                    _advance(conn, passed)
        return summary

    def _consume(self, event: Event, matching: list[tuple[RuleSpec, dict]],
                 summary: dict[str, int]) -> None:
        """Let the matching rules react to one event; log their runs and move the cursor in
        one transaction."""
        prepared = {spec.name: self._guarded(spec, event, spec.prepare, params)
                    for spec, params in matching if spec.prepare is not None}
        now = utcnow()
        with self.db.write() as conn:
            if not _advance(conn, event):
                return  # consumed already (only one engine runs, but it costs nothing)
            for spec, params in matching:
                if spec.prepare is not None:
                    outcome = prepared[spec.name]
                else:
                    savepoint = conn.begin_nested()
                    outcome = self._guarded(spec, event, spec.react, params, conn)
                    if outcome is not None and outcome.status == "failed":
                        savepoint.rollback()  # a failed reaction leaves nothing half-done
                    else:
                        savepoint.commit()
                if outcome is None:
                    continue
                conn.execute(t.rule_runs.insert().values(
                    id=new_id("run"), rule=spec.name, event_id=event.id,
                    status=outcome.status, message=outcome.message, result=outcome.result,
                    job_id=outcome.job_id, created_at=now, updated_at=now))
                summary["runs"] += 1
                summary["jobs"] += outcome.job_id is not None
                summary["failed"] += outcome.status == "failed"

    def _guarded(self, spec: RuleSpec, event: Event, step, params, *conn) -> Outcome | None:
        """Run one rule's step; what goes wrong is a failed run, except a database that
        cannot be reached, which stops the pass (the event is tried again)."""
        try:
            return step(self, event, params, *conn)
        except sa.exc.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 — logged as the run's outcome
            if not isinstance(exc, ValidationError | NotFoundError):
                log.exception("rule %s failed on event %s", spec.name, event.id)
            return Outcome("failed", f"{type(exc).__name__}: {exc}"[:2000])

    # -- the jobs long reactions run as ---------------------------------------------------
    def execute_evaluate(self, ctx: JobContext) -> dict[str, Any]:
        """``evaluate_on_batch``'s job: compare two versions, with the gate's decision."""
        return self._settled(ctx, self._evaluate)

    def execute_retrain(self, ctx: JobContext) -> dict[str, Any]:
        """``retrain_on_corrections``'s chain: export + fine-tune (the training job's own
        code), the new version over the gold set (and the parent where it has not run), the
        evaluation and the promotion gate. Resumed after a crash, it does not train again
        once the new version is registered."""
        return self._settled(ctx, self._retrain)

    def _settled(self, ctx: JobContext, run: Callable[[JobContext], dict[str, Any]]
                 ) -> dict[str, Any]:
        """Run a rule's job and settle its rule run: done with its result, failed or
        cancelled."""
        try:
            result = run(ctx)
        except JobCancelled as exc:
            _settle(self.wb, ctx.job.id, "cancelled", str(exc))
            raise
        except Exception as exc:
            _settle(self.wb, ctx.job.id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        _settle(self.wb, ctx.job.id, "done", result["message"], result)
        return result

    def _evaluate(self, ctx: JobContext) -> dict[str, Any]:
        p = ctx.params
        ctx.progress(0, 1, f"evaluating {p['candidate_version']} against {p['base_version']}")
        record = self.wb.evaluation.compare_versions(p["collection_id"], p["base_version"],
                                                     p["candidate_version"], Gate(**p["gate"]))
        ctx.progress(1, 1, _gate_summary(record))
        return _evaluation_result(record)

    def _retrain(self, ctx: JobContext) -> dict[str, Any]:
        wb, p = self.wb, ctx.params
        collection = wb.collections.get(p["collection_id"])
        parent = wb.registry.get(collection.extractor_name, p["parent_version"])
        # The training job's own code: resumed, it finds the version it registered already.
        candidate = wb.registry.get(wb.training.train(ctx, collection, parent)["version"])
        ctx.check_cancelled()
        object_ids, _ = wb.evaluation.held_out_images(collection)
        if not object_ids:
            raise ValidationError(f"{candidate.key} is registered, but the gold set is empty: "
                                  "nothing to evaluate it on; complete images in image review "
                                  "(a share of them is reserved for it)")
        for version in (parent, candidate):
            if _unprocessed(wb, collection, version.key, object_ids):
                ctx.progress(
                    message=f"running {version.key} on the {len(object_ids)} gold images")
                wb.detection.run(collection.name, version.version, object_ids=object_ids,
                                 requested_by=ctx.job.id)
        ctx.check_cancelled()
        record = wb.evaluation.compare_versions(collection.name, parent.version,
                                                candidate.version, Gate(**p["gate"]))
        result = {**_evaluation_result(record), "version": candidate.key, "parent": parent.key,
                  "promoted": False, "redeploy_job": None}
        if record["decision"]["promote"] and p["promote"]:
            if wb.collections.get(collection.id).active_version != candidate.version:
                wb.evaluation.promote(collection.name, candidate.version,
                                      author="rule:retrain_on_corrections")
            redeploy = wb.detection.submit(collection.name, candidate.version,
                                           requested_by=ctx.job.id)
            result.update(promoted=True, redeploy_job=redeploy.id)
        result["message"] = (f"trained {candidate.key} from {parent.key}; "
                             f"{_gate_summary(record, versions=False)}"
                             + ("; promoted, running over the collection" if result["promoted"]
                                else "; not promoted"))
        ctx.progress(message=result["message"])
        return result


def _settings(spec: RuleSpec, row) -> tuple[bool, dict[str, Any], datetime | None]:
    """Whether a rule is on, its parameters (defaults with the stored values over them;
    values of parameters it no longer has are ignored) and since when it is on."""
    if row is None:
        return spec.default_enabled, spec.defaults, None
    stored = {k: v for k, v in (row.params or {}).items() if k in spec.params}
    return bool(row.enabled), {**spec.defaults, **stored}, row.enabled_at


def _position(conn: sa.Connection, for_update: bool = False) -> tuple[datetime, str] | None:
    query = sa.select(t.event_cursors).where(t.event_cursors.c.consumer == CONSUMER)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    return (row.event_created_at, row.event_id) if row else None


def _advance(conn: sa.Connection, event: Event) -> bool:
    """Move the cursor past ``event`` in the caller's transaction; False if it is there."""
    position = _position(conn, for_update=True)
    if position is not None and (event.created_at, event.id) <= position:
        return False
    values = {"event_created_at": event.created_at, "event_id": event.id,
              "updated_at": utcnow()}
    if position is None:
        conn.execute(t.event_cursors.insert().values(consumer=CONSUMER, **values))
    else:
        conn.execute(t.event_cursors.update().where(
            t.event_cursors.c.consumer == CONSUMER).values(**values))
    return True


_RUN_ORDER = Keyset("rule runs", ((t.rule_runs.c.created_at, True), (t.rule_runs.c.id, False)))


def rule_run_from_row(row) -> dict[str, Any]:
    """The dict a row of the rule_runs table describes."""
    return {"id": row.id, "rule": row.rule, "event_id": row.event_id,
            "event_type": row.event_type, "status": row.status, "message": row.message,
            "result": row.result, "job_id": row.job_id, "created_at": as_utc(row.created_at),
            "updated_at": as_utc(row.updated_at)}


def _settle(wb: Workbench, job_id: str, status: str, message: str,
            result: dict[str, Any] | None = None) -> None:
    """Record on the rule's run how the job it queued ended."""
    values: dict[str, Any] = {"status": status, "message": message[:2000],
                              "updated_at": utcnow()}
    if result is not None:
        values["result"] = result
    with wb.db.write() as conn:
        conn.execute(t.rule_runs.update().where(t.rule_runs.c.job_id == job_id)
                     .values(**values))


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _gate_summary(record: dict[str, Any], versions: bool = True) -> str:
    base, candidate = record["base"]["map50_95"], record["candidate"]["map50_95"]
    verdict = "passes" if record["decision"]["promote"] else "holds it back"
    which = f"{record['candidate_key']} vs {record['base_key']}: " if versions else ""
    return f"{which}mAP50-95 {_score(base)} → {_score(candidate)}; the gate {verdict}"


def _evaluation_result(record: dict[str, Any]) -> dict[str, Any]:
    return {"evaluation_id": record["id"], "base": record["base_key"],
            "candidate": record["candidate_key"], "images": len(record["images"]["ids"]),
            "map50_95": [record["base"]["map50_95"], record["candidate"]["map50_95"]],
            "decision": record["decision"], "message": _gate_summary(record)}


def _unprocessed(wb: Workbench, collection, key: str, object_ids: list[str]) -> bool:
    with wb.db.read() as conn:
        done = conn.execute(sa.select(sa.func.count()).select_from(t.documents).where(
            t.documents.c.collection_id == collection.id,
            t.documents.c.extractor_key == key,
            t.documents.c.object_id.in_(object_ids))).scalar_one()
    return done < len(object_ids)
