"""Lists and lambdas: element frames, filters, list methods and aggregates, and the comprehension forms
(``select``/``exists``/``forall``/``sum ... over``) over arrays and over events."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.lowering.aggregates import EventAggregate
from segmentation_pipelines.pql.lowering.base import Walker
from segmentation_pipelines.pql.lowering.values import (
    CompileError,
    Ctx,
    Frame,
    V,
)


class Lists(Walker):
    """Lists, lambdas over their elements, comprehensions."""

    def v_Filter(self, n: ast.Filter, ctx: Ctx) -> V:
        obj = self.value(n.obj, ctx)
        if obj.kind == "events":
            return self.filter_events(obj, n.cond, ctx)
        if obj.kind == "list":
            return self.filter_list(obj, n.cond, ctx, None)
        raise CompileError("[...] filters an array", n)

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
                bv = self.value(body_node, ectx)
                body = self.truthy(bv)
                test = bv.field_eq
                self.element_test = test[1:] if test is not None and test[0] is ectx.frames[-1] else None
            else:
                bv = self.scalar(body_node, ectx)
                if bv.kind != "scalar":
                    raise CompileError("expected a scalar per element", body_node)
                body = bv.expr
            return ref, body, self.captures
        finally:
            self.captures = saved or self.captures

    element_test: tuple[str, Any] | None = None  # the last boolean lambda body, when ``field = literal``

    def filter_list(self, lst: V, cond: ast.Expr, ctx: Ctx, var: str | None) -> V:
        self.element_test = None
        ref, body, cap = self._lambda(lst, cond, ctx, var, True)
        out = replace(lst, expr=self.b.list_filter(lst.expr, ref, body, cap), node=cond, item_test=None)
        if self.element_test is not None and lst.column is not None and lst.column is lst.expr:
            # arr[field = literal] over an array column: an item test, when it is then counted.
            out.item_test = (out.expr, lst.expr, ref, *self.element_test)
        return out

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

    def list_agg(
        self, fn: str, lst: V, value_node: ast.Expr | None, ctx: Ctx, var: str | None, n: ast.Node
    ) -> V:
        b = self.b
        if fn == "count":
            count = V("scalar", b.coalesce(b.list_len(lst.expr), b.lit(0, "integer")), "integer", node=n)
            if lst.item_test is not None and lst.item_test[0] is lst.expr:
                count.item_test = lst.item_test
            return count
        vals = lst.expr
        if value_node is not None:
            ref, body, cap = self._lambda(lst, value_node, ctx, var, False)
            vals = b.list_transform(lst.expr, ref, body, cap)
        return V("scalar", b.list_agg(fn, vals), "number", node=n)

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
                agg = EventAggregate("bool_and", cond=cond)
                ref = self.b.agg_ref(agg, self.needs_profile or src.needs_profile)
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
            return self.event_value(fn, ev, value_node, ctx, "number", n)
        if src.kind == "list":
            lst = self.filter_list(src, d.where, ctx, d.var) if d.where is not None else src
            return self.list_agg(fn, lst, value_node, ctx, d.var, n)
        raise CompileError(f"{d.var} must range over an array", d)


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
