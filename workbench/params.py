"""Run parameters in one place.

Each parameter dataclass (``TrainParams``, ``ExportOptions``, ``DetectParams``, ``Gate``,
``TaxonomyParams``, ``ClusterParams``) declares its fields with :func:`setting`: the default,
the bounds or choices and one line of help. The CLI options, the pages' widgets and the
rules' parameter forms read them through :func:`spec`, and :func:`check_bounds` enforces them
when a dataclass is made, so a default or a bound is written once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from workbench.errors import ValidationError

_KEY = "workbench"


@dataclass(frozen=True)
class Spec:
    """What the CLI, the pages and the rules need to offer one parameter."""

    name: str
    kind: type  # int, float, bool or str
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None is a value: "take the default from elsewhere"

    def bounds_text(self) -> str:
        """The allowed values in words (``in [0, 1]``, ``'a' or 'b'``), for help and errors."""
        if self.choices:
            quoted = [repr(c) for c in self.choices]
            return " or ".join(quoted) if len(quoted) == 2 else "one of " + ", ".join(quoted)
        if self.min is not None and self.max is not None:
            return f"in [{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f"at least {self.min:g}"
        if self.max is not None:
            return f"at most {self.max:g}"
        return "a value"


def setting(default: Any, help: str, *, kind: type | None = None, min: float | None = None,
            max: float | None = None, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field that carries its type, bounds and help (read back with :func:`spec`).
    A default of ``None`` means "decided elsewhere" (the parent version's size, the
    machine's device) and needs ``kind``."""
    if kind is None and default is None:
        raise TypeError("a setting whose default is None needs kind=")
    return field(default=default, metadata={_KEY: Spec(
        "", kind or type(default), default, help, min, max, choices, default is None)})


def specs(cls: type) -> dict[str, Spec]:
    """Every parameter of ``cls`` declared with :func:`setting`, by field name."""
    return {f.name: replace(f.metadata[_KEY], name=f.name)
            for f in fields(cls) if _KEY in f.metadata}


def spec(cls: type, name: str) -> Spec:
    """One parameter of ``cls``."""
    try:
        return specs(cls)[name]
    except KeyError:
        raise KeyError(f"{cls.__name__} has no parameter {name!r}") from None


def check_bounds(obj: Any) -> None:
    """Raise a :class:`ValidationError` naming the first parameter of ``obj`` that is of the
    wrong type, not finite, out of its bounds or not one of its choices."""
    for s in specs(type(obj)).values():
        value = getattr(obj, s.name)
        if value is None and s.optional:
            continue
        if s.choices is not None:
            if value not in s.choices:
                raise ValidationError(f"{s.name} must be {s.bounds_text()}, got {value!r}")
        elif s.kind is bool or s.kind is str:
            if not isinstance(value, s.kind):
                raise ValidationError(f"{s.name} must be a {s.kind.__name__}, got {value!r}")
        else:
            whole = s.kind is int
            if (isinstance(value, bool) or not isinstance(value, int if whole else int | float)
                    or not math.isfinite(value)):
                kind = "a whole number" if whole else "a finite number"
                raise ValidationError(f"{s.name} must be {kind}, got {value!r}")
            low = s.min is not None and value < s.min
            if low or (s.max is not None and value > s.max):
                # a range reads best whole for fractions; a count is told its one bound
                bound = (s.bounds_text() if s.kind is float else
                         f"at least {s.min:g}" if low else f"at most {s.max:g}")
                raise ValidationError(f"{s.name} must be {bound}, got {value!r}")
