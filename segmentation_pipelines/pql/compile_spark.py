"""PQL to Spark SQL: the lowering's plan (``pql.lowering``) as sqlglot trees, rendered with a Spark dialect.

The trees are those of ``compile_sql`` (``SparkBackend`` subclasses ``SqlBackend``) except where DuckDB and Spark
differ in *meaning*, not only in spelling:

* ordered list aggregates (``array_agg(v ORDER BY ts)``): Spark's ``collect_list`` has no order, so the values are
  collected beside their timestamp and sorted with a comparator (nulls last, as DuckDB), and no selected event
  gives a missing list (``collect_list`` gives an empty one);
* the whole event row of ``head()`` / ``xEvent.filter(...)`` is ``STRUCT(e.*)``;
* ``topN`` / ``bottomN`` sort with a comparator lambda (Spark cannot order structs holding maps);
* ``sum`` / ``average`` of a list are ``aggregate(...)`` folds skipping nulls (DuckDB's ``list_sum``/``list_avg``).

What is only spelling is the dialect (:class:`SparkDialect`, declarative ``TRANSFORMS`` on sqlglot's Spark
generator): timestamp truncation is ``DATE_TRUNC`` (Spark's ``TRUNC`` returns a date), and the array functions
whose null handling differs (``array_contains``, ``arrays_overlap``, ``array_distinct``, ``flatten``, ``@>``) are
written so that they give DuckDB's answers.

What Spark cannot express is refused here with the construct named (:func:`refusal`): truncation to decades,
centuries and millennia (Spark's ``date_trunc`` stops at years), and the RE2 regular-expression syntax Java's
regex engine reads differently (``(?P<name>...)``, POSIX classes ``[[:alpha:]]``, the ``(?U)`` flag).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlglot import exp
from sqlglot.dialects.spark import Spark
from sqlglot.generators.spark import SparkGenerator

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.compile_sql import CompiledSQL, SqlBackend
from segmentation_pipelines.pql.lowering import CompileError, Lowering, query_of
from segmentation_pipelines.pql.schema import Schema

# Truncation units of Spark's DATE_TRUNC (the lowering also emits decade, century and millennium).
TRUNC_UNITS = {"millisecond", "second", "minute", "hour", "day", "week", "month", "year"}
# RE2 syntax that Java's regex engine (Spark's RLIKE) reads differently or rejects.
_RE2_ONLY = [
    ("(?P<", "Python-style named groups (?P<name>...)"),
    ("[[:", "POSIX character classes [[:...:]]"),
    ("(?U", "the (?U) flag (ungreedy in RE2, Unicode classes in Java)"),
]


def _v(name: str) -> exp.Identifier:
    return exp.to_identifier(name)


def _dot(e: exp.Expression, name: str) -> exp.Dot:
    return exp.Dot(this=e, expression=exp.to_identifier(name))


def _fn(name: str, *args: exp.Expression) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _lam(body: exp.Expression, *names: str) -> exp.Lambda:
    return exp.Lambda(this=body, expressions=[_v(n) for n in names])


def _int(i: int) -> exp.Expression:
    return exp.Literal.number(i) if i >= 0 else exp.Neg(this=exp.Literal.number(-i))


def _nulls_last_cmp(
    a: exp.Expression, b: exp.Expression, then: exp.Expression, desc: bool = False
) -> exp.Case:
    """A comparator value of keys ``a``/``b`` (-1, 0, 1): nulls last in both directions, ``then`` on ties."""
    lt, gt = (exp.GT, exp.LT) if desc else (exp.LT, exp.GT)
    return exp.Case(
        ifs=[
            exp.If(this=exp.and_(a.is_(exp.null()), b.is_(exp.null())), true=then),
            exp.If(this=a.copy().is_(exp.null()), true=_int(1)),
            exp.If(this=b.copy().is_(exp.null()), true=_int(-1)),
            exp.If(this=lt(this=a.copy(), expression=b.copy()), true=_int(-1)),
            exp.If(this=gt(this=a.copy(), expression=b.copy()), true=_int(1)),
        ],
        default=then,
    )


def ordered_list(value: exp.Expression, key: exp.Expression, cond: exp.Expression | None) -> exp.Expression:
    """DuckDB's ``array_agg(value ORDER BY key) [FILTER (WHERE cond)]`` on Spark: ``collect_list`` has no order, so
    the values are sorted after collection (by themselves when they are the key, else collected beside their key
    and sorted with a comparator), nulls last; no selected row gives a missing list (``collect_list``: empty)."""

    def collect(v: exp.Expression) -> exp.Expression:
        agg: exp.Expression = exp.ArrayAgg(this=v)
        return agg if cond is None else exp.Filter(this=agg, expression=exp.Where(this=cond.copy()))

    if value == key:
        values: exp.Expression = _fn("ARRAY_SORT", collect(value.copy()))
    else:
        # The (key, value) struct is never null, so collect_list keeps the rows whose value is null.
        pair = exp.Struct(
            expressions=[
                exp.PropertyEQ(this=_v("t"), expression=key.copy()),
                exp.PropertyEQ(this=_v("v"), expression=value.copy()),
            ]
        )
        left, right = _v("sp_l"), _v("sp_r")
        cmp = _nulls_last_cmp(_dot(left, "t"), _dot(right, "t"), exp.Literal.number(0))
        ordered = _fn("ARRAY_SORT", collect(pair), _lam(cmp, "sp_l", "sp_r"))
        values = exp.Transform(this=ordered, expression=_lam(_dot(_v("sp_p"), "v"), "sp_p"))
    return exp.If(
        this=exp.EQ(this=exp.ArraySize(this=values.copy()), expression=exp.Literal.number(0)),
        true=exp.null(),
        false=values,
    )


class SparkBackend(SqlBackend):
    """``SqlBackend`` with the constructs whose DuckDB form means something else on Spark."""

    def __init__(self) -> None:
        super().__init__()
        self.node: ast.Node | None = None

    def trunc(self, e: exp.Expression, unit: str) -> exp.Expression:
        if unit not in TRUNC_UNITS:
            raise CompileError(f"truncation to {unit} is not supported on Spark (date_trunc stops at years)")
        return super().trunc(e, unit)

    def _check_regex(self, pattern: str) -> None:
        for token, what in _RE2_ONLY:
            if token in pattern:
                raise CompileError(
                    f"regular expression {pattern!r} uses {what}, which is not supported on Spark"
                )

    def like(self, s: exp.Expression, pattern: str) -> exp.Expression:
        # Spark's LIKE escapes with a backslash by default; DuckDB's LIKE has no escape character: a pattern with a
        # backslash names another escape character, one it does not contain.
        like = exp.Like(this=s, expression=exp.Literal.string(pattern))
        if "\\" not in pattern:
            return like
        esc = next((c for c in "!#~^|@" if c not in pattern), None)
        if esc is None:
            raise CompileError(f"like pattern {pattern!r} leaves no escape character free on Spark")
        return exp.Escape(this=like, expression=exp.Literal.string(esc))

    def regex_match(self, s: exp.Expression, pattern: str) -> exp.Expression:
        self._check_regex(pattern)
        return super().regex_match(s, pattern)

    def regex_group(self, s: exp.Expression, pattern: str, group: int) -> exp.Expression:
        self._check_regex(pattern)
        return super().regex_group(s, pattern, group)

    def event_row(self) -> exp.Expression:
        return exp.Struct(expressions=[exp.Column(this=exp.Star(), table=exp.to_identifier("e"))])

    def agg_list(
        self, val: exp.Expression, ts: exp.Expression, cond: exp.Expression | None
    ) -> exp.Expression:
        return ordered_list(val, ts, cond)

    def list_agg(self, fn: str, vals: exp.Expression) -> exp.Expression:
        a, x = _v("sp_a"), _v("sp_x")
        if fn in ("min", "max"):
            return _fn("ARRAY_MIN" if fn == "min" else "ARRAY_MAX", vals)
        if fn == "sum":
            # NULL + x is NULL: the fold keeps the running sum (or starts it) on nulls; no value at all: 0.
            step = exp.Coalesce(
                this=exp.Add(this=a, expression=x),
                expressions=[a.copy(), exp.cast(x.copy(), exp.DataType.build("DOUBLE"))],
            )
            folded = _fn(
                "AGGREGATE",
                vals,
                exp.cast(exp.null(), exp.DataType.build("DOUBLE")),
                _lam(step, "sp_a", "sp_x"),
            )
            return self.coalesce(folded, exp.Literal.number(0))
        # average: a (sum, count) fold over the non-null values; none: null.
        zero = exp.Struct(
            expressions=[
                exp.PropertyEQ(
                    this=_v("s"), expression=exp.cast(exp.Literal.number(0), exp.DataType.build("DOUBLE"))
                ),
                exp.PropertyEQ(
                    this=_v("n"), expression=exp.cast(exp.Literal.number(0), exp.DataType.build("BIGINT"))
                ),
            ]
        )
        add = exp.Struct(
            expressions=[
                exp.PropertyEQ(this=_v("s"), expression=exp.Add(this=_dot(a, "s"), expression=x.copy())),
                exp.PropertyEQ(
                    this=_v("n"),
                    expression=exp.Add(this=_dot(a.copy(), "n"), expression=exp.Literal.number(1)),
                ),
            ]
        )
        step = exp.If(this=x.copy().is_(exp.null()), true=a.copy(), false=add)
        fin = exp.If(
            this=exp.EQ(this=_dot(a.copy(), "n"), expression=exp.Literal.number(0)),
            true=exp.null(),
            false=exp.Div(this=_dot(a.copy(), "s"), expression=_dot(a.copy(), "n")),
        )
        return _fn("AGGREGATE", vals, zero, _lam(step, "sp_a", "sp_x"), _lam(fin, "sp_a"))

    def list_top(
        self, arr: exp.Expression, var: exp.Expression, key: exp.Expression, n: int, desc: bool, cap: bool
    ) -> exp.Expression:
        # Keyed by (key, original position): null keys last in both directions, ties in the array's order.
        keyed = exp.Transform(
            this=arr,
            expression=exp.Lambda(
                this=exp.Struct(
                    expressions=[
                        exp.PropertyEQ(this=_v("k"), expression=key),
                        exp.PropertyEQ(this=_v("i"), expression=_v("sp_i")),
                        exp.PropertyEQ(this=_v("v"), expression=var.copy()),
                    ]
                ),
                expressions=[var.copy(), _v("sp_i")],
            ),
        )
        left, right = _v("sp_l"), _v("sp_r")
        by_pos = _nulls_last_cmp(_dot(left, "i"), _dot(right, "i"), exp.Literal.number(0))
        cmp = _nulls_last_cmp(_dot(left.copy(), "k"), _dot(right.copy(), "k"), by_pos, desc=desc)
        ordered = _fn("ARRAY_SORT", keyed, _lam(cmp, "sp_l", "sp_r"))
        top = _fn("SLICE", ordered, exp.Literal.number(1), exp.Literal.number(n))
        return exp.Transform(this=top, expression=_lam(_dot(_v("sp_y"), "v"), "sp_y"))


# --- the dialect -------------------------------------------------------------------------------------------------


def _null_if_either(a: exp.Expression, b: exp.Expression, then: exp.Expression) -> exp.Expression:
    return exp.Case(
        ifs=[exp.If(this=exp.or_(a.copy().is_(exp.null()), b.copy().is_(exp.null())), true=exp.null())],
        default=then,
    )


def _non_null(arr: exp.Expression) -> exp.Expression:
    return exp.ArrayFilter(this=arr.copy(), expression=_lam(exp.Not(this=_v("sp_n").is_(exp.null())), "sp_n"))


def _array_contains(self: SparkGenerator, e: exp.ArrayContains) -> str:
    # DuckDB: no match is FALSE even when the array holds nulls (Spark: NULL); a null array or item is NULL.
    found = exp.Coalesce(
        this=exp.Anonymous(this="ARRAY_CONTAINS", expressions=[e.this, e.expression]),
        expressions=[exp.false()],
    )
    return self.sql(_null_if_either(e.this, e.expression, found))


def _arrays_overlap(self: SparkGenerator, e: exp.ArrayOverlaps) -> str:
    # DuckDB ignores nulls (no common non-null element: FALSE; Spark: NULL when either side holds a null).
    found = exp.Coalesce(this=_fn("ARRAYS_OVERLAP", e.this, e.expression), expressions=[exp.false()])
    return self.sql(_null_if_either(e.this, e.expression, found))


def _contains_all(self: SparkGenerator, e: exp.ArrayContainsAll) -> str:
    # Every non-null element of the right array is in the left one (DuckDB's list_has_all).
    missing = exp.ArraySize(this=_fn("ARRAY_EXCEPT", _non_null(e.expression), e.this.copy()))
    return self.sql(
        _null_if_either(e.this, e.expression, exp.EQ(this=missing, expression=exp.Literal.number(0)))
    )


def _ordered(e: exp.Expression) -> tuple[exp.Expression, exp.Expression, exp.Expression | None] | None:
    """(value, key, cond) of ``array_agg(value ORDER BY key) [FILTER (WHERE cond)]``, else None."""
    cond = None
    if isinstance(e, exp.Filter):
        cond, e = e.expression.this, e.this
    if isinstance(e, exp.ArrayAgg) and isinstance(e.this, exp.Order) and len(e.this.expressions) == 1:
        return e.this.this, e.this.expressions[0].this, cond
    return None


def _filter_sql(self: SparkGenerator, e: exp.Filter) -> str:
    parts = _ordered(e)
    return self.sql(ordered_list(*parts)) if parts else self.filter_sql(e)


def _array_agg_sql(self: SparkGenerator, e: exp.ArrayAgg) -> str:
    parts = _ordered(e)
    return self.sql(ordered_list(*parts)) if parts else self.func("COLLECT_LIST", e.this)


class SparkDialect(Spark):
    """sqlglot's Spark dialect, with the renderings whose Spark default means something else than DuckDB's."""

    class Generator(SparkGenerator):
        TRANSFORMS = {
            **SparkGenerator.TRANSFORMS,
            exp.Filter: _filter_sql,
            exp.ArrayAgg: _array_agg_sql,
            exp.DateTrunc: lambda self, e: self.func(
                "DATE_TRUNC", exp.Literal.string(e.text("unit").upper()), e.this
            ),
            exp.ArrayContains: _array_contains,
            exp.ArrayOverlaps: _arrays_overlap,
            exp.ArrayContainsAll: _contains_all,
            # DuckDB's list_distinct and list_intersect drop nulls; its flatten skips null inner lists.
            exp.ArrayDistinct: lambda self, e: self.func("ARRAY_DISTINCT", _non_null(e.this)),
            exp.ArrayIntersect: lambda self, e: self.func(
                "ARRAY_INTERSECT", _non_null(e.expressions[0]), *e.expressions[1:]
            ),
            exp.Flatten: lambda self, e: self.func("FLATTEN", _non_null(e.this)),
        }


DIALECT = SparkDialect


def sql(e: exp.Expression, pretty: bool = False) -> str:
    """``e`` rendered as Spark SQL."""
    return e.sql(dialect=SparkDialect, pretty=pretty)


def compile_definition(query: Any, schema: Schema, evaluation_time: datetime) -> CompiledSQL:
    """Compile a segment definition for Spark (the same plan as ``compile_sql``; render with :func:`sql`).
    Raises ``CompileError`` naming the construct Spark cannot express."""
    q = query_of(query)
    backend = SparkBackend()
    return backend.finish(Lowering(backend, schema, evaluation_time).predicate(q))


def refusal(query: Any, schema: Schema, evaluation_time: datetime) -> CompileError | None:
    """The reason Spark cannot evaluate ``query``, else None (for the checks of definitions on a Spark sandbox)."""
    try:
        compile_definition(query, schema, evaluation_time)
    except CompileError as exc:
        return exc
    return None


__all__ = ["DIALECT", "CompileError", "SparkBackend", "SparkDialect", "compile_definition", "refusal", "sql"]
