"""One-pass evaluation on DuckDB: a fresh in-memory database over the Parquet files.

Per batch of definitions (see ``plan``): one ``GROUP BY profile_id`` over the events computes every event aggregate
of every definition of the batch (deduplicated by rendering), it is LEFT JOINed once to the profiles, where each
definition's predicate becomes one boolean column; an UNPIVOT turns the columns into (audience, profile) pairs.
Definitions that read other audiences of the run (``inSegment``) come in later stages and read the earlier
stages' pairs from the same in-memory table.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
from sqlglot import exp

from segmentation_pipelines.engine import plan
from segmentation_pipelines.engine.interrupt import run_interruptible
from segmentation_pipelines.engine.model import EvaluationCancelled, EvaluationRequest, EvaluationResult
from segmentation_pipelines.pql import compile_sql

D = "duckdb"


def _lit(s: str | Path) -> str:
    return exp.Literal.string(str(s)).sql(D)


def _q(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(D)


class _Runner:
    def __init__(self, req: EvaluationRequest):
        self.req = req
        self.con = duckdb.connect()
        self.con.execute(f"SET memory_limit = {_lit(req.memory_limit)}")
        if req.temp_dir is not None:
            Path(req.temp_dir).mkdir(parents=True, exist_ok=True)
            self.con.execute(f"SET temp_directory = {_lit(req.temp_dir)}")
        self.con.execute(f"SET threads = {os.cpu_count() or 1}")
        self.con.execute("SET preserve_insertion_order = false")

        self.timings: dict[str, float] = {}

    def run(self, sql: str, label: str = "other") -> None:
        if self.req.should_cancel is not None and self.req.should_cancel():
            raise EvaluationCancelled("evaluation cancelled")
        t = time.perf_counter()
        run_interruptible(lambda: self.con.execute(sql), self.con.interrupt, self.req.should_cancel)
        self.timings[label] = self.timings.get(label, 0.0) + time.perf_counter() - t

    def say(self, msg: str) -> None:
        if self.req.progress is not None:
            self.req.progress(msg)


def evaluate_duckdb(req: EvaluationRequest) -> EvaluationResult:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    compiled = {
        d.id: compile_sql.compile_definition(d.query, req.schema, req.evaluation_time)
        for d in req.definitions
    }
    timings["compile"] = time.perf_counter() - t0
    stages = plan.stages(req.definitions, req.external_members)
    r = _Runner(req)
    con = r.con
    profiles = f"read_parquet({_lit(req.profiles_path)})"
    events = f"read_parquet({_lit(plan.events_source(req.events_path))}, union_by_name = true)"
    try:
        r.run("CREATE TEMP TABLE members (audience_id VARCHAR, profile_id VARCHAR, is_output BOOLEAN)")
        for audience, path in req.external_members.items():
            r.run(
                f"INSERT INTO members SELECT DISTINCT {_lit(audience)}, CAST(profile_id AS VARCHAR), FALSE "
                f"FROM read_parquet({_lit(path)})"
            )
        t = time.perf_counter()
        for si, stage in enumerate(stages):
            for bi, batch in enumerate(plan.batches([(d.id, compiled[d.id]) for d in stage])):
                r.say(f"stage {si + 1}/{len(stages)}, batch {bi + 1}: {len(batch)} definitions")
                _evaluate_batch(r, batch, profiles, events)
        timings["evaluate"] = time.perf_counter() - t
        t = time.perf_counter()
        out = Path(req.output_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        r.run(
            f"COPY (SELECT audience_id, profile_id FROM members WHERE is_output) "
            f"TO {_lit(tmp)} (FORMAT parquet)",
            "write",
        )
        os.replace(tmp, out)
        counts = dict.fromkeys((d.id for d in req.definitions), 0)
        for aid, n in con.execute(
            "SELECT audience_id, count(*) FROM members WHERE is_output GROUP BY audience_id"
        ).fetchall():
            counts[aid] = n
        total = con.execute(f"SELECT count(*) FROM {profiles}").fetchone()[0]
        timings["write"] = time.perf_counter() - t
        timings.update({f"sql_{k}": v for k, v in r.timings.items()})
        timings["total"] = time.perf_counter() - t0
        return EvaluationResult(out, counts, int(total), timings)
    finally:
        con.close()


BITS_PER_MASK = 62  # bool_or aggregates packed per BIGINT bit mask


_ATOMS = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.In,
    exp.Like,
    exp.RegexpLike,
    exp.StartsWith,
    exp.EndsWith,
    exp.Contains,
    exp.Is,
    exp.ArrayContains,
)


def _element_field_exists(
    node: exp.Expression,
) -> tuple[exp.Expression, exp.Identifier, exp.Identifier, exp.Literal] | None:
    """``arr[field = "v"].count() > 0`` as the compiler writes it
    (``COALESCE(len(list_filter(arr, x -> COALESCE(x.field = 'v', FALSE))), 0) > 0``): the parts, else None."""
    if not (isinstance(node, exp.GT) and node.expression == exp.Literal.number(0)):
        return None
    size = node.this
    if not (isinstance(size, exp.Coalesce) and size.expressions == [exp.Literal.number(0)]):
        return None
    size = size.this
    if not (isinstance(size, exp.ArraySize) and isinstance(size.this, exp.ArrayFilter)):
        return None
    arr, lam = size.this.this, size.this.expression
    if not (isinstance(lam, exp.Lambda) and len(lam.expressions) == 1 and isinstance(arr, exp.Column)):
        return None
    body = lam.this
    if not (isinstance(body, exp.Coalesce) and body.expressions == [exp.false()]):
        return None
    eq = body.this
    if not (
        isinstance(eq, exp.EQ) and isinstance(eq.this, exp.Dot) and isinstance(eq.expression, exp.Literal)
    ):
        return None
    var, field = eq.this.this, eq.this.expression
    if not (
        isinstance(var, exp.Identifier) and var == lam.expressions[0] and isinstance(field, exp.Identifier)
    ):
        return None
    return arr.copy(), var.copy(), field.copy(), eq.expression.copy()


def _share_atoms(
    conds: list[exp.Expression],
    atoms: dict[str, tuple[str, exp.Expression]],
    lists: dict[str, tuple[str, exp.Expression]] | None = None,
) -> list[exp.Expression]:
    """Replace every comparison-like leaf of the conditions by a column of a per-event projection, the same leaf
    (by rendering) across all aggregates of all definitions becoming one column: ``eventType = 'x'`` is then
    evaluated once per event however many definitions test it. With ``lists``, ``arr[field = "v"].count() > 0``
    becomes ``COALESCE(list_contains(l, 'v'), FALSE)`` over one shared ``l = list_transform(arr, x -> x.field)``
    (the same truth value: an element matches iff its field equals the non-null literal; measured: 8 SKU
    conditions 2.5 s → 1.2 s on 20M events) instead of one lambda per condition."""

    def swap(node: exp.Expression) -> exp.Expression:
        found = _element_field_exists(node) if lists is not None else None
        if found is not None:
            arr, var, field, value = found
            values = exp.Anonymous(
                this="list_transform",
                expressions=[arr, exp.Lambda(this=exp.Dot(this=var, expression=field), expressions=[var])],
            )
            key = values.sql(D)
            if key not in lists:
                lists[key] = (f"l{len(lists)}", values)
            node = exp.Coalesce(
                this=exp.Anonymous(
                    this="list_contains", expressions=[exp.column(lists[key][0], table="e"), value]
                ),
                expressions=[exp.false()],
            )
        if isinstance(node, _ATOMS) or found is not None:
            key = node.sql(D)
            if key not in atoms:
                atoms[key] = (f"c{len(atoms)}", node.copy())
            return exp.column(atoms[key][0], table="e")
        return node

    out = []
    for c in conds:
        out.append(
            c.copy().transform(lambda n: swap(n) if not n.find_ancestor(exp.Lambda) else n, copy=False)
        )
    return out


def _event_aggregate_select(aggs: dict[str, exp.Expression], source: str, share: bool = True) -> str:
    """One GROUP BY over the events computing every aggregate. ``bool_or(c)`` aggregates (most event conditions)
    are packed 62 to a ``bit_or`` of a per-event bit mask (one aggregate state per 62 conditions instead of 62);
    the others are written ``agg(CASE WHEN c THEN v END)``; the comparisons they test are computed once per event
    in an inner projection (``share``). The outer projection unpacks the masks under the aggregates' names."""
    packed = [(n, _positive(a.this)) for n, a in aggs.items() if isinstance(a, exp.LogicalOr)]
    others = [(n, _case_form(a)) for n, a in aggs.items() if not isinstance(a, exp.LogicalOr)]
    atoms: dict[str, tuple[str, exp.Expression]] = {}
    lists: dict[str, tuple[str, exp.Expression]] = {}
    if share:
        conds = _share_atoms([c for _, c in packed] + [a for _, a in others], atoms, lists)
        packed = [(n, c) for (n, _), c in zip(packed, conds[: len(packed)], strict=True)]
        others = [(n, a) for (n, _), a in zip(others, conds[len(packed) :], strict=True)]
    inner, outer = [], []
    for m in range(0, len(packed), BITS_PER_MASK):
        chunk = packed[m : m + BITS_PER_MASK]
        # CAST(COALESCE(c, FALSE) AS BIGINT) * 2^i, not CASE WHEN c THEN 2^i ELSE 0 END: the same value (a NULL
        # condition sets no bit), measured ~25% faster for the whole aggregate (no selection vectors per CASE).
        terms = " + ".join(
            f"CAST(COALESCE({c.sql(D)}, FALSE) AS BIGINT) * {1 << i}" for i, (_, c) in enumerate(chunk)
        )
        mask = f"m{m // BITS_PER_MASK}"
        inner.append(f"BIT_OR(CAST({terms} AS BIGINT)) AS {mask}")
        outer.extend(f"({mask} & {1 << i}) <> 0 AS {_q(n)}" for i, (n, _) in enumerate(chunk))
    for n, a in others:
        inner.append(f"{a.sql(D)} AS {_q(n)}")
        outer.append(_q(n))
    if lists:
        cols = ", ".join(f"{a.sql(D)} AS {name}" for name, a in lists.values())
        source = f"(SELECT e.*, {cols} FROM {source}) AS e"
    if atoms:
        cols = ", ".join(f"{a.sql(D)} AS {name}" for name, a in atoms.values())
        source = f"(SELECT e.*, {cols} FROM {source}) AS e"
    return (
        f"SELECT profile_id, {', '.join(outer)} FROM "
        f"(SELECT e.profile_id AS profile_id, {', '.join(inner)} FROM {source} GROUP BY e.profile_id)"
    )


def _positive(c: exp.Expression) -> exp.Expression:
    """Drop ``COALESCE(x, FALSE)`` at positive positions of a condition (under AND/OR only): in a WHEN or FILTER,
    NULL and FALSE both reject the row, and AND/OR are monotone, so the result is the same and DuckDB evaluates
    less (measured: about a quarter of the per-row condition cost)."""
    if isinstance(c, exp.Coalesce) and len(c.expressions) == 1 and isinstance(c.expressions[0], exp.Boolean):
        if not c.expressions[0].this:
            return _positive(c.this)
    if isinstance(c, exp.Paren):
        return exp.Paren(this=_positive(c.this))
    if isinstance(c, exp.And | exp.Or):
        return type(c)(this=_positive(c.this), expression=_positive(c.expression))
    if isinstance(c, exp.Cast) and c.to.this == exp.DataType.Type.BOOLEAN:
        return _positive(c.this)
    return c


def _case_form(a: exp.Expression) -> exp.Expression:
    """``agg(v) FILTER (WHERE c)`` as ``agg(CASE WHEN c THEN v END)`` and ``count_if(c)`` as a sum of CASEs: the
    same result (aggregates skip NULLs), measured about twice as fast in DuckDB's hash aggregate."""
    if isinstance(a, exp.Filter) and isinstance(a.this, exp.Sum | exp.Min | exp.Max | exp.Avg):
        agg = a.this.copy()
        cond = _positive(a.expression.this.copy())
        agg.set("this", exp.Case(ifs=[exp.If(this=cond, true=a.this.this.copy())]))
        return agg
    if isinstance(a, exp.CountIf):
        hit = exp.Case(
            ifs=[exp.If(this=_positive(a.this.copy()), true=exp.Literal.number(1))],
            default=exp.Literal.number(0),
        )
        return exp.cast(exp.Sum(this=hit), exp.DataType.build("BIGINT"))
    return a


OUTPUT_CHUNK = 64  # definitions per INSERT of qualified pairs


def _evaluate_batch(
    r: _Runner, batch: list[tuple[str, compile_sql.CompiledSQL]], profiles: str, events: str
) -> None:
    aggs: dict[str, exp.Expression] = {}
    paggs: dict[str, exp.Expression] = {}
    segs: dict[str, str] = {}
    event_list = False
    for _, c in batch:
        aggs.update(c.aggregates)
        paggs.update(c.profile_aggregates)
        segs.update(c.segments)
        event_list = event_list or c.uses_event_list
    joins = []
    if aggs:
        r.run(
            f"CREATE OR REPLACE TEMP TABLE ev AS {_event_aggregate_select(aggs, f'{events} AS e')}",
            "event_aggregates",
        )
        joins.append("LEFT JOIN ev ON ev.profile_id = p.profile_id")
    if paggs:
        prof = profiles
        if event_list:
            # Pairs of events: every event of the profile as one list, joined to each event row.
            lists = (
                f"SELECT e2.profile_id, list(e2 ORDER BY e2.timestamp) AS {_q(compile_sql.EVENT_LIST)} "
                f"FROM {events} AS e2 GROUP BY e2.profile_id"
            )
            prof = f"(SELECT p0.*, l.{_q(compile_sql.EVENT_LIST)} FROM {profiles} AS p0 LEFT JOIN ({lists}) AS l USING (profile_id))"
        source = f"{events} AS e JOIN {prof} AS p ON p.profile_id = e.profile_id"
        r.run(
            f"CREATE OR REPLACE TEMP TABLE evp AS {_event_aggregate_select(paggs, source, share=False)}",
            "event_profile_aggregates",
        )
        joins.append("LEFT JOIN evp ON evp.profile_id = p.profile_id")
    for audience, col in segs.items():
        joins.append(
            f"LEFT JOIN (SELECT DISTINCT profile_id, TRUE AS {_q(col)} FROM members "
            f"WHERE audience_id = {_lit(audience)}) AS {_q('j' + col)} ON {_q('j' + col)}.profile_id = p.profile_id"
        )
    flags = ", ".join(f"COALESCE({c.predicate.sql(D)}, FALSE) AS d{i}" for i, (_, c) in enumerate(batch))
    r.run(
        f"CREATE OR REPLACE TEMP TABLE wide AS SELECT CAST(p.profile_id AS VARCHAR) AS profile_id, {flags} "
        f"FROM {profiles} AS p {' '.join(joins)}",
        "profile_predicates",
    )
    for start in range(0, len(batch), OUTPUT_CHUNK):
        parts = [
            f"SELECT {_lit(aid)} AS audience_id, profile_id, TRUE FROM wide WHERE d{start + i}"
            for i, (aid, _) in enumerate(batch[start : start + OUTPUT_CHUNK])
        ]
        r.run(f"INSERT INTO members {' UNION ALL '.join(parts)}", "pairs")
    for table in ("ev", "evp", "wide"):
        r.run(f"DROP TABLE IF EXISTS {table}")
