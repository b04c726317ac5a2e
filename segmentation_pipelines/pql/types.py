"""The types the checker infers for PQL expressions.

A :class:`PQLType` is a kind (the schema's type names plus a few of the language's own: ``any`` when unknown,
``null``, ``period`` for relative periods/anchors, ``tuple`` for a ``select`` row, ``lambda``, ``mapentry``),
an element type for arrays, field types for object literals, and, for values read from the schema, where they
come from (``origin``: ``("profile" | "event", schema path)``) so that member access can look up child fields.
"""

from __future__ import annotations

from dataclasses import dataclass

NUMERIC = frozenset({"integer", "number"})
TEMPORAL = frozenset({"date", "date-time"})
SCALARS = frozenset({"string", "integer", "number", "boolean", "date", "date-time"})


@dataclass(frozen=True)
class PQLType:
    kind: str
    element: PQLType | None = None
    origin: tuple[str, tuple[str, ...]] | None = None
    fields: tuple[tuple[str, PQLType], ...] | None = None

    def __str__(self) -> str:
        if self.kind == "array" and self.element is not None and self.element.kind != "any":
            return f"array of {self.element}"
        return self.kind

    @property
    def is_any(self) -> bool:
        return self.kind == "any"

    @property
    def is_numeric(self) -> bool:
        return self.kind in NUMERIC

    @property
    def is_temporal(self) -> bool:
        return self.kind in TEMPORAL

    @property
    def is_array(self) -> bool:
        return self.kind == "array"

    def elem(self) -> PQLType:
        """The element type of an array (``any`` when unknown)."""
        return self.element if self.element is not None else ANY


ANY = PQLType("any")
NULL = PQLType("null")
STRING = PQLType("string")
INTEGER = PQLType("integer")
NUMBER = PQLType("number")
BOOLEAN = PQLType("boolean")
DATE = PQLType("date")
DATETIME = PQLType("date-time")
PERIOD = PQLType("period")
MAP = PQLType("map")
OBJECT = PQLType("object")
LAMBDA = PQLType("lambda")
MAPENTRY = PQLType("mapentry")


def array_of(element: PQLType) -> PQLType:
    return PQLType("array", element=element)


def scalar_of(t: PQLType) -> PQLType:
    """The type compared in an existential comparison: an array's element, else the type itself."""
    while t.kind == "array" and t.element is not None:
        t = t.element
    return ANY if t.kind == "array" else t


def comparable(a: PQLType, b: PQLType) -> bool:
    """Whether ``a = b`` / ``a < b`` can be evaluated (numbers with numbers, dates with dates, same kinds...)."""
    if a.is_any or b.is_any or a.kind == "null" or b.kind == "null":
        return True
    if a.is_numeric and b.is_numeric:
        return True
    if a.is_temporal and b.is_temporal:
        return True
    if a.kind in ("object", "map", "tuple") or b.kind in ("object", "map", "tuple"):
        return a.kind == b.kind
    return a.kind == b.kind


def unify(a: PQLType, b: PQLType) -> PQLType:
    """The common type of two branches (``if``): the wider number, else ``a`` when equal, else ``any``."""
    if a == b or b.kind == "null":
        return a
    if a.kind == "null":
        return b
    if a.is_numeric and b.is_numeric:
        return NUMBER
    if a.kind == b.kind:
        return PQLType(a.kind)
    return ANY
