"""The part of PQL compilation both engines share: name resolution, value kinds and the reduction of event
conditions to per-profile aggregates. It emits nothing itself: every construct is handed to a *backend*
(``compile_sql.SqlBackend`` builds sqlglot trees, ``compile_polars.PolarsBackend`` builds Polars expressions), so the
two compilers agree on what a query means and differ only in how each engine says it — which is what the
differential tests then check.

The evaluation shape (architecture.md §5): a query becomes

* a boolean *predicate* over one row per profile (the profile's columns, plus one column per event aggregate, plus one
  boolean column per ``inSegment`` reference), and
* named *event aggregates*: expressions over the event rows of one profile (``bool_or``, ``count_if``,
  ``sum(...) FILTER (WHERE ...)``, chain step timestamps), all computed by one ``GROUP BY profile_id`` over the
  events, shared by every definition of a run (named by a hash of their rendering).

Scopes (pql.md §0): a *frame* is a row the names can resolve on: the profile, an event (inside an aggregate) or an
array element (inside a list lambda). A bare name resolves on the innermost frame that has that field, then on the
enclosing ones; ``^`` skips frames; declared variables (``X from xEvent``) name their frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import timewindows as tw
from segmentation_pipelines.pql.errors import PQLError
from segmentation_pipelines.pql.limits import DEPTH_MESSAGE, too_deep
from segmentation_pipelines.pql.lowering.backend import Backend
from segmentation_pipelines.pql.regex import regex_problem
from segmentation_pipelines.pql.schema import ClassSchema, Schema
from segmentation_pipelines.timeutil import naive_utc

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


@dataclass
class Ctx:
    frames: tuple[Frame, ...]
    lets: dict[str, V] = field(default_factory=dict)
    profile_names: frozenset[str] = frozenset()  # names of parameter 1 ("Profile" in "(Profile) => ...")
    in_event: bool = False  # compiling an event-row expression (inside an aggregate)
    lambda_depth: int = 0

    def push(self, frame: Frame, **kw: Any) -> Ctx:
        return replace(self, frames=(*self.frames, frame), **kw)


class Lowering:
    """Walks one query and calls the backend; collects the aggregates and segment references it needs."""

    def __init__(self, backend: Backend[Any], schema: Schema, evaluation_time: datetime):
        self.b: Backend[Any] = backend
        self.schema = schema
        self.now = naive_utc(evaluation_time)
        self.needs_profile = False  # set while compiling an aggregate whose rows read profile fields
        self.captures = False  # set while compiling a lambda body that reads anything but its element

    # --- entry ---------------------------------------------------------------------------------------------------
    def predicate(self, query: ast.Query) -> Any:
        deep = too_deep(query)  # the compilers never recurse past the shared limit
        if deep is not None:
            raise CompileError(DEPTH_MESSAGE, deep)
        profile = Frame("profile", self.schema.profile)
        ctx = Ctx((profile,), profile_names=frozenset(query.params[:1]))
        return self.truthy(self.value(query.body, ctx))

    # --- boolean positions ---------------------------------------------------------------------------------------
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
            return b.coalesce_false(v.expr)
        return b.is_not_null(v.expr)

    def boolv(self, node: ast.Expr, ctx: Ctx) -> Any:
        return self.truthy(self.value(node, ctx))

    # --- values ------------------------------------------------------------------------------------------------------
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

    def v_Literal(self, n: ast.Literal, ctx: Ctx) -> V:
        return V("scalar", self.b.lit(n.value, n.kind), n.kind, node=n)

    def v_ListLiteral(self, n: ast.ListLiteral, ctx: Ctx) -> V:
        items = [self.scalar(i, ctx) for i in n.items]
        t = _common_type([i.type for i in items])
        exprs = [i.expr for i in items]
        return V("list", self.b.list_lit(exprs, t), "array", elem_type=t, node=n, items=exprs)

    def v_TimeAnchor(self, n: ast.TimeAnchor, ctx: Ctx) -> V:
        return V("scalar", self.b.ts_lit(self._const_bound(tw.span(n, self.now).start)), "date-time", node=n)

    def v_RelativePeriod(self, n: ast.RelativePeriod, ctx: Ctx) -> V:
        return V("scalar", self.b.ts_lit(self._const_bound(tw.span(n, self.now).start)), "date-time", node=n)

    def _const_bound(self, b: tw.Bound) -> datetime:
        assert isinstance(b.base, datetime)
        return b.base

    # names -----------------------------------------------------------------------------------------------------------
    def v_Param(self, n: ast.Param, ctx: Ctx) -> V:
        if n.index != 1:
            raise CompileError(f"${n.index}: a segment definition has one parameter, the profile ($1)", n)
        return self._row(ctx.frames[0], ctx)

    def v_This(self, n: ast.This, ctx: Ctx) -> V:
        return self._row(ctx.frames[-1], ctx)

    def v_Up(self, n: ast.Up, ctx: Ctx) -> V:
        if n.levels >= len(ctx.frames):
            raise CompileError(
                f"'^' steps out of {n.levels} levels but only {len(ctx.frames) - 1} enclose it", n
            )
        return self._lookup(n.name, ctx, ctx.frames[: len(ctx.frames) - n.levels], n)

    def v_Name(self, n: ast.Name, ctx: Ctx) -> V:
        if n.name in ctx.lets:
            return ctx.lets[n.name]
        if n.name in ctx.profile_names:
            return self._row(ctx.frames[0], ctx)
        for f in reversed(ctx.frames):
            if f.var == n.name:
                return self._row(f, ctx)
        if n.name == "xEvent":
            if ctx.in_event:
                # Pairs of events: the inner range is the profile's whole event list (a list of event structs,
                # ordered by timestamp), joined to each event row like the profile's fields.
                self.needs_profile = True
                lst = self.b.event_list(n)
                return V("list", lst, "array", schema=self.schema.event, path=(), elem_type="object", node=n)
            return V("events", node=n)
        return self._lookup(n.name, ctx, ctx.frames, n)

    def _lookup(self, name: str, ctx: Ctx, frames: tuple[Frame, ...], node: ast.Node) -> V:
        untyped: Frame | None = None
        for f in reversed(frames):
            if f.kind == "elem" and f.elem_type != "object":
                if f.elem_type == "any" and untyped is None:
                    untyped = f
                continue
            t = f.schema.lookup((*f.path, name))
            if t is not None:
                return self._field(self._row(f, ctx), name, t, node)
        if untyped is not None:
            # Elements of untyped arrays (map values): the name is a field of the element, typed at run time.
            self._note_access(untyped, ctx)
            return V("scalar", self.b.field(untyped.ref, name), "any", frame=untyped, node=node)
        raise CompileError(f"unknown field {name!r}", node)

    def _row(self, f: Frame, ctx: Ctx) -> V:
        """The row of frame ``f`` as a value (a struct, or the scalar element of an array of scalars)."""
        self._note_access(f, ctx)
        if f.kind == "elem":
            if f.elem_type != "object":
                return V("scalar", f.ref, f.elem_type, frame=f)
            return V("struct", f.ref, "object", schema=f.schema, path=f.path, frame=f)
        return V("struct", None, "object", schema=f.schema, path=f.path, frame=f)

    def _note_access(self, f: Frame, ctx: Ctx) -> None:
        innermost = ctx.frames[-1]
        if ctx.lambda_depth and f is not innermost:
            self.captures = True
        if ctx.in_event and f.kind == "profile":
            self.needs_profile = True

    def _field(self, obj: V, name: str, t: str, node: ast.Node) -> V:
        """``obj.name`` where ``obj`` is a struct value; ``t`` the field's schema type."""
        f = obj.frame
        assert obj.schema is not None
        path = (*obj.path, name)
        if obj.expr is None:
            assert f is not None
            e = self.b.column(f.kind, name, via_event=f.kind == "profile" and self._in_event_now)
        else:
            e = self.b.field(obj.expr, name)
        return self._typed(e, obj.schema, path, t, node, f)

    _in_event_now = False

    def _typed(
        self, e: Any, schema: ClassSchema, path: tuple[str, ...], t: str, node: ast.Node, f: Frame | None
    ) -> V:
        if t == "array":
            ep = (*path, "[]")
            et = schema.lookup(ep) or "any"
            return V("list", e, "array", schema=schema, path=ep, elem_type=et, frame=f, node=node)
        if t == "object":
            return V("struct", e, "object", schema=schema, path=path, frame=f, node=node)
        return V("scalar", e, t, schema=schema, path=path, frame=f, node=node)

    def v_Member(self, n: ast.Member, ctx: Ctx) -> V:
        obj = self.value(n.obj, ctx)
        return self.member(obj, n.name, n, ctx)

    def member(self, obj: V, name: str, n: ast.Node, ctx: Ctx) -> V:
        if obj.kind == "events":
            path = (*obj.proj, name)
            t = _lookup_through_arrays(self.schema.event, path)
            if t is None:
                raise CompileError(f"unknown event field {'.'.join(path)!r}", n)
            return replace(obj, proj=path, type=t, node=n)
        if obj.kind == "struct":
            assert obj.schema is not None
            t = obj.schema.lookup((*obj.path, name))
            if t is None:
                raise CompileError(f"unknown field {'.'.join((*obj.path, name))!r}", n)
            return self._field(obj, name, t, n)
        if obj.kind == "list" and obj.schema is not None and obj.elem_type == "object":
            # Flattening through an array: the list of the field over all elements.
            t = obj.schema.lookup((*obj.path, name))
            if t is None:
                raise CompileError(f"unknown field {'.'.join((*obj.path, name))!r}", n)
            var = self.b.lambda_var(ctx.lambda_depth + 1)
            inner = self._typed(self.b.field(var, name), obj.schema, (*obj.path, name), t, n, None)
            if inner.kind == "list":
                flat = self.b.list_flatten(self.b.list_transform(obj.expr, var, inner.expr, False))
                return replace(inner, expr=flat, frame=None)
            et = t if inner.kind == "scalar" else "object"
            return V(
                "list",
                self.b.list_transform(obj.expr, var, inner.expr, False),
                "array",
                schema=obj.schema,
                path=(*obj.path, name) if et == "object" else (*obj.path, name),
                elem_type=et,
                node=n,
            )
        raise CompileError(f"cannot read field {name!r} of a {obj.type} value", n)

    # operators -------------------------------------------------------------------------------------------------------
    def v_Unary(self, n: ast.Unary, ctx: Ctx) -> V:
        if n.op == "not":
            return V("scalar", self.b.not_(self.boolv(n.operand, ctx)), "boolean", node=n)
        v = self.scalar(n.operand, ctx)
        return V("scalar", self.b.neg(v.expr), v.type, node=n)

    def v_Binary(self, n: ast.Binary, ctx: Ctx) -> V:
        op = n.op if n.op == "notIn" else n.op.lower()
        if op.lower() == "notin":
            op = "notIn"
        b = self.b
        if op in ("and", "or"):
            lb, rb = self.boolv(n.left, ctx), self.boolv(n.right, ctx)
            return V("scalar", b.and_(lb, rb) if op == "and" else b.or_(lb, rb), "boolean", node=n)
        if op in ("+", "-", "*", "/", "%"):
            lv, rv = self.scalar(n.left, ctx), self.scalar(n.right, ctx)
            self._no_collection(lv, n)
            self._no_collection(rv, n)
            t = "number" if op == "/" or "number" in (lv.type, rv.type) else "integer"
            if op == "+" and lv.type == "string" and rv.type == "string":
                return V("scalar", b.concat(lv.expr, rv.expr), "string", node=n)
            return V("scalar", b.arith(op, lv.expr, rv.expr), t, node=n)
        if op in ("=", "!=", "<", "<=", ">", ">="):
            return self.compare(op, n.left, n.right, ctx, n)
        if op in ("in", "notIn"):
            return self.membership(op, n.left, n.right, ctx, n)
        if op in ("like", "matches"):
            return self.string_op(op, self.value(n.left, ctx), [n.right], ctx, n)
        raise CompileError(f"operator {n.op!r} is not supported", n)

    def _no_collection(self, v: V, n: ast.Node) -> None:
        if v.kind in ("events", "list"):
            raise CompileError("arithmetic on an array is not defined (aggregate it first)", n)

    def compare(self, op: str, left: ast.Expr, right: ast.Expr, ctx: Ctx, n: ast.Node) -> V:
        lv, rv = self.value(left, ctx), self.value(right, ctx)
        # Existential comparison of an event projection with a value (pql.md §0).
        if lv.kind == "events" and rv.kind == "events":
            # Existential over pairs: some value of the left events compares true with some value of the right.
            lv, rv = self.events_as_list(lv, ctx, n), self.events_as_list(rv, ctx, n)
            x, y = self.b.lambda_var(ctx.lambda_depth + 1), self.b.lambda_var(ctx.lambda_depth + 2)
            body = self._cmp_exprs(op, V("scalar", x, lv.elem_type), V("scalar", y, rv.elem_type), False, n)
            inner = self.b.list_any(rv.expr, y, body.expr, True)
            return V("scalar", self.b.list_any(lv.expr, x, inner, False), "boolean", node=n)
        if lv.kind == "events" or rv.kind == "events":
            ev, other_node, flip = (lv, right, False) if lv.kind == "events" else (rv, left, True)
            return self.events_exists(
                ev,
                lambda ectx, proj: self._cmp_exprs(op, proj, self.scalar(other_node, ectx), flip, n),
                ctx,
                n,
            )
        if lv.kind == "list" and rv.kind == "list":
            if op not in ("=", "!="):
                raise CompileError(f"arrays can only be compared with = or !=, not {op}", n)
            e = self.b.cmp(op, lv.expr, rv.expr)
            return V("scalar", e, "boolean", node=n)
        if lv.kind == "list" or rv.kind == "list":
            lst, other, flip = (lv, rv, False) if lv.kind == "list" else (rv, lv, True)
            var = self.b.lambda_var(ctx.lambda_depth + 1)
            elem = V("scalar", var, lst.elem_type)
            body = self._cmp_exprs(op, elem, other, flip, n).expr
            return V(
                "scalar", self.b.list_any(lst.expr, var, body, self._captures_of(other)), "boolean", node=n
            )
        return self._cmp_exprs(op, lv, rv, False, n)

    def _captures_of(self, other: V) -> bool:
        # A lambda body reading a non-constant outer value captures it (Polars cannot).
        return not self.b.is_constant(other.expr)

    def _cmp_exprs(self, op: str, a: V, c: V, flip: bool, n: ast.Node) -> V:
        if flip:
            a, c = c, a
        ae, ce = self._coerce_pair(a, c, n)
        return V("scalar", self.b.cmp(op, ae, ce), "boolean", node=n)

    def _coerce_pair(self, a: V, c: V, n: ast.Node) -> tuple[Any, Any]:
        b = self.b
        for x, y in ((a, c), (c, a)):
            if x.kind == "struct" or y.kind == "struct":
                raise CompileError("objects cannot be compared; compare their fields", n)
        ae, ce = a.expr, c.expr
        # Schema-driven coercion of the right operand (pql.md §6): "true" -> true for boolean fields.
        if a.type == "boolean" and isinstance(c.node, ast.Literal) and c.node.kind == "string":
            ce = b.lit(_bool_of(c.node), "boolean")
        if c.type == "boolean" and isinstance(a.node, ast.Literal) and a.node.kind == "string":
            ae = b.lit(_bool_of(a.node), "boolean")
        if a.type in TEMPORAL or c.type in TEMPORAL:
            if a.type == "date":
                ae = b.to_ts(ae)
            if c.type == "date":
                ce = b.to_ts(ce)
        return ae, ce

    def membership(self, op: str, left: ast.Expr, right: ast.Expr, ctx: Ctx, n: ast.Node) -> V:
        lv, rv = self.value(left, ctx), self.value(right, ctx)
        b = self.b
        neg = op == "notIn"
        if rv.kind == "events":
            # Membership in the values of the events: their list per profile.
            rv = self.events_as_list(rv, ctx, n)
            if lv.kind == "events":
                lv = self.events_as_list(lv, ctx, n)
        if lv.kind == "events":
            if rv.kind != "list":
                raise CompileError("the right side of in/notIn must be an array", n)
            return self.events_exists(
                lv,
                lambda ectx, proj: V("scalar", self._in(proj, self.value(right, ectx), neg), "boolean"),
                ctx,
                n,
            )
        if rv.kind != "list":
            raise CompileError("the right side of in/notIn must be an array", n)
        if lv.kind == "list":
            var = b.lambda_var(ctx.lambda_depth + 1)
            body = self._in(V("scalar", var, lv.elem_type), rv, neg)
            return V("scalar", b.list_any(lv.expr, var, body, not b.is_constant(rv.expr)), "boolean", node=n)
        return V("scalar", self._in(lv, rv, neg), "boolean", node=n)

    def _in(self, item: V, arr: V, neg: bool) -> Any:
        b = self.b
        if isinstance(arr.node, ast.ListLiteral):
            items = [
                self._coerce_pair(item, V("scalar", e, arr.elem_type, node=i), arr.node)[1]
                for e, i in zip(arr.items or [], arr.node.items, strict=True)
            ]
            return b.in_values(item.expr, items, neg)
        return b.in_array(item.expr, arr.expr, neg)

    # event aggregates ------------------------------------------------------------------------------------------------
    def event_ctx(self, ctx: Ctx, var: str | None) -> Ctx:
        if ctx.in_event:
            raise CompileError("conditions over events inside conditions over events are not supported yet")
        return ctx.push(Frame("event", self.schema.event, (), var), in_event=True)

    def _proj_expr(self, ev: V, ectx: Ctx) -> V:
        row = V("struct", None, "object", schema=self.schema.event, path=(), frame=ectx.frames[-1])
        v = row
        for name in ev.proj:
            v = self.member(v, name, ev.node or ast.Name("xEvent"), ectx)
        return v

    def events_exists(self, ev: V, make: Any, ctx: Ctx, n: ast.Node) -> V:
        """``bool_or`` over the (filtered) events of ``make(event ctx, projected value)``, element-wise when the
        projection is an array (``xEvent.productListItems.SKU = "x"``)."""
        saved = self._enter_event()
        try:
            ectx = self.event_ctx(ctx, ev.var)
            proj = self._proj_expr(ev, ectx)
            if proj.kind == "list":
                var = self.b.lambda_var(ectx.lambda_depth + 1)
                body = make(
                    replace(ectx, lambda_depth=ectx.lambda_depth + 1), V("scalar", var, proj.elem_type)
                ).expr
                p = self.b.list_any(proj.expr, var, body, False)
            else:
                p = self.truthy(make(ectx, proj))
            cond = p if ev.cond is None else self.b.and_(ev.cond, p)
            agg = self.b.agg("bool_or", None, cond)
            return V("scalar", self._register(agg, "bool_or", ev), "boolean", node=n)
        finally:
            self._leave_event(saved)

    def _enter_event(self) -> tuple[bool, bool]:
        saved = (self.needs_profile, self._in_event_now)
        self.needs_profile = False
        self._in_event_now = True
        return saved

    def _leave_event(self, saved: tuple[bool, bool]) -> None:
        self.needs_profile, self._in_event_now = saved[0] or self.needs_profile, saved[1]

    def _register(self, agg: Any, kind: str, ev: V) -> Any:
        return self.b.agg_ref(agg, kind, self.needs_profile or ev.needs_profile)

    def event_agg(self, fn: str, ev: V, value_node: ast.Expr | None, ctx: Ctx | None = None) -> Any:
        """Aggregate ``fn`` of ``value_node`` (evaluated per event; None: the projection) over the filtered events."""
        saved = self._enter_event()
        try:
            ectx = self.event_ctx(ctx or Ctx((Frame("profile", self.schema.profile),)), ev.var)
            val = None
            if value_node is not None:
                val = self.scalar(value_node, ectx).expr
            elif ev.proj:
                pv = self._proj_expr(ev, ectx)
                if pv.kind != "scalar" and fn != "bool_or":
                    raise CompileError(f"{fn} of a non-scalar event field", ev.node)
                val = pv.expr if fn != "bool_or" else self.truthy(pv)
            cond = ev.cond
            if fn == "bool_or" and val is not None:
                cond = val if cond is None else self.b.and_(cond, val)
                val = None
            agg = self.b.agg(fn, val, cond)
            return self._register(agg, fn, ev)
        finally:
            self._leave_event(saved)

    def filter_events(self, ev: V, cond_node: ast.Expr, ctx: Ctx, var: str | None = None) -> V:
        if ev.proj:
            raise CompileError(
                "filtering a projected event field is not supported; filter xEvent itself", cond_node
            )
        saved = self._enter_event()
        try:
            ectx = self.event_ctx(ctx, var or ev.var)
            c = self.boolv(cond_node, ectx)
            reads_profile = self.needs_profile
        finally:
            self._leave_event(saved)
        # The flag travels with the value into the aggregate that consumes it.
        cond = c if ev.cond is None else self.b.and_(ev.cond, c)
        return replace(ev, cond=cond, var=var or ev.var, needs_profile=ev.needs_profile or reads_profile)

    def v_Filter(self, n: ast.Filter, ctx: Ctx) -> V:
        obj = self.value(n.obj, ctx)
        if obj.kind == "events":
            return self.filter_events(obj, n.cond, ctx)
        if obj.kind == "list":
            return self.filter_list(obj, n.cond, ctx, None)
        raise CompileError("[...] filters an array", n)

    # lists -------------------------------------------------------------------------------------------------------------
    def elem_ctx(self, lst: V, ctx: Ctx, var: str | None) -> tuple[Ctx, Any]:
        ref = self.b.lambda_var(ctx.lambda_depth + 1)
        frame = Frame(
            "elem",
            lst.schema or self.schema.profile,
            lst.path,
            var,
            ref,
            "object" if lst.elem_type == "object" else lst.elem_type,
        )
        return ctx.push(frame, lambda_depth=ctx.lambda_depth + 1), ref

    def _lambda(
        self, lst: V, body_node: ast.Expr | None, ctx: Ctx, var: str | None, as_bool: bool
    ) -> tuple[Any, Any, bool]:
        saved = self.captures
        self.captures = False
        try:
            ectx, ref = self.elem_ctx(lst, ctx, var)
            if body_node is None:
                body = ref
            elif as_bool:
                body = self.boolv(body_node, ectx)
            else:
                bv = self.scalar(body_node, ectx)
                if bv.kind != "scalar":
                    raise CompileError("expected a scalar per element", body_node)
                body = bv.expr
            return ref, body, self.captures
        finally:
            self.captures = saved or self.captures

    def filter_list(self, lst: V, cond: ast.Expr, ctx: Ctx, var: str | None) -> V:
        ref, body, cap = self._lambda(lst, cond, ctx, var, True)
        return replace(lst, expr=self.b.list_filter(lst.expr, ref, body, cap), node=cond)

    # comprehension forms -------------------------------------------------------------------------------------------
    def _decls_cond(self, decls: tuple[ast.VarDecl, ...], ctx: Ctx, kind: str) -> V:
        """``select``/``exists``/``forall`` over declarations: the first declaration's range, filtered by its own
        condition and (nested) by the existence (``forall``: universality) of the following declarations."""
        d, rest = decls[0], decls[1:]
        src = self.value(d.source, ctx)
        if src.kind == "events":
            saved = self._enter_event()
            try:
                ectx = self.event_ctx(ctx, d.var)
                cond = self._decl_body(d, rest, ectx, kind)
                reads_profile = self.needs_profile
            finally:
                self._leave_event(saved)
            if cond is None:
                return replace(src, var=d.var)
            cond = cond if src.cond is None else self.b.and_(src.cond, cond)
            return replace(src, cond=cond, var=d.var, needs_profile=src.needs_profile or reads_profile)
        if src.kind == "list":
            saved = self.captures
            self.captures = False
            ectx, ref = self.elem_ctx(src, ctx, d.var)
            try:
                cond = self._decl_body(d, rest, ectx, kind)
                cap = self.captures
            finally:
                self.captures = saved or self.captures
            return replace(
                src,
                expr=self.b.list_filter(src.expr, ref, cond, cap) if cond is not None else src.expr,
                cond=(ref, cond, cap),
                var=d.var,
            )
        raise CompileError(f"{d.var} must range over an array (xEvent or an array field)", d)

    def _decl_body(self, d: ast.VarDecl, rest: tuple[ast.VarDecl, ...], ectx: Ctx, kind: str) -> Any:
        b = self.b
        c = self.boolv(d.where, ectx) if d.where is not None else None
        if rest:
            inner = self._decls_cond(rest, ectx, kind)
            if inner.kind != "list":
                raise CompileError("nested declarations over xEvent are not supported yet", rest[0])
            if kind == "forall":
                ref, cond, cap = inner.cond
                nested = (
                    b.list_all(self.value(rest[0].source, ectx).expr, ref, cond, cap)
                    if cond is not None
                    else None
                )
            else:
                nested = self.truthy(inner)
            if nested is not None:
                c = nested if c is None else b.and_(c, nested)
        return c

    def v_Select(self, n: ast.Select, ctx: Ctx) -> V:
        return self._decls_cond(n.decls, ctx, "select")

    def v_Quantifier(self, n: ast.Quantifier, ctx: Ctx) -> V:
        if n.kind == "exists":
            return V("scalar", self.truthy(self._decls_cond(n.decls, ctx, "exists")), "boolean", node=n)
        # forall: every element of the first range satisfies its condition and the nested ones.
        d = n.decls[0]
        src = self.value(d.source, ctx)
        if d.where is None and len(n.decls) == 1:
            return V("scalar", self.b.lit(True, "boolean"), "boolean", node=n)
        if src.kind == "events":
            saved = self._enter_event()
            try:
                ectx = self.event_ctx(ctx, d.var)
                cond = self._decl_body(d, n.decls[1:], ectx, "forall")
                if cond is None:
                    return V("scalar", self.b.lit(True, "boolean"), "boolean", node=n)
                if src.cond is not None:
                    cond = self.b.or_(self.b.not_(src.cond), cond)
                agg = self.b.agg("bool_and", None, cond)
                ref = self.b.agg_ref(agg, "bool_and", self.needs_profile or src.needs_profile)
            finally:
                self._leave_event(saved)
            return V("scalar", ref, "boolean", node=n)
        if src.kind == "list":
            saved = self.captures
            self.captures = False
            ectx, ref = self.elem_ctx(src, ctx, d.var)
            try:
                cond = self._decl_body(d, n.decls[1:], ectx, "forall")
                cap = self.captures
            finally:
                self.captures = saved or self.captures
            return V("scalar", self.b.list_all(src.expr, ref, cond, cap), "boolean", node=n)
        raise CompileError(f"{d.var} must range over an array", d)

    def v_AggregateOver(self, n: ast.AggregateOver, ctx: Ctx) -> V:
        if len(n.decls) > 1:
            return self.value(_nest_aggregate(n), ctx)
        d = n.decls[0]
        src = self.value(d.source, ctx)
        fn = "avg" if n.fn == "average" else n.fn
        value_node = n.value if n.value is not None else ast.Name(d.var, pos=d.pos)
        if src.kind == "events":
            ev = (
                self.filter_events(src, d.where, ctx, d.var)
                if d.where is not None
                else replace(src, var=d.var)
            )
            e = self.event_agg(fn, ev, value_node, ctx)
            return V("scalar", e, "number" if fn == "avg" else "number", node=n)
        if src.kind == "list":
            lst = self.filter_list(src, d.where, ctx, d.var) if d.where is not None else src
            return self.list_agg(fn, lst, value_node, ctx, d.var, n)
        raise CompileError(f"{d.var} must range over an array", d)

    def list_agg(
        self, fn: str, lst: V, value_node: ast.Expr | None, ctx: Ctx, var: str | None, n: ast.Node
    ) -> V:
        b = self.b
        if fn == "count":
            return V("scalar", b.coalesce(b.list_len(lst.expr), b.lit(0, "integer")), "integer", node=n)
        vals = lst.expr
        if value_node is not None:
            ref, body, cap = self._lambda(lst, value_node, ctx, var, False)
            vals = b.list_transform(lst.expr, ref, body, cap)
        return V("scalar", b.list_agg(fn, vals), "number", node=n)

    def v_Let(self, n: ast.Let, ctx: Ctx) -> V:
        v = self.value(n.value, ctx)
        return self.value(n.body, replace(ctx, lets={**ctx.lets, n.var: v}))

    # chain -------------------------------------------------------------------------------------------------------------
    def v_Chain(self, n: ast.Chain, ctx: Ctx) -> V:
        src = self.value(n.source, ctx)
        if src.kind != "events":
            raise CompileError("chain(...) runs over xEvent", n)
        if not n.steps:
            raise CompileError("a chain needs at least one step", n)
        if len(n.steps) > 6:
            raise CompileError("a chain has at most 6 steps", n)
        saved = self._enter_event()
        try:
            ectx = self.event_ctx(ctx, None)
            ts_v = self._lookup(n.timestamp_field, ectx, ectx.frames, n)
            ts = self.b.to_ts(ts_v.expr) if ts_v.type == "date" else ts_v.expr
            conds = []
            for s in n.steps:
                c = self.boolv(s.what, ectx)
                if s.where is not None:
                    c = self.b.and_(c, self.boolv(s.where, ectx))
                if s.when is not None:
                    c = self.b.and_(c, self.window_pred(ts, tw.when_window(s.when, self.now), ectx))
                if src.cond is not None:
                    c = self.b.and_(src.cond, c)
                conds.append(c)
            counts = [max(1, s.count or 1) for s in n.steps]
            e = self.b.chain(ts, conds, counts, self.needs_profile or src.needs_profile)
        finally:
            self._leave_event(saved)
        return V("scalar", e, "boolean", node=n)

    # time --------------------------------------------------------------------------------------------------------------
    def v_Occurs(self, n: ast.Occurs, ctx: Ctx) -> V:
        target = self.value(n.target, ctx)
        if target.kind == "events":
            return self.events_exists(
                target,
                lambda ectx, proj: V(
                    "scalar",
                    self.window_pred(self._ts(proj, n), tw.occurs_window(n, self.now), ectx),
                    "boolean",
                ),
                ctx,
                n,
            )
        if target.kind == "list":
            var = self.b.lambda_var(ctx.lambda_depth + 1)
            body = self.window_pred(
                self._ts(V("scalar", var, target.elem_type), n), tw.occurs_window(n, self.now), ctx
            )
            return V("scalar", self.b.list_any(target.expr, var, body, False), "boolean", node=n)
        return V(
            "scalar",
            self.window_pred(self._ts(target, n), tw.occurs_window(n, self.now), ctx),
            "boolean",
            node=n,
        )

    def _ts(self, v: V, n: ast.Node) -> Any:
        if v.kind != "scalar":
            raise CompileError("occurs applies to a timestamp or date", n)
        return self.b.to_ts(v.expr) if v.type in ("date", "string") else v.expr

    def window_pred(self, ts: Any, w: tw.Window, ctx: Ctx) -> Any:
        b = self.b
        parts = []
        if w.lower is not None:
            parts.append(b.cmp(">=" if w.lower.inclusive else ">", ts, self.bound(w.lower, ctx)))
        if w.upper is not None:
            parts.append(b.cmp("<=" if w.upper.inclusive else "<", ts, self.bound(w.upper, ctx)))
        out = parts[0]
        for p in parts[1:]:
            out = b.and_(out, p)
        return out

    def bound(self, bd: tw.Bound, ctx: Ctx) -> Any:
        b = self.b
        if isinstance(bd.base, datetime):
            return b.ts_lit(bd.base)
        v = self.scalar(bd.base, ctx)
        e = self._ts(v, bd.base)
        if bd.trunc:
            e = b.trunc(e, bd.trunc)
        if bd.amount:
            e = b.add_interval(e, bd.amount, tw.unit_name(bd.unit or "day"))
        return e

    # calls and methods -----------------------------------------------------------------------------------------------
    def v_Call(self, n: ast.Call, ctx: Ctx) -> V:
        name = n.name.lower()
        b = self.b
        if name in ("currentmonth", "currentyear", "currentdayofmonth"):
            val = {
                "currentmonth": self.now.month,
                "currentyear": self.now.year,
                "currentdayofmonth": self.now.day,
            }
            return V("scalar", b.lit(val[name], "integer"), "integer", node=n)
        if name == "date":
            return V("scalar", b.ts_lit(tw.date_call_day(n, self.now)), "date-time", node=n)
        if name == "if":
            if len(n.args) != 3:
                raise CompileError("if(test, then, else) takes three arguments", n)
            c = self.boolv(n.args[0], ctx)
            a, e = self.scalar(n.args[1], ctx), self.scalar(n.args[2], ctx)
            return V("scalar", b.if_(c, a.expr, e.expr), _common_type([a.type, e.type]), node=n)
        if name == "insegment":
            if len(n.args) != 1 or not (isinstance(n.args[0], ast.Literal) and n.args[0].kind == "string"):
                raise CompileError('inSegment takes one audience id string: inSegment("<id>")', n)
            return V("scalar", b.segment(str(n.args[0].value)), "boolean", node=n)
        raise CompileError(f"function {n.name}() is not supported in a segment definition", n)

    def v_MethodCall(self, n: ast.MethodCall, ctx: Ctx) -> V:
        name = n.name.lower()
        obj = self.value(n.obj, ctx)
        b = self.b
        if name in ("isnull", "isnotnull"):
            present = (
                self.truthy(obj)
                if obj.kind in ("events",)
                else b.is_not_null(obj.expr)
                if obj.expr is not None
                else b.lit(True, "boolean")
            )
            return V("scalar", b.not_(present) if name == "isnull" else present, "boolean", node=n)
        if obj.kind == "events":
            return self.events_method(obj, name, n, ctx)
        if obj.kind == "list":
            return self.list_method(obj, name, n, ctx)
        if name in STRING_FNS or name in ("matches", "regexgroup", "like"):
            return self.string_op(name, obj, list(n.args), ctx, n)
        if name in ("getmonth", "getyear", "getdayofmonth"):
            if obj.type not in TEMPORAL and obj.type != "any":
                raise CompileError(f"{n.name}() applies to a date or timestamp", n)
            return V("scalar", b.date_part(name[3:], obj.expr), "integer", node=n)
        if name in ("get", "keys", "values") and (obj.type == "map" or obj.schema is not None):
            return self.map_method(obj, name, n, ctx)
        raise CompileError(f"method {n.name}() is not supported on a {obj.type} value", n)

    def map_method(self, obj: V, name: str, n: ast.MethodCall, ctx: Ctx) -> V:
        b = self.b
        if name == "get":
            if len(n.args) != 1:
                raise CompileError("get(key) takes one argument", n)
            k = self.scalar(n.args[0], ctx)
            return V("scalar", b.map_get(obj.expr, k.expr), "any", node=n)
        return V("list", b.map_part(obj.expr, name[:-1]), "array", elem_type="any", node=n)

    def events_method(self, ev: V, name: str, n: ast.MethodCall, ctx: Ctx) -> V:
        args = n.args
        through_array = _through_array(self.schema.event, ev.proj)
        if through_array or (ev.proj and name in ("exists", "filter")) or name not in _EVENT_AGG_METHODS:
            # Everything else is a method of the (filtered, projected) events as one list per profile.
            return self.list_method(self.events_as_list(ev, ctx, n), name, n, ctx)
        if name == "count":
            return V("scalar", self.event_agg("count", ev, None, ctx), "integer", node=n)
        if name in ("sum", "average", "avg", "min", "max"):
            fn = "avg" if name in ("average", "avg") else name
            if not args and not ev.proj:
                raise CompileError(
                    f"{n.name}() over events needs the value to aggregate: .{n.name}(field)", n
                )
            return V("scalar", self.event_agg(fn, ev, args[0] if args else None, ctx), "number", node=n)
        if name in ("exists", "filter"):
            if len(args) != 1:
                raise CompileError(f"{n.name}(condition) takes one argument", n)
            f = self.filter_events(ev, args[0], ctx)
            return f if name == "filter" else V("scalar", self.truthy(f), "boolean", node=n)
        if name == "head" and not args:
            return self.events_head(ev, ctx, n)
        return self.list_method(self.events_as_list(ev, ctx, n), name, n, ctx)

    def events_as_list(self, ev: V, ctx: Ctx, n: ast.Node) -> V:
        """The (filtered) events as one list per profile, ordered by timestamp (nulls last), of whole events or of
        the projected field (flattened through arrays). No selected event: a missing (null) list."""
        saved = self._enter_event()
        try:
            ectx = self.event_ctx(ctx, ev.var)
            ts_v = self._lookup("timestamp", ectx, ectx.frames, n)
            ts = self.b.to_ts(ts_v.expr) if ts_v.type == "date" else ts_v.expr
            if ev.proj:
                pv = self._proj_expr(ev, ectx)
                if pv.kind == "struct" and pv.expr is None:
                    raise CompileError("a whole event is not a value here", n)
                val = pv.expr
            else:
                pv = V("struct", None, "object", schema=self.schema.event, path=())
                val = self.b.event_row()
            ref = self._register(self.b.agg_list(val, ts, ev.cond), "list", ev)
        finally:
            self._leave_event(saved)
        if pv.kind == "list":
            # A list per event (an array field, or a field through one): one flat list of their elements.
            return replace(pv, expr=self.b.list_flatten(ref), frame=None, node=n)
        if pv.kind == "struct":
            return V("list", ref, "array", schema=pv.schema, path=pv.path, elem_type="object", node=n)
        return V("list", ref, "array", elem_type=pv.type, node=n)

    def events_head(self, ev: V, ctx: Ctx, n: ast.MethodCall) -> V:
        """``head()`` of (filtered) events: the earliest event by timestamp (events without a timestamp are not
        ordered and never first; ties: either of them), as one aggregate of the whole event row."""
        saved = self._enter_event()
        try:
            ectx = self.event_ctx(ctx, ev.var)
            ts_v = self._lookup("timestamp", ectx, ectx.frames, n)
            ts = self.b.to_ts(ts_v.expr) if ts_v.type == "date" else ts_v.expr
            ref = self._register(self.b.agg_first(self.b.event_row(), ts, ev.cond), "first", ev)
        finally:
            self._leave_event(saved)
        head = V("struct", ref, "object", schema=self.schema.event, path=(), node=n)
        for name in ev.proj:
            if head.kind != "struct":
                raise CompileError(
                    "head() of an event field through an array: use xEvent.head() and its fields", n
                )
            head = self.member(head, name, n, ctx)
        if head.kind == "list" and ev.proj:
            raise CompileError("head() of an array field of events: use xEvent.head() and its fields", n)
        return head

    def list_method(self, lst: V, name: str, n: ast.MethodCall, ctx: Ctx) -> V:
        b = self.b
        args = n.args
        if name == "count":
            return self.list_agg("count", lst, None, ctx, None, n)
        if name in ("sum", "average", "avg", "min", "max"):
            fn = "avg" if name in ("average", "avg") else name
            return self.list_agg(fn, lst, args[0] if args else None, ctx, None, n)
        if name in ("filter", "exists"):
            f = self.filter_list(lst, args[0], ctx, None)
            return f if name == "filter" else V("scalar", self.truthy(f), "boolean", node=n)
        if name == "distinct":
            return replace(lst, expr=b.list_distinct(lst.expr), node=n)
        if name == "head":
            return self._typed(
                b.list_first(lst.expr),
                lst.schema or self.schema.profile,
                lst.path,
                "object" if lst.elem_type == "object" else lst.elem_type,
                n,
                None,
            )
        if name == "includes":
            item = self.scalar(args[0], ctx)
            return V("scalar", b.in_array(item.expr, lst.expr, False), "boolean", node=n)
        if name in ("intersects", "subsetof", "supersetof", "intersection"):
            other = self.value(args[0], ctx)
            if other.kind != "list":
                raise CompileError(f"{n.name}() takes an array", n)
            if name == "intersection":
                return replace(lst, expr=b.list_intersect(lst.expr, other.expr), node=n)
            return V("scalar", b.list_setop(name, lst.expr, other.expr), "boolean", node=n)
        if name in ("topn", "bottomn"):
            if len(args) != 2 or not (isinstance(args[1], ast.Literal) and args[1].kind == "integer"):
                raise CompileError(f"{n.name}(value, n) takes a value expression and an integer", n)
            ref, body, cap = self._lambda(lst, args[0], ctx, None, False)
            return replace(
                lst, expr=b.list_top(lst.expr, ref, body, int(args[1].value), name == "topn", cap), node=n
            )
        if name == "map" and len(args) == 1 and not isinstance(args[0], ast.Lambda):
            ref, body, cap = self._lambda(lst, args[0], ctx, None, False)
            return V("list", b.list_transform(lst.expr, ref, body, cap), "array", elem_type="any", node=n)
        if name in ("get", "keys", "values"):
            return self.map_method(lst, name, n, ctx)
        raise CompileError(f"method {n.name}() is not supported on an array yet", n)

    def string_op(self, name: str, s: V, args: list[ast.Expr], ctx: Ctx, n: ast.Node) -> V:
        b = self.b
        if s.kind == "events":
            return self.events_exists(s, lambda ectx, proj: self.string_op(name, proj, args, ectx, n), ctx, n)
        if s.kind == "list":
            var = b.lambda_var(ctx.lambda_depth + 1)
            inner = self.string_op(
                name, V("scalar", var, s.elem_type), args, replace(ctx, lambda_depth=ctx.lambda_depth + 1), n
            )
            return V(
                "scalar",
                b.list_any(s.expr, var, inner.expr, any(not isinstance(a, ast.Literal) for a in args)),
                "boolean",
                node=n,
            )
        if s.kind != "scalar":
            raise CompileError(f"{name} applies to a string", n)
        if name in ("like", "matches", "regexgroup"):
            if not args or not (isinstance(args[0], ast.Literal) and args[0].kind == "string"):
                raise CompileError(f"the pattern of {name} must be a string literal", n)
            pattern = str(args[0].value)
            if name == "like":
                return V("scalar", b.like(s.expr, pattern), "boolean", node=n)
            check_regex(pattern, args[0])
            if name == "matches":
                return V("scalar", b.regex_match(s.expr, pattern), "boolean", node=n)
            group = 0
            if len(args) > 1:
                if not (isinstance(args[1], ast.Literal) and args[1].kind == "integer"):
                    raise CompileError("regexGroup's group index must be an integer literal", n)
                group = int(args[1].value)
            return V("scalar", b.regex_group(s.expr, pattern, group), "string", node=n)
        case_sensitive = True
        vals = list(args)
        if len(vals) >= 2 and isinstance(vals[-1], ast.Literal) and vals[-1].kind == "boolean":
            case_sensitive = bool(vals[-1].value)
            vals = vals[:-1]
        if not vals:
            raise CompileError(f"{name}() needs a string argument", n)
        if len(vals) > 1 and name != "equals":
            raise CompileError(f"{name}() takes one string (and an optional case-sensitivity flag)", n)
        texts = [self.scalar(v, ctx).expr for v in vals]
        return V("scalar", b.string_fn(name, s.expr, texts, case_sensitive), "boolean", node=n)

    def v_Lambda(self, n: ast.Lambda, ctx: Ctx) -> V:
        raise CompileError(
            "lambdas (groupBy/map) produce maps, not segment conditions; not supported here", n
        )

    def v_ObjectLiteral(self, n: ast.ObjectLiteral, ctx: Ctx) -> V:
        raise CompileError("object literals build computed-attribute values, not segment conditions", n)


# --- helpers -----------------------------------------------------------------------------------------------------------
_EVENT_AGG_METHODS = {"count", "sum", "average", "avg", "min", "max", "exists", "filter", "head"}


def _through_array(schema: ClassSchema, names: tuple[str, ...]) -> bool:
    """Whether an event projection passes through (or ends on) an array field."""
    path: tuple[str, ...] = ()
    for name in names:
        path = (*path, name)
        t = schema.lookup(path)
        if t == "array":
            return True
        if t is None:
            return False
    return False


def _nest_aggregate(n: ast.AggregateOver) -> ast.Expr:
    """An aggregation over several declarations ranges over every combination of their items (each declaration's
    condition holding, later ones may read earlier variables): ``sum``/``min``/``max`` nest (the sum of the inner
    sums, the max of the inner maxima, ...), ``average`` is the sum of the values over the number of non-null
    values (null when there is none). The simple form's value is the first declared variable."""
    value = n.value if n.value is not None else ast.Name(n.decls[0].var, pos=n.decls[0].pos)
    if n.fn == "average":
        one = ast.Call(
            "if",
            (
                ast.MethodCall(value, "isNotNull", (), pos=n.pos),
                ast.Literal(1, "integer", pos=n.pos),
                ast.Literal(0, "integer", pos=n.pos),
            ),
            pos=n.pos,
        )
        total = ast.AggregateOver("sum", value, n.decls, pos=n.pos)
        count = ast.AggregateOver("sum", one, n.decls, pos=n.pos)
        return ast.Binary("/", total, count, pos=n.pos)
    inner = ast.AggregateOver(n.fn, value, n.decls[1:], pos=n.pos)
    return ast.AggregateOver(n.fn, inner, n.decls[:1], pos=n.pos)


def _lookup_through_arrays(schema: ClassSchema, names: tuple[str, ...]) -> str | None:
    path: tuple[str, ...] = ()
    t = None
    for name in names:
        if t == "array":
            path = (*path, "[]")
        path = (*path, name)
        t = schema.lookup(path)
        if t is None:
            return None
    return t


def _bool_of(lit: ast.Literal) -> bool:
    s = str(lit.value).lower()
    if s not in ("true", "false"):
        raise CompileError(f"cannot compare a boolean field with the string {lit.value!r}", lit)
    return s == "true"


def _common_type(types: list[str]) -> str:
    ts = {t for t in types if t != "any"}
    if not ts:
        return "any"
    if ts <= NUMERIC:
        return "number" if "number" in ts else "integer"
    return ts.pop() if len(ts) == 1 else "any"


def check_regex(pattern: str, node: ast.Node) -> None:
    """Refuse a pattern either engine cannot run as PQL means it (the checker's validator, pql/regex.py)."""
    problem = regex_problem(pattern)
    if problem:
        raise CompileError(problem, node)
