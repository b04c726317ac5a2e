"""Every appendix segment definition of pql.md (those the checker accepts against the appendix schema, as
tests/pql_compile/test_appendix_compiles.py) gives identical members on Spark and DuckDB, over a seeded random
store of that schema (appendix_store), all in one evaluation per engine."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pql.compile.compile_fixture_data import NOW
from pql.pql_front_schema import EVENT, PROFILE, SCHEMA
from pql.test_appendix import PARSEABLE

from segmentation_pipelines.engine import EngineDefinition, EvaluationRequest, evaluate, plan
from segmentation_pipelines.pql import PQLError, check, compile_spark, parse

from .appendix_store import write_store

pytestmark = pytest.mark.slow


def _definitions() -> list[str]:
    out = []
    for _, text, _ in PARSEABLE:
        try:
            check(parse(text), SCHEMA)
        except PQLError:
            continue
        out.append(text)
    return out


DEFINITIONS = _definitions()


def test_every_appendix_definition_compiles_for_spark() -> None:
    assert len(DEFINITIONS) >= 40
    for text in DEFINITIONS:
        assert compile_spark.sql(compile_spark.compile_definition(parse(text), SCHEMA, NOW).predicate)


def test_every_appendix_definition_selects_the_same_members_on_spark_and_duckdb(tmp_path: Path) -> None:
    prof, evs = write_store(tmp_path / "store", SCHEMA, (PROFILE, EVENT), DEFINITIONS, NOW)
    defs = [EngineDefinition(f"a{i:03d}", parse(t)) for i, t in enumerate(DEFINITIONS)]
    # Audiences the examples read (inSegment) are external: a fixed third of the profiles.
    external = {}
    for ref in sorted(set().union(*(plan.referenced_audiences(d.ast) for d in defs))):
        path = tmp_path / f"ext-{len(external)}.parquet"
        pq.write_table(pa.table({"profile_id": [f"p{i}" for i in range(0, 40, 3)]}), path)
        external[ref] = path
    got = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.parquet"
        req = EvaluationRequest(defs, prof, evs, NOW, out, SCHEMA, engine=engine, external_members=external)
        evaluate(req)
        got[engine] = set(duckdb.sql(f"SELECT audience_id, profile_id FROM read_parquet('{out}')").fetchall())
    differ = sorted({a for a, _ in got["duckdb"] ^ got["spark"]})
    assert not differ, [DEFINITIONS[int(a[1:])] for a in differ]
    selecting = {a for a, _ in got["duckdb"]}
    assert len(selecting) >= len(DEFINITIONS) // 3  # the store makes many of them select someone
