"""PQL to SQL as sqlglot syntax trees (rendered for DuckDB; built from typed sqlglot nodes wherever sqlglot has one).

No SQL text is ever parsed from user input: literals are ``exp.Literal`` / ``exp.Boolean`` nodes, field names are
quoted identifiers, so no expression can inject SQL. The walk itself (names, scopes, event aggregates) is
``pql.lowering.Lowering``; this module says how each construct is written in SQL.

The compiled form (:class:`CompiledSQL`) is a boolean ``predicate`` over one row per profile, where

* ``p."<field>"`` are the profile's columns,
* ``ev."a_<hash>"`` / ``evp."b_<hash>"`` are event aggregates (``aggregates`` / ``profile_aggregates``: computed by
  ``SELECT e.profile_id, <agg> AS a_<hash> ... FROM events e GROUP BY e.profile_id``; the ``b_`` ones read profile
  fields too and run over ``events e JOIN profiles p``),
* ``"s_<hash>"`` are the ``inSegment`` columns (``segments``: audience id -> column, true when a member).

Aggregate names are hashes of their rendering, so the same sub-expression in many definitions is computed once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlglot import exp

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.lowering import (
    EMPTY_AGGREGATE,
    INTERVAL_STEPS,
    CompileError,
    Lowering,
    query_of,
)
from segmentation_pipelines.pql.lowering.aggregates import EventAggregate
from segmentation_pipelines.pql.lowering.backend import Backend
from segmentation_pipelines.pql.schema import Schema

DIALECT = "duckdb"
EVENT_LIST = "__events"


@dataclass
class CompiledSQL:
    predicate: exp.Expression
    aggregates: dict[str, exp.Expression] = field(default_factory=dict)
    profile_aggregates: dict[str, exp.Expression] = field(default_factory=dict)
    segments: dict[str, str] = field(default_factory=dict)
    uses_event_list: bool = (
        False  # profile aggregates read p."__events" (every event of the profile, as a list)
    )
    # What each aggregate of ``aggregates`` and ``profile_aggregates`` computes, as the lowering described it
    # (``EventAggregate.expression`` is the tree above): an engine plans its own query from these.
    specs: dict[str, EventAggregate[exp.Expression]] = field(default_factory=dict)

    def sql(self, dialect: str = DIALECT, pretty: bool = False) -> str:
        """The whole evaluation of this one definition as a standalone query (for ``explain``)."""
        ev = exp.select(exp.column("profile_id", table="e"))
        for name, agg in self.aggregates.items():
            ev = ev.select(exp.alias_(agg, name, quoted=True))
        ev = ev.from_(exp.table_("events", alias="e")).group_by(exp.column("profile_id", table="e"))
        q = exp.select(exp.column("profile_id", table="p")).from_(exp.table_("profiles", alias="p"))
        q = q.with_("ev", as_=ev).join(
            exp.table_("ev"),
            on=exp.column("profile_id", table="ev").eq(exp.column("profile_id", table="p")),
            join_type="left",
        )
        if self.profile_aggregates:
            evp = exp.select(exp.column("profile_id", table="e"))
            for name, agg in self.profile_aggregates.items():
                evp = evp.select(exp.alias_(agg, name, quoted=True))
            evp = (
                evp.from_(exp.table_("events", alias="e"))
                .join(
                    exp.table_("profiles", alias="p"),
                    on=exp.column("profile_id", table="p").eq(exp.column("profile_id", table="e")),
                )
                .group_by(exp.column("profile_id", table="e"))
            )
            q = q.with_("evp", as_=evp).join(
                exp.table_("evp"),
                on=exp.column("profile_id", table="evp").eq(exp.column("profile_id", table="p")),
                join_type="left",
            )
        for audience, col in self.segments.items():
            seg = (
                exp.select(exp.column("profile_id"), exp.alias_(exp.true(), col, quoted=True))
                .from_(exp.table_("memberships"))
                .where(exp.column("audience_id").eq(exp.Literal.string(audience)))
                .distinct()
            )
            q = q.join(seg.subquery(col), using=["profile_id"], join_type="left")
        return q.where(self.predicate).sql(dialect, pretty=pretty)


def _h(e: exp.Expression) -> str:
    return hashlib.sha1(e.sql(DIALECT).encode()).hexdigest()[:16]


def event_aggregate_name(agg: exp.Expression) -> str:
    """The column name of an aggregate over the events (``ev``): the hash of its rendering, so that equal
    aggregates of different definitions of a batch are one column."""
    return "a_" + _h(agg)


# The meta key of an equality ``column = literal`` (either side): ``(column rendered, literal)``. A condition holding
# only on events with one value of a column says so, for the engine's typed branches (engine/event_aggregates_sql.py).
REQUIRES = "requires"


def _note_requirement(eq: exp.EQ) -> exp.EQ:
    for col, lit in ((eq.this, eq.expression), (eq.expression, eq.this)):
        if isinstance(col, exp.Column) and isinstance(lit, exp.Literal):
            eq.meta[REQUIRES] = (col.sql(DIALECT), lit)
            break
    return eq


# The meta key of ``arr[field = "v"].count() > 0``: ``(array column, element variable, field, literal)``.
SOME_ITEM = "some_item"


def some_item(c: exp.Expression) -> tuple[exp.Expression, exp.Identifier, exp.Identifier, exp.Literal] | None:
    """The parts of a comparison that holds exactly when some item of an array column has a field equal to a
    literal (noted by :meth:`SqlBackend.some_item`), as copies; else None."""
    parts = c.meta.get(SOME_ITEM)
    return None if parts is None else tuple(p.copy() for p in parts)


def requirement(c: exp.Expression) -> tuple[str, exp.Literal] | None:
    """``(column, literal)`` when ``c`` is an equality of the compiler's ``column = literal``, else None."""
    c = c.unnest() if isinstance(c, exp.Paren) else c
    return c.meta.get(REQUIRES)


class SqlBackend(Backend[exp.Expression]):
    """How each construct is written as a sqlglot tree."""

    def __init__(self) -> None:
        self.out = CompiledSQL(exp.false())

    def finish(self, predicate: exp.Expression) -> CompiledSQL:
        """The compiled definition: ``predicate`` and the aggregates it reads (an aggregate a comparison with a
        constant was turned into a bit of, ``any_event``, is left out when nothing else reads it)."""
        out = self.out
        out.predicate = predicate
        read = {c.name for c in predicate.find_all(exp.Column) if c.table in ("ev", "evp")}
        out.aggregates = {n: a for n, a in out.aggregates.items() if n in read}
        out.profile_aggregates = {n: a for n, a in out.profile_aggregates.items() if n in read}
        out.specs = {n: a for n, a in out.specs.items() if n in read}
        return out

    # literals and columns ---------------------------------------------------------------------------------------------
    def lit(self, value: Any, kind: str) -> exp.Expression:
        if kind == "boolean":
            return exp.Boolean(this=bool(value))
        if kind == "string":
            return exp.Literal.string(str(value))
        if kind == "integer":
            return exp.Literal.number(int(value))
        return exp.cast(exp.Literal.number(repr(float(value))), exp.DataType.build("DOUBLE"))

    def is_constant(self, e: exp.Expression) -> bool:
        return not any(
            True for _ in e.find_all(exp.Column, exp.Identifier) if not isinstance(_.parent, exp.DataType)
        )

    def ts_lit(self, t: datetime) -> exp.Expression:
        return exp.cast(exp.Literal.string(t.isoformat(sep=" ")), exp.DataType.build("TIMESTAMP"))

    def list_lit(self, items: list[exp.Expression], t: str) -> exp.Expression:
        return exp.Array(expressions=items)

    def column(self, kind: str, name: str, via_event: bool = False) -> exp.Expression:
        return exp.column(name, table="p" if kind == "profile" else "e", quoted=True)

    def field(self, e: exp.Expression, name: str) -> exp.Expression:
        base = e if isinstance(e, exp.Column | exp.Dot | exp.Identifier) else exp.Paren(this=e)
        return exp.Dot(this=base, expression=exp.to_identifier(name, quoted=True))

    def lambda_var(self, depth: int) -> exp.Expression:
        return exp.to_identifier(f"x{depth}")

    def event_list(self, node: ast.Node) -> exp.Expression:
        self.out.uses_event_list = True
        return exp.column(EVENT_LIST, table="p", quoted=True)

    # scalar operators ---------------------------------------------------------------------------------------------
    def cmp(self, op: str, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        cls = {"=": exp.EQ, "!=": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}[op]
        e = cls(this=a, expression=b)
        return _note_requirement(e) if op == "=" else e

    def gt(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return exp.GT(this=a, expression=b)

    def and_(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return exp.and_(a, b, copy=False)

    def or_(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return exp.Paren(this=exp.or_(a, b, copy=False))

    def not_(self, a: exp.Expression) -> exp.Expression:
        return exp.Not(this=exp.Paren(this=a))

    def coalesce_false(self, e: exp.Expression) -> exp.Expression:
        return exp.Coalesce(this=e, expressions=[exp.false()])

    def coalesce(self, e: exp.Expression, d: exp.Expression) -> exp.Expression:
        return exp.Coalesce(this=e, expressions=[d])

    def is_not_null(self, e: exp.Expression) -> exp.Expression:
        return exp.Not(this=exp.Is(this=e, expression=exp.Null()))

    def arith(self, op: str, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        if op == "/":
            num = exp.cast(a, exp.DataType.build("DOUBLE"))
            return exp.Paren(
                this=exp.Div(this=num, expression=exp.Nullif(this=b, expression=exp.Literal.number(0)))
            )
        if op == "%":
            return exp.Paren(
                this=exp.Mod(this=a, expression=exp.Nullif(this=b, expression=exp.Literal.number(0)))
            )
        cls = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul}[op]
        return exp.Paren(this=cls(this=a, expression=b))

    def neg(self, a: exp.Expression) -> exp.Expression:
        return exp.Neg(this=exp.Paren(this=a))

    def concat(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return exp.DPipe(this=a, expression=b)

    def if_(self, c: exp.Expression, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return exp.If(this=c, true=a, false=b)

    def to_ts(self, e: exp.Expression) -> exp.Expression:
        return exp.cast(e, exp.DataType.build("TIMESTAMP"))

    def trunc(self, e: exp.Expression, unit: str) -> exp.Expression:
        return exp.DateTrunc(this=e, unit=exp.Literal.string(unit.upper()))

    def add_interval(self, e: exp.Expression, amount: int, unit: str) -> exp.Expression:
        mult, u = INTERVAL_STEPS[unit]
        return exp.Paren(
            this=exp.Add(
                this=e,
                expression=exp.Interval(this=exp.Literal.string(str(amount * mult)), unit=exp.var(u.upper())),
            )
        )

    def date_part(self, part: str, e: exp.Expression) -> exp.Expression:
        cls = {"month": exp.Month, "year": exp.Year, "dayofmonth": exp.Day}[part]
        return cls(this=e)

    def segment(self, audience_id: str) -> exp.Expression:
        col = "s_" + hashlib.sha1(audience_id.encode()).hexdigest()[:16]
        self.out.segments[audience_id] = col
        return exp.Coalesce(this=exp.column(col, quoted=True), expressions=[exp.false()])

    # membership and strings ---------------------------------------------------------------------------------------
    def in_values(self, item: exp.Expression, items: list[exp.Expression], neg: bool) -> exp.Expression:
        e = exp.In(this=item, expressions=items)
        return exp.Not(this=exp.Paren(this=e)) if neg else e

    def in_array(self, item: exp.Expression, arr: exp.Expression, neg: bool) -> exp.Expression:
        has = exp.ArrayContains(this=arr, expression=item)
        if not neg:
            return has
        return exp.and_(self.is_not_null(item), self.is_not_null(arr), exp.Not(this=has), copy=False)

    def string_fn(
        self, name: str, s: exp.Expression, texts: list[exp.Expression], cs: bool
    ) -> exp.Expression:
        if not cs:
            s = exp.Lower(this=s)
            texts = [exp.Lower(this=t) for t in texts]
        t = texts[0]
        if name == "equals":
            if len(texts) == 1:
                return _note_requirement(exp.EQ(this=s, expression=t))
            return exp.In(this=s, expressions=texts)
        if name == "notequalto":
            return exp.NEQ(this=s, expression=t)
        base = name.removeprefix("doesnot")
        cls = {
            "startwith": exp.StartsWith,
            "startswith": exp.StartsWith,
            "endwith": exp.EndsWith,
            "endswith": exp.EndsWith,
            "contain": exp.Contains,
            "contains": exp.Contains,
        }[base]
        e = cls(this=s, expression=t)
        return exp.Not(this=e) if name.startswith("doesnot") else e

    def like(self, s: exp.Expression, pattern: str) -> exp.Expression:
        return exp.Like(this=s, expression=exp.Literal.string(pattern))

    def regex_match(self, s: exp.Expression, pattern: str) -> exp.Expression:
        return exp.RegexpLike(this=s, expression=exp.Literal.string(pattern))

    def regex_group(self, s: exp.Expression, pattern: str, group: int) -> exp.Expression:
        found = exp.RegexpLike(this=s, expression=exp.Literal.string(pattern))
        extract = exp.RegexpExtract(
            this=s, expression=exp.Literal.string(pattern), group=exp.Literal.number(group)
        )
        return exp.If(this=found, true=extract, false=exp.Null())

    # lists ----------------------------------------------------------------------------------------------------------
    def _lambda(self, var: exp.Expression, body: exp.Expression) -> exp.Lambda:
        return exp.Lambda(this=body, expressions=[var])

    def list_filter(
        self, arr: exp.Expression, var: exp.Expression, body: exp.Expression, cap: bool
    ) -> exp.Expression:
        return exp.ArrayFilter(this=arr, expression=self._lambda(var, body))

    def list_transform(
        self, arr: exp.Expression, var: exp.Expression, body: exp.Expression, cap: bool
    ) -> exp.Expression:
        return exp.Transform(this=arr, expression=self._lambda(var, body))

    def list_len(self, arr: exp.Expression) -> exp.Expression:
        return exp.ArraySize(this=arr)

    def list_any(
        self, arr: exp.Expression, var: exp.Expression, body: exp.Expression, cap: bool
    ) -> exp.Expression:
        return exp.GT(
            this=exp.ArraySize(this=self.list_filter(arr, var, body, cap)), expression=exp.Literal.number(0)
        )

    def list_all(
        self, arr: exp.Expression, var: exp.Expression, body: exp.Expression | None, cap: bool
    ) -> exp.Expression:
        if body is None:
            return exp.true()
        failing = self.list_filter(arr, var, exp.Not(this=exp.Paren(this=self.coalesce_false(body))), cap)
        return exp.EQ(
            this=self.coalesce(exp.ArraySize(this=failing), exp.Literal.number(0)),
            expression=exp.Literal.number(0),
        )

    def list_flatten(self, arr: exp.Expression) -> exp.Expression:
        return exp.Flatten(this=arr)

    def list_distinct(self, arr: exp.Expression) -> exp.Expression:
        return exp.ArrayDistinct(this=arr)

    def list_first(self, arr: exp.Expression) -> exp.Expression:
        return exp.Bracket(this=arr, expressions=[exp.Literal.number(0)])

    def list_intersect(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return exp.ArrayIntersect(expressions=[a, b])

    def list_setop(self, name: str, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        if name == "intersects":
            return exp.ArrayOverlaps(this=a, expression=b)
        if name == "subsetof":
            return exp.ArrayContainsAll(this=b, expression=a)
        return exp.ArrayContainsAll(this=a, expression=b)

    def list_agg(self, fn: str, vals: exp.Expression) -> exp.Expression:
        if fn == "sum":
            return self.coalesce(exp.Anonymous(this="list_sum", expressions=[vals]), exp.Literal.number(0))
        return exp.Anonymous(
            this={"avg": "list_avg", "min": "list_min", "max": "list_max"}[fn], expressions=[vals]
        )

    def list_top(
        self, arr: exp.Expression, var: exp.Expression, key: exp.Expression, n: int, desc: bool, cap: bool
    ) -> exp.Expression:
        # Sort (key presence, key, original position): null keys last in both directions (a null field inside a
        # struct sorts as the largest value, so presence leads), ties in the array's order (as Polars' stable sort).
        idx = exp.to_identifier("i_top")
        pos = exp.Neg(this=idx) if desc else idx
        present = self.is_not_null(key.copy()) if desc else exp.Is(this=key.copy(), expression=exp.Null())
        pair = exp.Struct(
            expressions=[
                exp.PropertyEQ(this=exp.to_identifier("n"), expression=present),
                exp.PropertyEQ(this=exp.to_identifier("k"), expression=key),
                exp.PropertyEQ(this=exp.to_identifier("i"), expression=pos),
                exp.PropertyEQ(this=exp.to_identifier("v"), expression=var),
            ]
        )
        keyed = exp.Transform(this=arr, expression=exp.Lambda(this=pair, expressions=[var, idx]))
        ordered = exp.Anonymous(
            this="list_sort",
            expressions=[
                keyed,
                exp.Literal.string("DESC" if desc else "ASC"),
                exp.Literal.string("NULLS LAST"),
            ],
        )
        top = exp.Anonymous(
            this="list_slice", expressions=[ordered, exp.Literal.number(1), exp.Literal.number(n)]
        )
        y = exp.to_identifier("y_top")
        return exp.Transform(
            this=top, expression=self._lambda(y, exp.Dot(this=y, expression=exp.to_identifier("v")))
        )

    def map_get(self, m: exp.Expression, key: exp.Expression) -> exp.Expression:
        x = exp.to_identifier("m_kv")
        hit = self.list_filter(
            m, x, exp.EQ(this=exp.Dot(this=x, expression=exp.to_identifier("key")), expression=key), False
        )
        return exp.Dot(this=exp.Paren(this=self.list_first(hit)), expression=exp.to_identifier("value"))

    def map_part(self, m: exp.Expression, part: str) -> exp.Expression:
        x = exp.to_identifier("m_kv")
        return self.list_transform(m, x, exp.Dot(this=x, expression=exp.to_identifier(part)), False)

    # event aggregates ---------------------------------------------------------------------------------------------
    def agg(self, fn: str, val: exp.Expression | None, cond: exp.Expression | None) -> exp.Expression:
        if fn == "bool_or":
            return exp.LogicalOr(this=cond if cond is not None else exp.true())
        if fn == "bool_and":
            return exp.LogicalAnd(this=cond)
        if fn == "count":
            return exp.Count(this=exp.Star()) if cond is None else exp.CountIf(this=cond)
        cls = {"sum": exp.Sum, "avg": exp.Avg, "min": exp.Min, "max": exp.Max}[fn]
        e = cls(this=val)
        return e if cond is None else exp.Filter(this=e, expression=exp.Where(this=cond))

    def event_row(self) -> exp.Expression:
        return exp.column("e")

    def agg_first(
        self, row: exp.Expression, ts: exp.Expression, cond: exp.Expression | None
    ) -> exp.Expression:
        # arg_min skips rows whose timestamp is null; no qualifying row: null.
        e = exp.ArgMin(this=row, expression=ts)
        return e if cond is None else exp.Filter(this=e, expression=exp.Where(this=cond))

    def agg_list(
        self, val: exp.Expression, ts: exp.Expression, cond: exp.Expression | None
    ) -> exp.Expression:
        # Ordered by timestamp (ASC: nulls last); no selected row: NULL.
        e = exp.ArrayAgg(this=exp.Order(this=val, expressions=[exp.Ordered(this=ts.copy())]))
        return e if cond is None else exp.Filter(this=e, expression=exp.Where(this=cond))

    def render(self, a: EventAggregate[exp.Expression]) -> exp.Expression:
        """The aggregate as one sqlglot tree (``agg(v) FILTER (WHERE c)``, ``count_if(c)``, ``bool_or(c)`` ...)."""
        if a.fn == "first":
            return self.agg_first(a.value, a.order, a.cond)
        if a.fn == "list":
            return self.agg_list(a.value, a.order, a.cond)
        if a.fn == "timestamps":
            agg = exp.ArrayAgg(this=exp.Order(this=a.value, expressions=[exp.Ordered(this=a.value.copy())]))
            return agg if a.cond is None else exp.Filter(this=agg, expression=exp.Where(this=a.cond))
        return self.agg(a.fn, a.value, a.cond)

    def agg_ref(self, agg: EventAggregate[exp.Expression], needs_profile: bool) -> exp.Expression:
        e = self.render(agg)
        agg.expression = e
        name = "b_" + _h(e) if needs_profile else event_aggregate_name(e)
        (self.out.profile_aggregates if needs_profile else self.out.aggregates)[name] = e
        self.out.specs[name] = agg
        ref = exp.column(name, table="evp" if needs_profile else "ev", quoted=True)
        if agg.fn in EMPTY_AGGREGATE:
            d = EMPTY_AGGREGATE[agg.fn]
            return self.coalesce(ref, exp.Boolean(this=d) if isinstance(d, bool) else exp.Literal.number(d))
        return ref

    def any_event(
        self,
        e: exp.Expression,
        agg: EventAggregate[exp.Expression],
        op: str | None,
        k: exp.Expression | None,
    ) -> exp.Expression:
        # The cheapest aggregate: a bit of the DuckDB mask (the aggregate ``e`` reads is dropped by the engine
        # when no predicate of the batch reads it any more).
        cond = agg.cond.copy() if agg.cond is not None else None
        if op is not None:
            test = self.cmp(op, agg.value.copy(), k.copy())
            cond = test if cond is None else exp.and_(cond, test)
        return self.agg_ref(EventAggregate("bool_or", cond=cond), needs_profile=False)

    def some_item(
        self, e: exp.Expression, arr: exp.Expression, var: exp.Expression, field: str, value: exp.Expression
    ) -> exp.Expression:
        e.meta[SOME_ITEM] = (arr, var, exp.to_identifier(field, quoted=True), value)
        return e

    def chain(
        self, ts: exp.Expression, conds: list[exp.Expression], counts: list[int], needs_profile: bool
    ) -> exp.Expression:
        conds = [exp.and_(c, self.is_not_null(ts), copy=False) for c in conds]

        def ref(fn: str, cond: exp.Expression, value: exp.Expression | None = None) -> exp.Expression:
            return self.agg_ref(EventAggregate(fn, value, cond), needs_profile)

        if len(conds) == 1:
            if counts[0] == 1:
                return ref("bool_or", conds[0])
            return exp.GTE(this=ref("count", conds[0]), expression=exp.Literal.number(counts[0]))

        # Greedy matching (pql.md §0): each step's match is its n-th event strictly after the previous match.
        if counts[0] == 1:
            t = ref("min", conds[0], ts.copy())
        else:
            t = exp.Bracket(
                this=ref("timestamps", conds[0], ts.copy()), expressions=[exp.Literal.number(counts[0] - 1)]
            )
        last = len(conds) - 1
        for i in range(1, len(conds)):
            if i == last and counts[i] == 1:
                latest = ref("max", conds[i], ts.copy())
                return self.coalesce_false(exp.GT(this=latest, expression=t))
            x = exp.to_identifier(f"t{i}")
            after = self.list_filter(
                ref("timestamps", conds[i], ts.copy()), x, exp.GT(this=x, expression=t), True
            )
            t = exp.Bracket(this=after, expressions=[exp.Literal.number(counts[i] - 1)])
        return self.is_not_null(t)


def compile_definition(query: Any, schema: Schema, evaluation_time: datetime) -> CompiledSQL:
    """Compile a segment definition (an ``ast.Query`` or a checked query carrying ``.query``)."""
    q = query_of(query)
    backend = SqlBackend()
    return backend.finish(Lowering(backend, schema, evaluation_time).predicate(q))


def explain(text: str, schema: Schema, evaluation_time: datetime | None = None) -> str:
    """The SQL a definition compiles to (for ``segmentation-pipelines pql explain``)."""
    from datetime import UTC

    from segmentation_pipelines import pql

    query = pql.parse(text)
    now = evaluation_time or datetime.now(UTC)  # explain only: evaluations always pass their time
    return compile_definition(query, schema, now).sql(pretty=True)


__all__ = ["CompileError", "CompiledSQL", "compile_definition", "explain"]
