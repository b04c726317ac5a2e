"""One-pass evaluation on Polars (lazy): the same plan as the DuckDB engine, written with Polars expressions.

Per batch: ``events.group_by("profile_id").agg(<every event aggregate of the batch>)``, LEFT JOINed once to the
profiles, one boolean column per definition, unpivoted into (audience, profile) pairs. Each query runs with
``collect(background=True)`` so that a cancel stops it (``InProcessQuery.cancel``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl

from segmentation_pipelines.engine import plan
from segmentation_pipelines.engine.interrupt import POLL_SECONDS
from segmentation_pipelines.engine.model import EvaluationCancelled, EvaluationRequest, EvaluationResult
from segmentation_pipelines.pql import compile_polars
from segmentation_pipelines.pql.compile_polars import EVENT_LIST, PROFILE_PREFIX, CompiledPolars

PAIRS_SCHEMA = {"audience_id": pl.String, "profile_id": pl.String}


def _collect(lf: pl.LazyFrame, req: EvaluationRequest) -> pl.DataFrame:
    if req.should_cancel is not None and req.should_cancel():
        raise EvaluationCancelled("evaluation cancelled")
    q = lf.collect(background=True, engine="streaming")
    try:
        while True:
            df = q.fetch()
            if df is not None:
                return df
            if req.should_cancel is not None and req.should_cancel():
                q.cancel()
                raise EvaluationCancelled("evaluation cancelled")
            time.sleep(POLL_SECONDS / 5)
    except KeyboardInterrupt:
        q.cancel()
        raise


def evaluate_polars(req: EvaluationRequest) -> EvaluationResult:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    compiled = {
        d.id: compile_polars.compile_definition(d.query, req.schema, req.evaluation_time)
        for d in req.definitions
    }
    timings["compile"] = time.perf_counter() - t0
    stages = plan.stages(req.definitions, req.external_members)
    profiles = pl.scan_parquet(req.profiles_path)
    events = pl.scan_parquet(
        plan.events_source(req.events_path), missing_columns="insert", extra_columns="ignore"
    )
    members = [
        pl.scan_parquet(path)
        .select(pl.lit(aid).alias("audience_id"), pl.col("profile_id").cast(pl.String))
        .unique()
        for aid, path in req.external_members.items()
    ]
    known = pl.concat([m.collect() for m in members]) if members else pl.DataFrame(schema=PAIRS_SCHEMA)
    outputs: list[pl.DataFrame] = []
    t = time.perf_counter()
    for si, stage in enumerate(stages):
        for bi, batch in enumerate(_batches([(d.id, compiled[d.id]) for d in stage])):
            if req.progress is not None:
                req.progress(f"stage {si + 1}/{len(stages)}, batch {bi + 1}: {len(batch)} definitions")
            pairs = _collect(_batch_plan(batch, profiles, events, known), req)
            outputs.append(pairs)
            known = pl.concat([known, pairs])
    timings["evaluate"] = time.perf_counter() - t
    t = time.perf_counter()
    result = pl.concat(outputs) if outputs else pl.DataFrame(schema=PAIRS_SCHEMA)
    result = result.sort("audience_id", "profile_id")
    out = Path(req.output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    result.write_parquet(tmp)
    os.replace(tmp, out)
    counts = dict.fromkeys((d.id for d in req.definitions), 0)
    for aid, n in result.group_by("audience_id").len().iter_rows():
        counts[aid] = n
    total = profiles.select(pl.len()).collect().item()
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return EvaluationResult(out, counts, int(total), timings)


def _batches(items: list[tuple[str, CompiledPolars]]) -> list[list[tuple[str, CompiledPolars]]]:
    out: list[list[tuple[str, CompiledPolars]]] = []
    cur: list[tuple[str, CompiledPolars]] = []
    names: set[str] = set()
    for item in items:
        new = set(item[1].aggregates) | set(item[1].profile_aggregates)
        if cur and len(names | new) > plan.MAX_AGGREGATES_PER_PASS:
            out.append(cur)
            cur, names = [], set()
        cur.append(item)
        names |= new
    if cur:
        out.append(cur)
    return out


def _batch_plan(
    batch: list[tuple[str, CompiledPolars]], profiles: pl.LazyFrame, events: pl.LazyFrame, known: pl.DataFrame
) -> pl.LazyFrame:
    aggs: dict[str, pl.Expr] = {}
    paggs: dict[str, pl.Expr] = {}
    pcols: set[str] = set()
    segs: dict[str, str] = {}
    for _, c in batch:
        aggs.update(c.aggregates)
        paggs.update(c.profile_aggregates)
        pcols |= c.profile_columns
        segs.update(c.segments)
    wide = profiles
    if aggs:
        wide = wide.join(events.group_by("profile_id").agg(list(aggs.values())), on="profile_id", how="left")
    if paggs:
        prof = profiles.select(
            "profile_id", *[pl.col(c).alias(PROFILE_PREFIX + c) for c in sorted(pcols - {EVENT_LIST})]
        )
        if EVENT_LIST in pcols:
            # Pairs of events: every event of the profile as one list (by timestamp), joined to each event row.
            lists = events.group_by("profile_id").agg(
                pl.struct(pl.all())
                .sort_by("timestamp", nulls_last=True, maintain_order=True)
                .alias(PROFILE_PREFIX + EVENT_LIST)
            )
            prof = prof.join(lists, on="profile_id", how="left")
        joined = events.join(prof, on="profile_id", how="inner")
        wide = wide.join(joined.group_by("profile_id").agg(list(paggs.values())), on="profile_id", how="left")
    for audience, col in segs.items():
        ids = known.filter(pl.col("audience_id") == audience).select("profile_id").unique()
        wide = wide.join(ids.lazy().with_columns(pl.lit(True).alias(col)), on="profile_id", how="left")
    flags = wide.select(
        pl.col("profile_id").cast(pl.String),
        *[c.predicate.fill_null(False).alias(f"d{i}") for i, (_, c) in enumerate(batch)],
    )
    mapping = pl.LazyFrame({"k": [f"d{i}" for i in range(len(batch))], "audience_id": [a for a, _ in batch]})
    return (
        flags.unpivot(index="profile_id", variable_name="k", value_name="flag")
        .filter(pl.col("flag"))
        .join(mapping, on="k")
        .select("audience_id", "profile_id")
    )
