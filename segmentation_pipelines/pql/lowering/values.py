"""The lowering's value model: the frames names resolve on (:class:`Frame`), a compiled value (:class:`V`), the
compilation context (:class:`Ctx`), the error of a construct no engine can run (:class:`CompileError`) and the
constants both backends share.

Scopes (pql.md §0): a *frame* is a row the names can resolve on: the profile, an event (inside an aggregate) or an
array element (inside a list lambda). A bare name resolves on the innermost frame that has that field, then on the
enclosing ones; ``^`` skips frames; declared variables (``X from xEvent``) name their frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.errors import PQLError
from segmentation_pipelines.pql.schema import ClassSchema

NUMERIC = {"integer", "number"}


TEMPORAL = {"date", "date-time"}


STRING_FNS = {
    "startswith",
    "doesnotstartwith",
    "endswith",
    "doesnotendwith",
    "contains",
    "doesnotcontain",
    "equals",
    "notequalto",
}


AGG_METHODS = {"count", "sum", "average", "avg", "min", "max"}


# An interval unit as a multiple of a unit both engines have (millisecond, second, minute, hour, day, month, year).
INTERVAL_STEPS = {
    "millisecond": (1, "millisecond"),
    "second": (1, "second"),
    "minute": (1, "minute"),
    "hour": (1, "hour"),
    "day": (1, "day"),
    "week": (7, "day"),
    "month": (1, "month"),
    "year": (1, "year"),
    "decade": (10, "year"),
    "century": (100, "year"),
    "millennium": (1000, "year"),
}


# The value of an aggregate over no selected event (the others are missing).
EMPTY_AGGREGATE = {"bool_or": False, "bool_and": True, "count": 0, "sum": 0}


def query_of(query: Any) -> ast.Query:
    """The ``ast.Query`` of a query or of a checked query (``.query`` / ``.ast`` / ``.node``)."""
    if isinstance(query, ast.Query):
        return query
    for attr in ("query", "ast", "node"):
        q = getattr(query, attr, None)
        if isinstance(q, ast.Query):
            return q
    raise TypeError(f"expected an ast.Query or a checked query, got {type(query).__name__}")


class CompileError(PQLError):
    """A construct the compiler cannot translate (names it and its position)."""

    def __init__(self, message: str, node: ast.Node | None = None):
        line, col = node.pos if node is not None else ast.NO_POS
        super().__init__(message, line, col)


@dataclass(frozen=True)
class Frame:
    """A row names resolve on. ``path`` is the schema path of the row (``()`` for the profile and an event,
    ``("productListItems", "[]")`` for an item); ``ref`` is the backend expression of an array element."""

    kind: str  # "profile" | "event" | "elem"
    schema: ClassSchema
    path: tuple[str, ...] = ()
    var: str | None = None
    ref: Any = None
    elem_type: str = "object"


@dataclass
class V:
    """A compiled value.

    * ``scalar``: ``expr`` of PQL type ``type`` (``boolean``, ``string``, ``integer``, ``number``, ``date``,
      ``date-time``, ``any``);
    * ``struct``: an object (``expr`` None = the row of ``frame`` itself), fields under ``path`` in ``schema``;
    * ``list``: an array ``expr`` whose elements live at ``path`` (ending in ``"[]"``) or are scalars of
      ``elem_type``;
    * ``events``: the profile's events (``xEvent``), filtered by ``cond`` (an event-row predicate, or None), bound
      to ``var``, optionally projected on ``proj`` (``xEvent.device.model``).
    """

    kind: str
    expr: Any = None
    type: str = "any"
    schema: ClassSchema | None = None
    path: tuple[str, ...] = ()
    elem_type: str = "any"
    frame: Frame | None = None
    cond: Any = None
    var: str | None = None
    proj: tuple[str, ...] = ()
    node: ast.Node | None = None
    items: list[Any] | None = None  # list literals: the compiled items
    needs_profile: bool = False  # events: ``cond`` reads profile fields (the aggregate needs them joined)
    # scalars: the event aggregate this value reads, when it is one (over event rows alone); a comparison of it with
    # a literal: ``(expr, aggregate, op, literal)``, which at a boolean position may read a ``bool_or`` aggregate instead
    aggregate: Any = None
    threshold: tuple[Any, Any, str | None, Any] | None = None  # (expr, aggregate, op, literal)
    # a top-level array column as read (its ``expr``); a field of an array element frame (``(frame, name, expr)``); an
    # element test ``field = literal`` (``(frame, name, literal)``); a list filtered by such a test and its count
    # (``(filtered list, array, element variable, field, literal)``): what an item test is made of
    column: Any = None
    elem_field: tuple[Frame, str, Any] | None = None
    field_eq: tuple[Frame, str, Any] | None = None
    item_test: tuple[Any, Any, Any, str, Any] | None = None


@dataclass
class Ctx:
    frames: tuple[Frame, ...]
    lets: dict[str, V] = field(default_factory=dict)
    profile_names: frozenset[str] = frozenset()  # names of parameter 1 ("Profile" in "(Profile) => ...")
    in_event: bool = False  # compiling an event-row expression (inside an aggregate)
    lambda_depth: int = 0

    def push(self, frame: Frame, **kw: Any) -> Ctx:
        return replace(self, frames=(*self.frames, frame), **kw)


def common_type(types: list[str]) -> str:
    ts = {t for t in types if t != "any"}
    if not ts:
        return "any"
    if ts <= NUMERIC:
        return "number" if "number" in ts else "integer"
    return ts.pop() if len(ts) == 1 else "any"
