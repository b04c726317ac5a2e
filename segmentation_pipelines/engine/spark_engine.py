"""One-pass evaluation on Apache Spark (PySpark): the DuckDB engine's plan, rendered as Spark SQL.

Per batch of definitions (``plan``): one ``GROUP BY profile_id`` over the events computes every event aggregate of
the batch (``bool_or`` aggregates as bits of ``BIT_OR`` masks read back with ``BIT_GET``), LEFT JOINed once to the
profiles, one boolean column per definition; the qualified pairs of the batch are one ``explode`` written by Spark
as Parquet part files. ``inSegment`` definitions of later stages read the earlier stages' part files. At the end
the part files are streamed into the one pairs file the other engines write (``pairs_output``), so memberships,
diff and metrics are unchanged.

One SparkSession per process (:func:`session`), created on first use from ``SEGMENTATION_SPARK_MASTER`` (default
``local[*]``) and Spark's own configuration (``SPARK_CONF_DIR/spark-defaults.conf``, see deploy/spark/). The data
paths must be readable by the executors under the same names (on a cluster: a shared volume, docs/deploy.md).
Evaluations of one process run one at a time (Spark parallelises inside each).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from sqlglot import exp

from segmentation_pipelines.engine import plan
from segmentation_pipelines.engine.event_aggregates_sql import Aggregates
from segmentation_pipelines.engine.interrupt import run_interruptible
from segmentation_pipelines.engine.model import EvaluationCancelled, EvaluationRequest, EvaluationResult
from segmentation_pipelines.engine.pairs_output import ARROW_BATCH_ROWS, PAIRS_SCHEMA, pairs_writer
from segmentation_pipelines.pql import compile_spark
from segmentation_pipelines.pql.compile_sql import EVENT_LIST, CompiledSQL

BITS_PER_MASK = 62  # bool_or aggregates per BIGINT mask

# Settings that make Spark SQL mean what DuckDB means (whatever the cluster's defaults): NULL (not an error) for
# an index past the end, NULL size of a NULL array, naive UTC timestamps as in the Parquet store, case-sensitive
# field names (PQL's), no UI.
SEMANTIC_CONF = {
    "spark.sql.ansi.enabled": "false",
    "spark.sql.legacy.sizeOfNull": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
    "spark.sql.caseSensitive": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
# Only for a local master (one machine): small shuffles, the evaluation's memory limit for the driver JVM.
LOCAL_CONF = {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4"}

_LOG4J = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""

_session: Any = None
_session_lock = threading.Lock()
_evaluation_lock = threading.Lock()


def session(master: str | None = None, driver_memory: str | None = None) -> Any:
    """The process's SparkSession (created on first call; later arguments are ignored)."""
    global _session
    with _session_lock:
        if _session is not None:
            return _session
        from pyspark.sql import SparkSession

        from segmentation_pipelines.settings import get_settings

        master = master or get_settings().spark_master
        log4j = Path(tempfile.gettempdir()) / "segmentation-spark-log4j2.properties"
        log4j.write_text(_LOG4J)
        builder = SparkSession.builder.master(master).appName("segmentation-pipelines")
        conf = dict(SEMANTIC_CONF)
        # The generated code of a batch's aggregates is one huge method per stage; the JIT skips methods over
        # 8,000 bytes of bytecode unless told not to (the engine then runs interpreted, several times slower).
        java_opts = f"-Dlog4j2.configurationFile=file:{log4j} -XX:-DontCompileHugeMethods"
        conf["spark.driver.extraJavaOptions"] = java_opts
        if master.startswith("local"):
            conf.update(LOCAL_CONF)
            if driver_memory:
                conf["spark.driver.memory"] = driver_memory
        for k, v in conf.items():
            builder = builder.config(k, v)
        _session = builder.getOrCreate()
        _session.sparkContext.setLogLevel("ERROR")
        return _session


def _spark_memory(limit: str) -> str:
    """DuckDB's ``"4GB"`` as a JVM size (``"4g"``)."""
    s = limit.strip().lower().replace(" ", "").removesuffix("b").removesuffix("i")
    return s if s and s[-1] in "kmgt" else "4g"


def _lit(s: str | Path) -> str:
    return compile_spark.sql(exp.Literal.string(str(s)))


def _q(name: str) -> str:
    return compile_spark.sql(exp.to_identifier(name, quoted=True))


class _Runner:
    def __init__(self, req: EvaluationRequest, spark: Any):
        self.req, self.spark = req, spark
        self.group = f"segmentation-{uuid.uuid4().hex[:12]}"
        self.views: list[str] = []
        self.timings: dict[str, float] = {}

    def run(self, action, label: str) -> Any:
        """``action()`` (a Spark action) in a worker thread under this run's job group: a cancel (or Dagster's
        interrupt) cancels the group's jobs."""
        if self.req.should_cancel is not None and self.req.should_cancel():
            raise EvaluationCancelled("evaluation cancelled")
        sc = self.spark.sparkContext

        def work() -> Any:
            sc.setJobGroup(self.group, label, interruptOnCancel=True)
            return action()

        t = time.perf_counter()
        try:
            return run_interruptible(work, lambda: sc.cancelJobGroup(self.group), self.req.should_cancel)
        finally:
            self.timings[label] = self.timings.get(label, 0.0) + time.perf_counter() - t

    def view(self, name: str, df: Any) -> str:
        full = f"{name}_{self.group[-12:]}"
        df.createOrReplaceTempView(full)
        self.views.append(full)
        return full

    def sql(self, text: str) -> Any:
        return self.spark.sql(text)

    def say(self, msg: str) -> None:
        if self.req.progress is not None:
            self.req.progress(msg)

    def close(self) -> None:
        for v in self.views:
            self.spark.catalog.dropTempView(v)


def evaluate_spark(req: EvaluationRequest) -> EvaluationResult:
    t0 = time.perf_counter()
    compiled = {
        d.id: compile_spark.compile_definition(d.query, req.schema, req.evaluation_time)
        for d in req.definitions
    }
    timings: dict[str, float] = {"compile": time.perf_counter() - t0}
    stages = plan.stages(req.definitions, req.external_members)
    if req.should_cancel is not None and req.should_cancel():
        raise EvaluationCancelled("evaluation cancelled")  # before the JVM starts
    spark = session(driver_memory=_spark_memory(req.memory_limit))
    timings["session"] = time.perf_counter() - t0 - timings["compile"]
    out = Path(req.output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    parts = Path(req.temp_dir or out.parent) / f".{out.name}.spark-{uuid.uuid4().hex[:8]}"
    with _evaluation_lock:
        r = _Runner(req, spark)
        try:
            profiles = r.view("profiles", spark.read.parquet(str(req.profiles_path)))
            events = r.view(
                "events",
                spark.read.option("mergeSchema", "true").parquet(plan.events_source(req.events_path)),
            )
            member_sources = [
                f"SELECT DISTINCT {_lit(aid)} AS audience_id, CAST(profile_id AS STRING) AS profile_id "
                f"FROM parquet.{_q(str(path))}"
                for aid, path in req.external_members.items()
            ]
            referenced = set().union(*(plan.referenced_audiences(d.ast) for d in req.definitions))
            counts = dict.fromkeys((d.id for d in req.definitions), 0)
            t = time.perf_counter()
            n = 0
            for si, stage in enumerate(stages):
                for bi, batch in enumerate(plan.batches([(d.id, compiled[d.id]) for d in stage])):
                    r.say(f"stage {si + 1}/{len(stages)}, batch {bi + 1}: {len(batch)} definitions")
                    members = r.view(
                        "members",
                        spark.sql(" UNION ALL ".join(member_sources))
                        if member_sources
                        else spark.sql(
                            "SELECT CAST(NULL AS STRING) AS audience_id, CAST(NULL AS STRING) AS profile_id WHERE FALSE"
                        ),
                    )
                    target = parts / f"batch-{n:04d}"
                    counts.update(_evaluate_batch(r, batch, profiles, events, members, target))
                    keep = [aid for aid, _ in batch if aid in referenced]
                    if keep:
                        ids = ", ".join(_lit(a) for a in keep)
                        member_sources.append(
                            f"SELECT audience_id, profile_id FROM parquet.{_q(str(target))} WHERE audience_id IN ({ids})"
                        )
                    n += 1
            timings["evaluate"] = time.perf_counter() - t
            t = time.perf_counter()
            total = r.run(
                lambda: spark.sql(f"SELECT count(*) AS n FROM {profiles}").collect()[0]["n"], "count"
            )
            _concatenate(parts, tmp)
            os.replace(tmp, out)
            timings["write"] = time.perf_counter() - t
            timings.update({f"spark_{k}": v for k, v in r.timings.items()})
            timings["total"] = time.perf_counter() - t0
            return EvaluationResult(out, counts, int(total), timings)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            r.close()
            shutil.rmtree(parts, ignore_errors=True)


def _concatenate(parts: Path, dest: Path) -> None:
    """Stream every Parquet part file under ``parts`` into the pairs file ``dest`` (bounded memory)."""
    writer = pairs_writer(dest)
    try:
        files = sorted(str(p) for p in parts.rglob("*.parquet")) if parts.exists() else []
        if files:
            for b in ds.dataset(files, format="parquet").to_batches(batch_size=ARROW_BATCH_ROWS):
                writer.write_batch(b.select(["audience_id", "profile_id"]).cast(PAIRS_SCHEMA))
    finally:
        writer.close()


def _mask_select(aggs: Aggregates, source: str) -> str:
    """``profile_id`` and every aggregate of ``aggs`` over the events ``e`` of ``source`` in one GROUP BY, the
    ``bool_or`` ones as bits of BIGINT masks (one ``BIT_OR`` per 62 conditions instead of one aggregate each)."""
    sql = compile_spark.sql
    packed = [(n, a.cond if a.cond is not None else exp.true()) for n, a in aggs.items() if a.fn == "bool_or"]
    inner, outer = [], []
    for m in range(0, len(packed), BITS_PER_MASK):
        chunk = packed[m : m + BITS_PER_MASK]
        terms = [f"CAST(COALESCE({sql(c)}, FALSE) AS BIGINT) * {1 << i}" for i, (_, c) in enumerate(chunk)]
        mask = f"m{m // BITS_PER_MASK}"
        inner.append(f"BIT_OR({' + '.join(terms)}) AS {mask}")
        outer.extend(f"BIT_GET({mask}, {i}) = 1 AS {_q(n)}" for i, (n, _) in enumerate(chunk))
    for n, a in aggs.items():
        if a.fn != "bool_or":
            inner.append(f"{sql(a.expression)} AS {_q(n)}")
            outer.append(_q(n))
    return (
        f"SELECT profile_id, {', '.join(outer)} FROM "
        f"(SELECT e.profile_id AS profile_id, {', '.join(inner)} FROM {source} GROUP BY e.profile_id) AS g"
    )


def _event_lists(events: str) -> str:
    """Every event of each profile as one list of rows ordered by timestamp (nulls last): ``p."__events"``."""
    backend = compile_spark.SparkBackend()
    row = exp.Struct(expressions=[exp.Column(this=exp.Star(), table=exp.to_identifier("e2"))])
    lst = backend.agg_list(row, exp.column("timestamp", table="e2", quoted=True), None)
    return (
        f"SELECT e2.profile_id AS profile_id, {compile_spark.sql(lst)} AS {_q(EVENT_LIST)} "
        f"FROM {events} AS e2 GROUP BY e2.profile_id"
    )


def _evaluate_batch(
    r: _Runner,
    batch: list[tuple[str, CompiledSQL]],
    profiles: str,
    events: str,
    members: str,
    target: Path,
) -> dict[str, int]:
    """Evaluate one batch: its pairs written as Parquet under ``target``; returns each definition's count."""
    sql = compile_spark.sql
    aggs: Aggregates = {}
    paggs: dict[str, exp.Expression] = {}
    segs: dict[str, str] = {}
    event_list = False
    for _, c in batch:
        aggs.update((n, c.specs[n]) for n in c.aggregates)
        paggs.update(c.profile_aggregates)
        segs.update(c.segments)
        event_list = event_list or c.uses_event_list
    predicates = [c.predicate for _, c in batch]
    joins = []
    if aggs:
        ev = r.view("ev", r.sql(_mask_select(aggs, f"{events} AS e")))
        joins.append(f"LEFT JOIN {ev} AS ev ON ev.profile_id = p.profile_id")
    if paggs:
        prof = profiles
        if event_list:
            prof = (
                f"(SELECT p0.*, l.{_q(EVENT_LIST)} FROM {profiles} AS p0 "
                f"LEFT JOIN ({_event_lists(events)}) AS l ON l.profile_id = p0.profile_id)"
            )
        source = f"{events} AS e JOIN {prof} AS p ON p.profile_id = e.profile_id"
        inner = ", ".join(f"{sql(a)} AS {_q(n)}" for n, a in paggs.items())
        evp = r.view(
            "evp", r.sql(f"SELECT e.profile_id AS profile_id, {inner} FROM {source} GROUP BY e.profile_id")
        )
        joins.append(f"LEFT JOIN {evp} AS evp ON evp.profile_id = p.profile_id")
    for audience, col in segs.items():
        j = _q("j" + col)
        joins.append(
            f"LEFT JOIN (SELECT DISTINCT profile_id, TRUE AS {_q(col)} FROM {members} "
            f"WHERE audience_id = {_lit(audience)}) AS {j} ON {j}.profile_id = p.profile_id"
        )
    flags = ", ".join(
        f"IF(COALESCE(CAST({sql(p)} AS BOOLEAN), FALSE), {_lit(aid)}, NULL)"
        for p, (aid, _) in zip(predicates, batch, strict=True)
    )
    pairs = r.sql(
        f"SELECT audience_id, profile_id FROM (SELECT CAST(p.profile_id AS STRING) AS profile_id, "
        f"FILTER(ARRAY({flags}), sp_a -> sp_a IS NOT NULL) AS qualified FROM {profiles} AS p {' '.join(joins)}) "
        f"LATERAL VIEW EXPLODE(qualified) AS audience_id"
    )
    r.run(lambda: pairs.write.mode("overwrite").parquet(str(target)), "pairs")
    rows = r.run(lambda: r.spark.read.parquet(str(target)).groupBy("audience_id").count().collect(), "counts")
    got = {row["audience_id"]: int(row["count"]) for row in rows}
    return {aid: got.get(aid, 0) for aid, _ in batch}
