"""The reduction of conditions over the profile's events to per-profile event aggregates (architecture.md §5):
expressions over the event rows of one profile (``bool_or``, ``count``, ``sum ... where``, ordered lists, the first
event, chain step timestamps), each handed to the backend (``agg_ref``), which registers it for the one
``GROUP BY profile_id`` over the events that every definition of a run shares."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import timewindows as tw
from segmentation_pipelines.pql.lowering.aggregates import EventAggregate
from segmentation_pipelines.pql.lowering.base import Walker
from segmentation_pipelines.pql.lowering.values import (
    CompileError,
    Ctx,
    Frame,
    V,
)
from segmentation_pipelines.pql.schema import ClassSchema


class Events(Walker):
    """Event aggregates: exists, count/sum/min/max/avg, filter, head, lists of events, chains."""

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
            return V("scalar", self._register(EventAggregate("bool_or", cond=cond), ev), "boolean", node=n)
        finally:
            self._leave_event(saved)

    def _enter_event(self) -> tuple[bool, bool]:
        saved = (self.needs_profile, self._in_event_now)
        self.needs_profile = False
        self._in_event_now = True
        return saved

    def _leave_event(self, saved: tuple[bool, bool]) -> None:
        self.needs_profile, self._in_event_now = saved[0] or self.needs_profile, saved[1]

    def _register(self, agg: EventAggregate[Any], ev: V) -> Any:
        needs_profile = self.needs_profile or ev.needs_profile
        self.registered = None if needs_profile else agg
        return self.b.agg_ref(agg, needs_profile)

    registered: EventAggregate[Any] | None = None  # the last aggregate registered, when over event rows alone

    def event_value(self, fn: str, ev: V, value_node: ast.Expr | None, ctx: Ctx, t: str, n: ast.Node) -> V:
        """The scalar value of :meth:`event_agg`, knowing its aggregate (for :meth:`threshold`)."""
        e = self.event_agg(fn, ev, value_node, ctx)
        return V("scalar", e, t, node=n, aggregate=self.registered)

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
            return self._register(EventAggregate(fn, val, cond), ev)
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

    def events_method(self, ev: V, name: str, n: ast.MethodCall, ctx: Ctx) -> V:
        args = n.args
        through_array = _through_array(self.schema.event, ev.proj)
        if through_array or (ev.proj and name in ("exists", "filter")) or name not in _EVENT_AGG_METHODS:
            # Everything else is a method of the (filtered, projected) events as one list per profile.
            return self.list_method(self.events_as_list(ev, ctx, n), name, n, ctx)
        if name == "count":
            return self.event_value("count", ev, None, ctx, "integer", n)
        if name in ("sum", "average", "avg", "min", "max"):
            fn = "avg" if name in ("average", "avg") else name
            if not args and not ev.proj:
                raise CompileError(
                    f"{n.name}() over events needs the value to aggregate: .{n.name}(field)", n
                )
            return self.event_value(fn, ev, args[0] if args else None, ctx, "number", n)
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
            ref = self._register(EventAggregate("list", val, ev.cond, ts), ev)
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
            ref = self._register(EventAggregate("first", self.b.event_row(), ev.cond, ts), ev)
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
