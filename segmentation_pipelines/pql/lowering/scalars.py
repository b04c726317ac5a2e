"""Scalar values: literals, operators (arithmetic, comparison, ``in``), function calls and the dispatch of method
calls to the events, lists, strings or maps they apply to."""

from __future__ import annotations

from typing import Any

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import timewindows as tw
from segmentation_pipelines.pql.lowering.base import Walker
from segmentation_pipelines.pql.lowering.values import (
    STRING_FNS,
    TEMPORAL,
    CompileError,
    Ctx,
    V,
    common_type,
)


class Scalars(Walker):
    """Literals, operators, calls and method dispatch."""

    def v_Literal(self, n: ast.Literal, ctx: Ctx) -> V:
        return V("scalar", self.b.lit(n.value, n.kind), n.kind, node=n)

    def v_ListLiteral(self, n: ast.ListLiteral, ctx: Ctx) -> V:
        items = [self.scalar(i, ctx) for i in n.items]
        t = common_type([i.type for i in items])
        exprs = [i.expr for i in items]
        return V("list", self.b.list_lit(exprs, t), "array", elem_type=t, node=n, items=exprs)

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
        out = V("scalar", self.b.cmp(op, ae, ce), "boolean", node=n)
        if ae is a.expr and ce is c.expr and not flip:
            threshold = _threshold(a, op, c)
            out.threshold = None if threshold is None else (out.expr, *threshold)
            lit = c.node if isinstance(c.node, ast.Literal) else None
            field = a.elem_field
            if (
                lit is not None
                and op == "="
                and field is not None
                and field[2] is ae
                and lit.kind in ("string", "integer")
            ):
                out.field_eq = (field[0], field[1], ce)
            if (
                lit is not None
                and a.item_test is not None
                and (op, lit.kind, lit.value) == (">", "integer", 0)
            ):
                # arr[field = literal].count() > 0: some item has field = literal.
                _, arr, var, name, value = a.item_test
                out.expr = self.b.some_item(out.expr, arr, var, name, value)
        return out

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
            return V("scalar", b.if_(c, a.expr, e.expr), common_type([a.type, e.type]), node=n)
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

    def v_Lambda(self, n: ast.Lambda, ctx: Ctx) -> V:
        raise CompileError(
            "lambdas (groupBy/map) produce maps, not segment conditions; not supported here", n
        )

    def v_ObjectLiteral(self, n: ast.ObjectLiteral, ctx: Ctx) -> V:
        raise CompileError("object literals build computed-attribute values, not segment conditions", n)


def _bool_of(lit: ast.Literal) -> bool:
    s = str(lit.value).lower()
    if s not in ("true", "false"):
        raise CompileError(f"cannot compare a boolean field with the string {lit.value!r}", lit)
    return s == "true"


def _threshold(a: V, op: str, c: V) -> tuple[Any, str | None, Any] | None:
    """``(aggregate, op, literal)`` when ``a op c`` compares an event aggregate with a literal so that, at a
    boolean position, it holds exactly when some event the aggregate selects has ``value op literal`` (``max``
    with ``>``/``>=``, ``min`` with ``<``/``<=``: the extreme passes exactly when one value does) or when the
    aggregate selects any event (op None: ``count > 0``, ``count >= 1``). No event: both sides false."""
    agg, lit = a.aggregate, c.node
    if agg is None or not isinstance(lit, ast.Literal) or lit.kind not in ("integer", "string"):
        return None
    if agg.fn == "count" and (op, lit.value) in ((">", 0), (">=", 1)) and lit.kind == "integer":
        return (agg, None, None)
    if agg.fn == "max" and op in (">", ">=") or agg.fn == "min" and op in ("<", "<="):
        return (agg, op, c.expr)
    return None
