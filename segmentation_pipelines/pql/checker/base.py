"""The checker's core: scopes, schema types, the method and function names PQL knows, the entry point and the
dispatch of a node to its ``v_<Node>`` method (:class:`CheckerBase`, the base of every mixin of the checker)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal as L

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import types as T
from segmentation_pipelines.pql.checker.result import Resolution
from segmentation_pipelines.pql.errors import PQLValidationError
from segmentation_pipelines.pql.schema import ClassSchema, Schema
from segmentation_pipelines.pql.types import PQLType


# --- scopes -------------------------------------------------------------------------------------------------------
@dataclass
class _Scope:
    kind: L["root", "element", "vars"]
    binder: ast.Node | None = None
    element: PQLType = T.ANY  # element scopes
    names: dict[str, PQLType] = field(default_factory=dict)  # vars scopes


def _schema_type(schema: Schema, cls: str, path: tuple[str, ...]) -> PQLType | None:
    klass: ClassSchema = schema.profile if cls == "profile" else schema.event
    kind = klass.lookup(path)
    if kind is None:
        return None
    return _typed(kind, cls, path, klass)


def _typed(kind: str, cls: str, path: tuple[str, ...], klass: ClassSchema) -> PQLType:
    if kind == "array":
        elem_path = path + ("[]",)
        elem_kind = klass.lookup(elem_path) or "any"
        element = _typed(elem_kind, cls, elem_path, klass) if elem_kind != "any" else T.ANY
        return PQLType("array", element=element, origin=(cls, path))
    if kind in ("object", "map"):
        return PQLType(kind, origin=(cls, path))
    return PQLType(kind if kind in T.SCALARS else "any")


_STRING_TESTS = {"contains", "doesNotContain", "startsWith", "doesNotStartWith", "endsWith", "doesNotEndWith"}


_ELEMENT_METHODS = {
    "filter",
    "exists",
    "map",
    "groupBy",
    "topN",
    "bottomN",
    "sum",
    "average",
    "min",
    "max",
    "count",
}


_ARRAY_METHODS = {
    "count", "sum", "average", "min", "max", "distinct", "head", "includes", "intersects", "intersection",
    "subsetOf", "supersetOf", "filter", "exists", "map", "groupBy", "topN", "bottomN",
}  # fmt: skip


_MAP_METHODS = {"get", "keys", "values", "count"}


_OBJECT_METHODS = {"isNull", "isNotNull"}


_DATE_METHODS = {"getMonth", "getYear", "getDayOfMonth"}


_STRING_METHODS = _STRING_TESTS | {"equals", "notEqualTo", "matches", "regexGroup"}


ALL_METHODS = _ARRAY_METHODS | _MAP_METHODS | _OBJECT_METHODS | _DATE_METHODS | _STRING_METHODS


FUNCTIONS = {"date", "currentMonth", "currentYear", "currentDayOfMonth", "if", "inSegment", "mapEntry"}


def _coerce(value: str, target: PQLType) -> PQLType | None:
    """The type a string literal can stand for when compared with ``target`` (documented coercions only)."""
    if target.kind == "boolean" and value.lower() in ("true", "false"):
        return T.BOOLEAN
    if target.kind == "date":
        try:
            date.fromisoformat(value)
            return T.DATE
        except ValueError:
            return None
    if target.kind == "date-time":
        try:
            datetime.fromisoformat(value)
            return T.DATETIME
        except ValueError:
            return None
    return None


class CheckerBase:
    """Resolves names, infers types and rejects what cannot run; one ``v_<Node>`` method per node type (in the
    mixins)."""

    def __init__(self, schema, resolve_audience, dependencies, self_id):
        self.schema = schema
        self.resolve_audience = resolve_audience
        self.dependencies = dependencies
        self.self_id = self_id
        self.types: dict[int, PQLType] = {}
        self.res: dict[int, Resolution] = {}
        self.coercions: dict[int, PQLType] = {}
        self.audiences: list[str] = []
        self.fields: dict[str, set[str]] = {"profile": set(), "event": set()}
        self.warnings: list[tuple[str, ast.Pos]] = []
        self.chain_text: str | None = None  # the whole dotted path being resolved, for error messages
        self.root_params: tuple[str, ...] = ()

    def fail(
        self, node: ast.Node, message: str, text: str = "", expected: Iterable[str] = ()
    ) -> PQLValidationError:
        return PQLValidationError(message, node.pos[0], node.pos[1], text, list(expected))

    def run(self, query: ast.Query) -> PQLType:
        self.root_params = query.params
        if len(query.params) > 1:
            raise self.fail(
                query, "a segment expression takes one parameter (the profile): write '(Profile) => ...'"
            )
        return self.visit(query.body, [_Scope("root")])

    def visit(self, node: ast.Node, scopes: list[_Scope]) -> PQLType:
        method = getattr(self, "v_" + type(node).__name__, None)
        if method is None:
            raise self.fail(node, f"'{type(node).__name__}' cannot be used here")
        t = method(node, scopes)
        self.types[id(node)] = t
        return t
