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
import pyarrow as pa
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
    compiled = {d.id: compile_sql.compile_definition(d.query, req.schema, req.evaluation_time) for d in req.definitions}
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
            for bi, batch in enumerate(_batches([(d.id, compiled[d.id]) for d in stage])):
                r.say(f"stage {si + 1}/{len(stages)}, batch {bi + 1}: {len(batch)} definitions")
                _evaluate_batch(r, batch, profiles, events)
        timings["evaluate"] = time.perf_counter() - t
        t = time.perf_counter()
        out = Path(req.output_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        r.run(
            f"COPY (SELECT audience_id, profile_id FROM members WHERE is_output ORDER BY audience_id, profile_id) "
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


def _batches(items: list[tuple[str, compile_sql.CompiledSQL]]) -> list[list[tuple[str, compile_sql.CompiledSQL]]]:
    out: list[list[tuple[str, compile_sql.CompiledSQL]]] = []
    cur: list[tuple[str, compile_sql.CompiledSQL]] = []
    names: set[str] = set()
    for item in items:
        c = item[1]
        new = set(c.aggregates) | set(c.profile_aggregates)
        if cur and len(names | new) > plan.MAX_AGGREGATES_PER_PASS:
            out.append(cur)
            cur, names = [], set()
        cur.append(item)
        names |= new
    if cur:
        out.append(cur)
    return out


def _evaluate_batch(r: _Runner, batch: list[tuple[str, compile_sql.CompiledSQL]], profiles: str, events: str) -> None:
    aggs: dict[str, exp.Expression] = {}
    paggs: dict[str, exp.Expression] = {}
    segs: dict[str, str] = {}
    for _, c in batch:
        aggs.update(c.aggregates)
        paggs.update(c.profile_aggregates)
        segs.update(c.segments)
    joins = []
    if aggs:
        cols = ", ".join(f"{a.sql(D)} AS {_q(n)}" for n, a in aggs.items())
        r.run(
            f"CREATE OR REPLACE TEMP TABLE ev AS SELECT e.profile_id, {cols} FROM {events} AS e GROUP BY e.profile_id",
            "event_aggregates",
        )
        joins.append("LEFT JOIN ev ON ev.profile_id = p.profile_id")
    if paggs:
        cols = ", ".join(f"{a.sql(D)} AS {_q(n)}" for n, a in paggs.items())
        r.run(
            f"CREATE OR REPLACE TEMP TABLE evp AS SELECT e.profile_id, {cols} FROM {events} AS e "
            f"JOIN {profiles} AS p ON p.profile_id = e.profile_id GROUP BY e.profile_id",
            "event_profile_aggregates",
        )
        joins.append("LEFT JOIN evp ON evp.profile_id = p.profile_id")
    for audience, col in segs.items():
        joins.append(
            f"LEFT JOIN (SELECT DISTINCT profile_id, TRUE AS {_q(col)} FROM members "
            f"WHERE audience_id = {_lit(audience)}) AS {_q('j' + col)} ON {_q('j' + col)}.profile_id = p.profile_id"
        )
    flags = ", ".join(f"COALESCE({c.predicate.sql(D)}, FALSE) AS d{i}" for i, (_, c) in enumerate(batch))
    r.con.register("audience_map", pa.table({"k": [f"d{i}" for i in range(len(batch))], "audience_id": [a for a, _ in batch]}))
    wide = f"SELECT p.profile_id, {flags} FROM {profiles} AS p {' '.join(joins)}"
    on = ", ".join(f"d{i}" for i in range(len(batch)))
    r.run(
        f"INSERT INTO members SELECT m.audience_id, CAST(u.profile_id AS VARCHAR), TRUE "
        f"FROM (UNPIVOT ({wide}) ON {on} INTO NAME k VALUE flag) AS u JOIN audience_map AS m ON m.k = u.k WHERE u.flag",
        "profile_predicates",
    )
    r.con.unregister("audience_map")
    r.run("DROP TABLE IF EXISTS ev")
    r.run("DROP TABLE IF EXISTS evp")
