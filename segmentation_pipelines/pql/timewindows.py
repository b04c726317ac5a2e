"""Time windows of ``occurs`` / chain ``WHEN`` and the relative time references, computed in Python.

Every boundary that depends only on the evaluation time is computed here once, as a naive UTC ``datetime``, and
embedded by both compilers as a timestamp literal: so DuckDB and Polars agree to the microsecond and nothing reads
the wall clock. Boundaries relative to a field (``occurs < 2 weeks after Y.timestamp``) stay symbolic
(:class:`Bound` with an expression base) and the compilers shift them with calendar-aware interval arithmetic.

Semantics (pql.md §0, §7; decisions in docs/decisions/engine.md):

* a reference denotes either an *instant* (``now``, a timestamp field) or a *period* ``[start, end)`` (``today``,
  ``yesterday``, ``tomorrow``, ``this|last|next <unit>``, ``date(y, m, d)``); weeks are ISO weeks (Monday), UTC;
* ``on ref``: inside the period (an instant means the UTC day containing it);
  ``before ref``: earlier than its start; ``after ref``: at/after the end of a period, strictly after an instant;
  ``from ref``: at or after its start; ``between A and B``: from A's start to B's end (inclusive for instants);
* ``op N unit before ref`` (anchor = start of ref): ``<=`` → ``[anchor - N, anchor)``, ``<`` → ``(anchor - N,
  anchor)``, ``>`` → ``< anchor - N``, ``>=`` → ``<= anchor - N``, ``=`` → ``[anchor - N, anchor - N + 1 unit)``;
* ``op N unit after|from ref`` (anchor = end of a period / the instant for ``after``, start for ``from``):
  ``<`` → ``[anchor, anchor + N)``, ``<=`` → ``[anchor, anchor + N]``, ``>`` → ``> anchor + N``,
  ``>=`` → ``>= anchor + N``, ``=`` → ``[anchor + N, anchor + N + 1 unit)``; the lower bound is exclusive when the
  anchor is an instant of ``after``;
* month-based units (month, year, decade, century, millennium) are calendar-aware: ``2018-03-31 - 1 month`` is
  ``2018-02-28`` (the same clamping as DuckDB intervals and Polars ``offset_by``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.errors import PQLError
from segmentation_pipelines.timeutil import naive_utc

FIXED_UNITS = {
    "millisecond": timedelta(milliseconds=1),
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}
MONTH_UNITS = {"month": 1, "year": 12, "decade": 120, "century": 1200, "millennium": 12000}
_PLURALS = {"centuries": "century", "millennia": "millennium", "millenium": "millennium"}


class TimeError(PQLError):
    """A time expression the compilers cannot evaluate (names the construct and its position)."""

    def __init__(self, message: str, pos: ast.Pos = ast.NO_POS):
        super().__init__(message, pos[0], pos[1])


def unit_name(unit: str) -> str:
    """Canonical singular unit name (accepts plurals and the legacy spelling ``millenium``)."""
    u = unit.lower()
    u = _PLURALS.get(u, u)
    if u not in FIXED_UNITS and u not in MONTH_UNITS and u.endswith("s"):
        u = u[:-1]
    if u not in FIXED_UNITS and u not in MONTH_UNITS:
        raise TimeError(f"unknown time unit {unit!r}")
    return u


def shift(t: datetime, amount: int, unit: str) -> datetime:
    """``t + amount unit`` (calendar-aware for month-based units)."""
    u = unit_name(unit)
    if u in FIXED_UNITS:
        return t + amount * FIXED_UNITS[u]
    return t + relativedelta(months=amount * MONTH_UNITS[u])


def truncate(t: datetime, unit: str) -> datetime:
    """Start of the calendar period of ``unit`` containing ``t`` (ISO weeks start on Monday)."""
    u = unit_name(unit)
    if u == "millisecond":
        return t.replace(microsecond=t.microsecond - t.microsecond % 1000)
    if u == "second":
        return t.replace(microsecond=0)
    if u == "minute":
        return t.replace(second=0, microsecond=0)
    if u == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if u == "day":
        return day
    if u == "week":
        return day - timedelta(days=day.weekday())
    if u == "month":
        return day.replace(day=1)
    years = {"year": 1, "decade": 10, "century": 100, "millennium": 1000}[u]
    return day.replace(year=max(1, day.year - day.year % years), month=1, day=1)


@dataclass(frozen=True)
class Bound:
    """One side of a window: ``base`` (a constant instant, or a timestamp expression evaluated per row), truncated
    to ``trunc`` if set, then shifted by ``amount`` ``unit``; ``inclusive`` says whether the bound itself is in."""

    base: datetime | ast.Expr
    inclusive: bool
    amount: int = 0
    unit: str | None = None
    trunc: str | None = None

    @property
    def is_constant(self) -> bool:
        return isinstance(self.base, datetime)


@dataclass(frozen=True)
class Window:
    """``lower <(=) ts <(=) upper`` (either side may be open)."""

    lower: Bound | None
    upper: Bound | None


@dataclass(frozen=True)
class Span:
    """What a time reference denotes: an instant (``start is end``) or a period ``[start, end)``."""

    start: Bound
    end: Bound
    instant: bool


def _fold(b: Bound) -> Bound:
    """Fold truncation and shift into constant bases."""
    if not isinstance(b.base, datetime):
        return b
    t = b.base
    if b.trunc:
        t = truncate(t, b.trunc)
    if b.amount:
        t = shift(t, b.amount, b.unit or "day")
    return Bound(t, b.inclusive)


def _moved(b: Bound, amount: int, unit: str, inclusive: bool) -> Bound:
    if b.amount and b.unit != unit:
        # A symbolic bound never carries two shifts: spans of field references are unshifted.
        raise TimeError("cannot combine two shifts on a field-relative bound")
    return _fold(replace(b, amount=b.amount + amount, unit=unit, inclusive=inclusive))


def const_int(e: ast.Expr, now: datetime) -> int:
    """Value of a constant integer expression (literals, ``currentYear()`` & co., ``+ - *``)."""
    if isinstance(e, ast.Literal) and e.kind == "integer":
        return int(e.value)
    if isinstance(e, ast.Unary) and e.op == "-":
        return -const_int(e.operand, now)
    if isinstance(e, ast.Call) and not e.args:
        fn = {"currentyear": now.year, "currentmonth": now.month, "currentdayofmonth": now.day}.get(
            e.name.lower()
        )
        if fn is not None:
            return fn
    if isinstance(e, ast.Binary) and e.op in ("+", "-", "*"):
        a, b = const_int(e.left, now), const_int(e.right, now)
        return a + b if e.op == "+" else a - b if e.op == "-" else a * b
    raise TimeError("date(...) arguments must be constant integers", e.pos)


def date_call_day(call: ast.Call, now: datetime) -> datetime:
    if len(call.args) != 3:
        raise TimeError("date(year, month, day) takes three arguments", call.pos)
    y, m, d = (const_int(a, now) for a in call.args)
    try:
        return datetime(y, m, d)
    except ValueError as e:
        raise TimeError(f"invalid date({y}, {m}, {d}): {e}", call.pos) from None


def is_time_ref(e: ast.Expr) -> bool:
    return isinstance(e, ast.TimeAnchor | ast.RelativePeriod) or (
        isinstance(e, ast.Call) and e.name.lower() == "date"
    )


def span(ref: ast.Expr, now: datetime) -> Span:
    """What ``ref`` denotes, relative to the evaluation time ``now`` (naive UTC)."""
    now = naive_utc(now)
    today = truncate(now, "day")
    if isinstance(ref, ast.TimeAnchor):
        if ref.name == "now":
            b = Bound(now, True)
            return Span(b, b, True)
        day = {"today": today, "yesterday": today - timedelta(days=1), "tomorrow": today + timedelta(days=1)}[
            ref.name
        ]
        return Span(Bound(day, True), Bound(day + timedelta(days=1), False), False)
    if isinstance(ref, ast.RelativePeriod):
        unit = unit_name(ref.unit)
        start = shift(truncate(now, unit), {"this": 0, "last": -1, "next": 1}[ref.which], unit)
        return Span(Bound(start, True), Bound(shift(start, 1, unit), False), False)
    if isinstance(ref, ast.Call) and ref.name.lower() == "date":
        day = date_call_day(ref, now)
        return Span(Bound(day, True), Bound(day + timedelta(days=1), False), False)
    b = Bound(ref, True)
    return Span(b, b, True)


def window(
    form: str,
    ref: ast.Expr,
    now: datetime,
    *,
    op: str | None = None,
    amount: int | None = None,
    unit: str | None = None,
    direction: str | None = None,
    ref2: ast.Expr | None = None,
    pos: ast.Pos = ast.NO_POS,
) -> Window:
    """The window of one ``occurs`` form (see the module docstring for the table)."""
    s = span(ref, now)
    if form == "on":
        if s.instant:  # the UTC day containing the instant
            return Window(
                _fold(replace(s.start, trunc="day", inclusive=True)),
                _fold(replace(s.start, trunc="day", amount=1, unit="day", inclusive=False)),
            )
        return Window(s.start, s.end)
    if form == "direction":
        if direction == "before":
            return Window(None, replace(s.start, inclusive=False))
        if direction == "after":
            return Window(replace(s.end, inclusive=not s.instant), None)
        if direction == "from":
            return Window(replace(s.start, inclusive=True), None)
        raise TimeError(f"unknown occurs direction {direction!r}", pos)
    if form == "between":
        if ref2 is None:
            raise TimeError("between needs two references", pos)
        s2 = span(ref2, now)
        return Window(replace(s.start, inclusive=True), replace(s2.end, inclusive=s2.instant))
    if form == "offset":
        if op is None or amount is None or unit is None or direction is None:
            raise TimeError("incomplete occurs offset form", pos)
        u = unit_name(unit)
        n = int(amount)
        if direction == "before":
            anchor = s.start
            at = _moved(anchor, -n, u, True)
            if op == "<=":
                return Window(at, replace(anchor, inclusive=False))
            if op == "<":
                return Window(replace(at, inclusive=False), replace(anchor, inclusive=False))
            if op == ">":
                return Window(None, replace(at, inclusive=False))
            if op == ">=":
                return Window(None, replace(at, inclusive=True))
            if op == "=":
                return Window(at, _moved(anchor, -n + 1, u, False))
        elif direction in ("after", "from"):
            anchor = s.end if direction == "after" else s.start
            open_start = direction == "after" and s.instant
            lo = replace(anchor, inclusive=not open_start)
            at = _moved(anchor, n, u, True)
            if op == "<":
                return Window(lo, replace(at, inclusive=False))
            if op == "<=":
                return Window(lo, replace(at, inclusive=True))
            if op == ">":
                return Window(replace(at, inclusive=False), None)
            if op == ">=":
                return Window(replace(at, inclusive=True), None)
            if op == "=":
                return Window(at, _moved(anchor, n + 1, u, False))
        raise TimeError(f"unsupported occurs form: {op} {amount} {unit} {direction}", pos)
    raise TimeError(f"unknown occurs form {form!r}", pos)


def occurs_window(node: ast.Occurs, now: datetime) -> Window:
    return window(
        node.form,
        node.ref,
        now,
        op=node.op,
        amount=node.amount,
        unit=node.unit,
        direction=node.direction,
        ref2=node.ref2,
        pos=node.pos,
    )


def when_window(when: ast.When, now: datetime) -> Window:
    """A chain step's ``WHEN(...)``: the offset form, the direction form, or a bare reference (= ``on``)."""
    if when.op is not None:
        return window(
            "offset",
            when.ref,
            now,
            op=when.op,
            amount=when.amount,
            unit=when.unit,
            direction=when.direction,
            pos=when.pos,
        )
    if when.direction is not None:
        return window("direction", when.ref, now, direction=when.direction, pos=when.pos)
    return window("on", when.ref, now, pos=when.pos)
