"""Pages of a listing: the rows after a cursor, how many rows there are in all, and the cursor
of the next page — so that no listing stops at a limit without saying so (issue 15).

A listing is sorted by a key whose last column is unique (``(created_at, id)``, say), and a
cursor names the key of the last row served: the next page starts after it (keyset paging),
so a row inserted meanwhile neither repeats a row nor skips one. A cursor is opaque
(base64 JSON) and bound to its listing and filters; one from elsewhere, or made up, is
refused with a ValidationError that says to start from the first page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from workbench.errors import ValidationError

T = TypeVar("T")

# Counting stops after this many rows, so that a page of a huge log costs a bounded scan;
# past it a page says "more than" (``exact`` False) instead of a number it did not count.
COUNT_LIMIT = 100_000


def _row_dict(row: Any) -> Any:
    return dict(row._mapping)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing."""

    items: list[T]
    total: int  # rows matched in all; with ``exact`` False a lower bound (more than that)
    exact: bool = True
    next_cursor: str | None = None  # pass as ``cursor`` for the next page; None: the last
    start: int = 0  # rows served before this page

    def summary(self, noun: str) -> str:
        """``50 of 230 jobs`` (``, after the first 50`` past the first page)."""
        total = f"{self.total:,}" if self.exact else f"more than {self.total:,}"
        after = f", after the first {self.start:,}" if self.start else ""
        return f"{len(self.items):,} of {total} {noun}{after}"

    def footer(self, noun: str, only_if_more: bool = False) -> str:
        """What the command line prints under a page's rows: how many of how many, and how
        to ask for the next page; "" for an empty listing, and with ``only_if_more`` (what
        ``--json`` prints beside its rows) "" unless there is a next page."""
        if (not self.items and not self.start) or (only_if_more and not self.next_cursor):
            return ""
        more = f"\nmore: --cursor {self.next_cursor}" if self.next_cursor else ""
        return self.summary(noun) + more


@dataclass(frozen=True)
class Keyset:
    """How one listing pages: its name (a cursor names it, so another listing's is refused)
    and its order, ``(column, descending)`` pairs whose last column is unique."""

    name: str
    order: tuple[tuple[sa.Column, bool], ...]

    def ordered(self, query: sa.Select) -> sa.Select:
        """``query`` in this listing's order."""
        return query.order_by(*(c.desc() if desc else c.asc() for c, desc in self.order))

    def page(self, conn: sa.Connection, query: sa.Select, cursor: str | None, limit: int,
             item: Callable[[Any], T] = _row_dict, scope: Mapping[str, Any] | None = None,
             count: bool = True) -> Page[T]:
        """The page of ``query``'s rows after ``cursor`` (from the first without one), at most
        ``limit`` of them, each turned into ``item(row)`` (a dict by default), with the
        number of rows in all. ``scope`` names the listing's filters: a cursor handed out
        under other filters is refused rather than silently paging another set of rows.
        Without ``count`` (a caller that knows the total another way) the total is the rows
        served so far, exact on the last page and "more than" it before."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError(f"a page holds at least one row; got limit={limit!r}")
        tag = self._tag(scope)
        start, paged = 0, query
        if cursor:
            start, after = self._decode(cursor, tag)
            paged = query.where(self._after(after))
        rows = conn.execute(self.ordered(paged).limit(limit + 1)).all()
        more = len(rows) > limit
        if not count:
            served = start + min(len(rows), limit)
            return Page([item(r) for r in rows[:limit]], served, not more,
                        self._encode(tag, rows[limit - 1], served) if more else None, start)
        counted = conn.execute(sa.select(sa.func.count()).select_from(
            query.order_by(None).limit(COUNT_LIMIT + 1).subquery())).scalar_one()
        rows = rows[:limit]
        next_cursor = self._encode(tag, rows[-1], start + len(rows)) if more else None
        return Page([item(r) for r in rows], min(counted, COUNT_LIMIT),
                    counted <= COUNT_LIMIT, next_cursor, start)

    def _tag(self, scope: Mapping[str, Any] | None) -> str:
        text = json.dumps([self.name, scope or {}], sort_keys=True, default=str)
        return f"{self.name}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def _after(self, values: list[Any]) -> sa.ColumnElement:
        """Rows after ``values`` in this order, each column running its own way."""
        branches = []
        for i, ((column, desc), value) in enumerate(zip(self.order, values, strict=True)):
            equal = [self.order[j][0] == values[j] for j in range(i)]
            branches.append(sa.and_(*equal, column < value if desc else column > value))
        return sa.or_(*branches)

    def _encode(self, tag: str, row: Any, seen: int) -> str:
        after = [_jsonable(row._mapping[column]) for column, _ in self.order]
        state = {"of": tag, "after": after, "seen": seen}
        text = json.dumps(state, separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def _decode(self, cursor: str, tag: str) -> tuple[int, list[Any]]:
        try:
            state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            if not (isinstance(state, dict) and set(state) == {"of", "after", "seen"}
                    and isinstance(state["of"], str) and _count(state["seen"])
                    and isinstance(state["after"], list)):
                raise ValueError(cursor)
        except ValueError:  # bad base64, bad UTF-8 and bad JSON are all ValueErrors
            raise ValidationError(f"cursor {cursor!r} is not one this workbench handed out; "
                                  "pass the cursor the previous page printed (more: --cursor "
                                  "…), or leave it out for the first page") from None
        if state["of"] != tag:
            listing = state["of"].partition(":")[0] or "another listing"
            where = (" under other filters; pass the filters of the command that printed it"
                     if listing == self.name else
                     f", not {self.name}; pass it to the listing that printed it")
            raise ValidationError(f"this cursor pages {listing}{where}, or leave it out to "
                                  "start from the first page")
        after = state["after"]
        if len(after) != len(self.order):
            raise ValidationError(f"cursor {cursor!r} names {len(after)} sort keys; "
                                  f"{self.name} pages by {len(self.order)}: start from the "
                                  "first page")
        try:
            values = [_parsed(column, value) for (column, _), value in zip(self.order, after)]
        except (TypeError, ValueError):
            raise ValidationError(f"cursor {cursor!r} is not one this workbench handed out "
                                  f"(its sort keys are not {self.name}'s); leave it out to "
                                  "start from the first page") from None
        return state["seen"], values


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _parsed(column: sa.Column, value: Any) -> Any:
    """A cursor's key value as ``column`` holds it; TypeError if it cannot be one."""
    kind = column.type.python_type
    if kind is datetime:
        if not isinstance(value, str):
            raise TypeError(value)
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:  # stored naive UTC; an aware key is not ours
            raise ValueError(value)
        return parsed
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise TypeError(value)
    return value

