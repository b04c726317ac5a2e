"""PQL to Polars expressions (lazy): the second engine, checked against the SQL compiler by the differential tests.

The walk is ``compile_lowering.Lowering`` (shared with the SQL compiler); this module says how each construct is
written with Polars expressions. :class:`CompiledPolars` has

* ``predicate``: a boolean ``pl.Expr`` over one row per profile (the profile's columns, the event aggregate columns,
  the ``inSegment`` columns);
* ``aggregates``: name -> expression for ``events.group_by("profile_id").agg(...)``;
  ``profile_aggregates``: the same over the events joined with the profile columns (renamed ``__p__<name>``);
* ``segments``: audience id -> boolean column name.

Polars list lambdas (``list.eval``) see only the element: a condition on array elements that also reads the
enclosing row (``^`` or an outer variable) is rejected here with a clear error (the SQL engine supports it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from segmentation_pipelines.pql.compile_lowering import CompileError, Lowering
from segmentation_pipelines.pql.compile_sql import _query_of
from segmentation_pipelines.pql.schema import Schema

PROFILE_PREFIX = "__p__"
_OFFSET = {
    "millisecond": (1, "ms"),
    "second": (1, "s"),
    "minute": (1, "m"),
    "hour": (1, "h"),
    "day": (1, "d"),
    "week": (7, "d"),
    "month": (1, "mo"),
    "year": (1, "y"),
    "decade": (10, "y"),
    "century": (100, "y"),
    "millennium": (1000, "y"),
}
_DEFAULTS = {"bool_or": False, "bool_and": True, "count": 0, "sum": 0}


@dataclass
class CompiledPolars:
    predicate: pl.Expr
    aggregates: dict[str, pl.Expr] = field(default_factory=dict)
    profile_aggregates: dict[str, pl.Expr] = field(default_factory=dict)
    segments: dict[str, str] = field(default_factory=dict)
    profile_columns: set[str] = field(default_factory=set)  # profile columns the profile aggregates read


def _h(e: pl.Expr) -> str:
    try:
        key = e.meta.serialize(format="json")
    except Exception:  # noqa: BLE001 - not every expression serialises; its display form is the fallback key
        key = str(e)
    return hashlib.sha1(key.encode() if isinstance(key, str) else key).hexdigest()[:16]


class PolarsBackend:
    def __init__(self) -> None:
        self.out = CompiledPolars(pl.lit(False))

    # literals and columns -------------------------------------------------------------------------------------------
    def lit(self, value: Any, kind: str) -> pl.Expr:
        if kind == "boolean":
            return pl.lit(bool(value), dtype=pl.Boolean)
        if kind == "string":
            return pl.lit(str(value), dtype=pl.String)
        if kind == "integer":
            return pl.lit(int(value), dtype=pl.Int64)
        return pl.lit(float(value), dtype=pl.Float64)

    def is_constant(self, e: pl.Expr) -> bool:
        return not e.meta.root_names() and "element" not in str(e)

    def ts_lit(self, t: datetime) -> pl.Expr:
        return pl.lit(t, dtype=pl.Datetime("us"))

    def list_lit(self, items: list[pl.Expr], t: str) -> pl.Expr:
        return pl.concat_list(items) if items else pl.lit([], dtype=pl.List(pl.String))

    def column(self, kind: str, name: str, via_event: bool = False) -> pl.Expr:
        if kind == "profile" and via_event:
            self.out.profile_columns.add(name)
            return pl.col(PROFILE_PREFIX + name)
        return pl.col(name)

    def field(self, e: pl.Expr, name: str) -> pl.Expr:
        return e.struct.field(name)

    def lambda_var(self, depth: int) -> pl.Expr:
        return pl.element()

    def event_list(self, node: Any) -> pl.Expr:
        raise CompileError(
            "the Polars engine cannot evaluate conditions over pairs of events (xEvent inside a condition over "
            "xEvent); use the DuckDB engine",
            node,
        )

    # scalar operators -----------------------------------------------------------------------------------------------
    def cmp(self, op: str, a: pl.Expr, b: pl.Expr) -> pl.Expr:
        return {"=": a.eq, "!=": a.ne, "<": a.lt, "<=": a.le, ">": a.gt, ">=": a.ge}[op](b)

    def gt(self, a: pl.Expr, b: pl.Expr) -> pl.Expr:
        return a > b

    def and_(self, a: pl.Expr, b: pl.Expr) -> pl.Expr:
        return a & b

    def or_(self, a: pl.Expr, b: pl.Expr) -> pl.Expr:
        return a | b

    def not_(self, a: pl.Expr) -> pl.Expr:
        return ~a

    def coalesce_false(self, e: pl.Expr) -> pl.Expr:
        return e.fill_null(False)

    def coalesce(self, e: pl.Expr, d: pl.Expr) -> pl.Expr:
        return pl.coalesce(e, d)

    def is_not_null(self, e: pl.Expr) -> pl.Expr:
        return e.is_not_null()

    def arith(self, op: str, a: pl.Expr, b: pl.Expr) -> pl.Expr:
        if op == "/":
            return pl.when(b != 0).then(a.cast(pl.Float64) / b.cast(pl.Float64))
        if op == "%":
            # Truncated remainder (sign of the dividend), as Java and DuckDB; Polars' % is floored.
            return pl.when(b != 0).then(a.sign() * (a.abs() % b.abs()))
        return {"+": a.__add__, "-": a.__sub__, "*": a.__mul__}[op](b)

    def neg(self, a: pl.Expr) -> pl.Expr:
        return -a

    def concat(self, a: pl.Expr, b: pl.Expr) -> pl.Expr:
        return a + b

    def if_(self, c: pl.Expr, a: pl.Expr, b: pl.Expr) -> pl.Expr:
        return pl.when(c).then(a).otherwise(b)

    def to_ts(self, e: pl.Expr) -> pl.Expr:
        return e.cast(pl.Datetime("us"))

    def trunc(self, e: pl.Expr, unit: str) -> pl.Expr:
        every = {
            "millisecond": "1ms",
            "second": "1s",
            "minute": "1m",
            "hour": "1h",
            "day": "1d",
            "week": "1w",
            "month": "1mo",
            "year": "1y",
        }.get(unit)
        if every is None:
            raise CompileError(f"truncation to {unit} is not supported")
        return e.dt.truncate(every)

    def add_interval(self, e: pl.Expr, amount: int, unit: str) -> pl.Expr:
        mult, u = _OFFSET[unit]
        return e.dt.offset_by(f"{amount * mult}{u}")

    def date_part(self, part: str, e: pl.Expr) -> pl.Expr:
        return {"month": e.dt.month, "year": e.dt.year, "dayofmonth": e.dt.day}[part]().cast(pl.Int64)

    def segment(self, audience_id: str) -> pl.Expr:
        col = "s_" + hashlib.sha1(audience_id.encode()).hexdigest()[:16]
        self.out.segments[audience_id] = col
        return pl.col(col).fill_null(False)

    # membership and strings -----------------------------------------------------------------------------------------
    def in_values(self, item: pl.Expr, items: list[pl.Expr], neg: bool) -> pl.Expr:
        hit = pl.any_horizontal([item == i for i in items]) if items else pl.lit(False)
        hit = pl.when(item.is_not_null()).then(hit)
        return ~hit if neg else hit

    def in_array(self, item: pl.Expr, arr: pl.Expr, neg: bool) -> pl.Expr:
        has = pl.when(item.is_not_null() & arr.is_not_null()).then(arr.list.contains(item))
        return ~has if neg else has

    def string_fn(self, name: str, s: pl.Expr, texts: list[pl.Expr], cs: bool) -> pl.Expr:
        if not cs:
            s = s.str.to_lowercase()
            texts = [t.str.to_lowercase() for t in texts]
        t = texts[0]
        if name == "equals":
            return self.in_values(s, texts, False) if len(texts) > 1 else s == t
        if name == "notequalto":
            return s != t
        base = name.removeprefix("doesnot")
        if base in ("startwith", "startswith"):
            e = s.str.starts_with(t)
        elif base in ("endwith", "endswith"):
            e = s.str.ends_with(t)
        else:
            e = s.str.contains(t, literal=True)
        e = pl.when(s.is_not_null() & t.is_not_null()).then(e)
        return ~e if name.startswith("doesnot") else e

    def like(self, s: pl.Expr, pattern: str) -> pl.Expr:
        rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
        return s.str.contains(f"(?s)^{rx}$")

    def regex_match(self, s: pl.Expr, pattern: str) -> pl.Expr:
        return s.str.contains(pattern)

    def regex_group(self, s: pl.Expr, pattern: str, group: int) -> pl.Expr:
        return s.str.extract(pattern, group)

    # lists ------------------------------------------------------------------------------------------------------------
    def _no_capture(self, cap: bool) -> None:
        if cap:
            raise CompileError(
                "the Polars engine cannot evaluate a condition on array elements that reads the enclosing row "
                "(^ or an outer variable); use the DuckDB engine"
            )

    def list_filter(self, arr: pl.Expr, var: pl.Expr, body: pl.Expr, cap: bool) -> pl.Expr:
        self._no_capture(cap)
        return arr.list.eval(pl.element().filter(body.fill_null(False)))

    def list_transform(self, arr: pl.Expr, var: pl.Expr, body: pl.Expr, cap: bool) -> pl.Expr:
        self._no_capture(cap)
        return arr.list.eval(body)

    def list_len(self, arr: pl.Expr) -> pl.Expr:
        return arr.list.len()

    def list_any(self, arr: pl.Expr, var: pl.Expr, body: pl.Expr, cap: bool) -> pl.Expr:
        self._no_capture(cap)
        return arr.list.eval(body.fill_null(False)).list.any()

    def list_all(self, arr: pl.Expr, var: pl.Expr, body: pl.Expr | None, cap: bool) -> pl.Expr:
        if body is None:
            return pl.lit(True)
        self._no_capture(cap)
        return arr.list.eval(body.fill_null(False)).list.all().fill_null(True)

    def list_flatten(self, arr: pl.Expr) -> pl.Expr:
        return arr.list.eval(pl.element().explode())

    def list_distinct(self, arr: pl.Expr) -> pl.Expr:
        return arr.list.unique()

    def list_first(self, arr: pl.Expr) -> pl.Expr:
        return arr.list.get(0, null_on_oob=True)

    def list_intersect(self, a: pl.Expr, b: pl.Expr) -> pl.Expr:
        return a.list.set_intersection(b)

    def list_setop(self, name: str, a: pl.Expr, b: pl.Expr) -> pl.Expr:
        valid = a.is_not_null() & b.is_not_null()
        if name == "intersects":
            return pl.when(valid).then(a.list.set_intersection(b).list.len() > 0)
        if name == "subsetof":
            return pl.when(valid).then(a.list.set_difference(b).list.len() == 0)
        return pl.when(valid).then(b.list.set_difference(a).list.len() == 0)

    def list_agg(self, fn: str, vals: pl.Expr) -> pl.Expr:
        if fn == "sum":
            return vals.list.sum().fill_null(0)
        e = {"avg": vals.list.mean, "min": vals.list.min, "max": vals.list.max}[fn]()
        return e

    def list_top(self, arr: pl.Expr, var: pl.Expr, key: pl.Expr, n: int, desc: bool, cap: bool) -> pl.Expr:
        self._no_capture(cap)
        return arr.list.eval(
            pl.element().sort_by(key, descending=desc, nulls_last=True, maintain_order=True).head(n)
        )

    def map_get(self, m: pl.Expr, key: pl.Expr) -> pl.Expr:
        if not self.is_constant(key):
            self._no_capture(True)
        hit = m.list.eval(pl.element().filter(pl.element().struct.field("key") == key))
        return hit.list.get(0, null_on_oob=True).struct.field("value")

    def map_part(self, m: pl.Expr, part: str) -> pl.Expr:
        return m.list.eval(pl.element().struct.field(part))

    # event aggregates -------------------------------------------------------------------------------------------------
    def agg(self, fn: str, val: pl.Expr | None, cond: pl.Expr | None) -> pl.Expr:
        # Element-wise conditions then plain aggregations (no ``filter`` inside the aggregation context): Polars
        # evaluates these vectorized over the whole column, not group by group.
        if fn == "bool_or":
            return (cond if cond is not None else pl.lit(True)).any()
        if fn == "bool_and":
            return cond.all()
        if fn == "count":
            return pl.len() if cond is None else cond.cast(pl.Int64).sum()
        v = val if cond is None else pl.when(cond).then(val)
        return {"sum": v.sum, "avg": v.mean, "min": v.min, "max": v.max}[fn]()

    def agg_ref(self, agg: pl.Expr, kind: str, needs_profile: bool) -> pl.Expr:
        name = ("b_" if needs_profile else "a_") + _h(agg)
        (self.out.profile_aggregates if needs_profile else self.out.aggregates)[name] = agg.alias(name)
        ref = pl.col(name)
        if kind in _DEFAULTS:
            d = _DEFAULTS[kind]
            return ref.fill_null(pl.lit(d) if isinstance(d, bool) else pl.lit(d, dtype=pl.Int64))
        return ref

    def chain(self, ts: pl.Expr, conds: list[pl.Expr], counts: list[int], needs_profile: bool) -> pl.Expr:
        # Greedy matching inside the group: each step's match is its n-th event strictly after the previous one.
        t: pl.Expr | None = None
        for c, n in zip(conds, counts, strict=True):
            sel = c & ts.is_not_null()
            if t is not None:
                sel = sel & (ts > t)
            hits = ts.filter(sel)
            t = hits.min() if n == 1 else pl.when(hits.len() >= n).then(hits.bottom_k(n).max())
        assert t is not None
        return self.agg_ref(t.is_not_null(), "bool_or", needs_profile)


def compile_definition(query: Any, schema: Schema, evaluation_time: datetime) -> CompiledPolars:
    """Compile a segment definition (an ``ast.Query`` or a checked query) to Polars expressions."""
    backend = PolarsBackend()
    backend.out.predicate = Lowering(backend, schema, evaluation_time).predicate(_query_of(query))
    return backend.out


__all__ = ["CompileError", "CompiledPolars", "compile_definition"]
