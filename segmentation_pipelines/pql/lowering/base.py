"""The walk's core: the entry point, dispatch of a node to its ``v_<Node>`` method, and boolean positions. The
constructs are lowered by the mixins of :class:`segmentation_pipelines.pql.lowering.Lowering` (one module each:
``names``, ``scalars``, ``events``, ``lists``, ``strings``, ``windows``), all subclasses of :class:`Walker`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.limits import DEPTH_MESSAGE, too_deep
from segmentation_pipelines.pql.lowering.backend import Backend
from segmentation_pipelines.pql.lowering.values import CompileError, Ctx, Frame, V
from segmentation_pipelines.pql.schema import Schema
from segmentation_pipelines.timeutil import naive_utc


class Walker:
    """Walks one query and calls the backend; collects the aggregates and segment references it needs."""

    def __init__(self, backend: Backend[Any], schema: Schema, evaluation_time: datetime):
        self.b: Backend[Any] = backend
        self.schema = schema
        self.now = naive_utc(evaluation_time)
        self.needs_profile = False  # set while compiling an aggregate whose rows read profile fields
        self.captures = False  # set while compiling a lambda body that reads anything but its element

    _in_event_now = False

    def predicate(self, query: ast.Query) -> Any:
        deep = too_deep(query)  # the compilers never recurse past the shared limit
        if deep is not None:
            raise CompileError(DEPTH_MESSAGE, deep)
        profile = Frame("profile", self.schema.profile)
        ctx = Ctx((profile,), profile_names=frozenset(query.params[:1]))
        return self.truthy(self.value(query.body, ctx))

    def truthy(self, v: V) -> Any:
        """The value at a boolean position: null and undefined are false; arrays and selections are non-empty."""
        b = self.b
        if v.kind == "events":
            return self.event_agg("bool_or", v, None)
        if v.kind == "list":
            return b.and_(b.is_not_null(v.expr), b.gt(b.list_len(v.expr), b.lit(0, "integer")))
        if v.kind == "struct":
            return b.lit(True, "boolean") if v.expr is None else b.is_not_null(v.expr)
        if v.type == "boolean":
            if v.threshold is not None and v.threshold[0] is v.expr:
                _, agg, op, k = v.threshold
                return b.any_event(v.expr, agg, op, k)
            return b.coalesce_false(v.expr)
        return b.is_not_null(v.expr)

    def boolv(self, node: ast.Expr, ctx: Ctx) -> Any:
        return self.truthy(self.value(node, ctx))

    def value(self, node: ast.Expr, ctx: Ctx) -> V:
        method = getattr(self, f"v_{type(node).__name__}", None)
        if method is None:
            raise CompileError(f"{type(node).__name__} is not supported in a segment definition", node)
        return method(node, ctx)

    def scalar(self, node: ast.Expr, ctx: Ctx) -> V:
        v = self.value(node, ctx)
        if v.kind == "struct" and v.expr is None:
            raise CompileError("a whole profile or event is not a value here", node)
        return v
