"""``check``: the checker composed of its mixins, run on a query, and the rules on the whole result (a segment
definition is a condition; value constructs are refused)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.checker.events import Events
from segmentation_pipelines.pql.checker.lists import Lists
from segmentation_pipelines.pql.checker.messages import _a, _short
from segmentation_pipelines.pql.checker.names import Names
from segmentation_pipelines.pql.checker.result import CheckedQuery
from segmentation_pipelines.pql.checker.scalars import Scalars
from segmentation_pipelines.pql.checker.strings import Strings
from segmentation_pipelines.pql.errors import PQLValidationError
from segmentation_pipelines.pql.limits import DEPTH_MESSAGE, too_deep
from segmentation_pipelines.pql.parser import parse
from segmentation_pipelines.pql.schema import Schema


class _Checker(Names, Scalars, Lists, Strings, Events):
    """The checker: one ``v_<Node>`` method per node type, from the mixins."""


_SEGMENT_RESULTS = {"boolean", "any", "array", "null"}


def check(
    query: ast.Query | str,
    schema: Schema,
    resolve_audience: Callable[[str], str | None] | None = None,
    *,
    allow_non_boolean: bool = False,
    dependencies: Callable[[str], Iterable[str]] | None = None,
    self_id: str | None = None,
) -> CheckedQuery:
    """Check ``query`` against ``schema``; raise :class:`PQLValidationError` naming the position and the fix.

    ``resolve_audience(id_or_name)`` returns the canonical audience id or None (unknown audience);
    ``dependencies(audience_id)`` gives the audiences that audience's definition references, and ``self_id`` is the
    id of the definition being checked: together they reject ``inSegment`` cycles. ``allow_non_boolean`` accepts
    value results (computed attributes, ranking formulas); segment definitions must be conditions.
    """
    if isinstance(query, str):
        query = parse(query)
    deep = too_deep(query)  # a tree built other than by the parser is held to the same limit
    if deep is not None:
        raise PQLValidationError(DEPTH_MESSAGE, *deep.pos)
    checker = _Checker(schema, resolve_audience, dependencies, self_id)
    result = checker.run(query)
    if not allow_non_boolean and result.kind not in _SEGMENT_RESULTS and not _is_path(query.body):
        raise checker.fail(
            query.body,
            f"a segment definition must be a condition (true or false), but this expression gives {_a(result)}; "
            "compare it with something, e.g. '... > 0'",
        )
    if not allow_non_boolean:
        _reject_value_constructs(checker, query.body)
    return CheckedQuery(
        query=query,
        result_type=result,
        referenced_audiences=tuple(checker.audiences),
        profile_fields=_maximal(checker.fields["profile"]),
        event_fields=_maximal(checker.fields["event"]),
        warnings=checker.warnings,
        _types=checker.types,
        _resolutions=checker.res,
        _coercions=checker.coercions,
    )


_VALUE_KINDS = ("object", "map", "mapentry", "tuple", "groups")


def _reject_value_constructs(checker: _Checker, body: ast.Node) -> None:
    """Segment definitions are conditions evaluated by the engines; the constructs that only build computed-attribute
    values (groups, maps, map entries, objects) are rejected here, with their position, so that the compilers cover
    everything ``check`` accepts on a segment definition (docs/decisions/engine.md)."""
    for node in body.walk():
        if isinstance(node, ast.ObjectLiteral):
            raise checker.fail(
                node, "an object literal '{...}' builds a computed-attribute value, not a condition"
            )
        if isinstance(node, ast.Lambda):
            raise checker.fail(node, "a lambda builds a computed-attribute value, not a condition")
        if isinstance(node, ast.Call) and node.name == "mapEntry":
            raise checker.fail(node, "mapEntry(...) builds a computed-attribute value, not a condition")
        if isinstance(node, ast.MethodCall) and node.name == "groupBy":
            raise checker.fail(
                node,
                "groupBy(...) builds a map (a computed-attribute value), not a condition; "
                "count distinct keys with '.<key>.distinct().count()'",
            )
        if isinstance(node, ast.Binary) and node.op in ("=", "!="):
            for side in (node.left, node.right):
                t = checker.types.get(id(side))
                if t is not None and t.kind in _VALUE_KINDS:
                    raise checker.fail(
                        side, f"'{node.op}' compares values, not {_a(t)}: compare their fields", _short(side)
                    )


def _is_path(node) -> bool:
    return isinstance(node, ast.Name | ast.Member | ast.Param | ast.Up | ast.This)


def _maximal(paths: set[str]) -> set[str]:
    """Drop paths that only lead to a longer path also read (``homeAddress`` when ``homeAddress.city`` is read)."""
    out = set()
    for p in paths:
        if not any(q != p and (q.startswith(p + ".") or q.startswith(p + "[]")) for q in paths):
            out.add(p)
    return out
