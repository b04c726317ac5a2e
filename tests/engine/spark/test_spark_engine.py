"""The engine contract on Spark (as tests/engine/test_engine.py for DuckDB and Polars): the pairs file and counts,
stages of inSegment references, nothing left beside the output, and a cancel before or during the evaluation
raising EvaluationCancelled with no output published."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from pql.compile.compile_fixture_data import NOW, SCHEMA

from segmentation_pipelines.engine import EngineDefinition, EvaluationCancelled, EvaluationRequest, evaluate
from segmentation_pipelines.pql import parse

pytestmark = pytest.mark.slow

DEFS = dict(
    us='homeAddress.countryCode = "US"',
    carts='chain(xEvent, timestamp, [A: WHAT(eventType = "addToCart")])',
    both='inSegment("us") and inSegment("carts")',
    either_not='inSegment("both") or not(inSegment("carts"))',
    nobody="person.birthYear > 3000",
)


def _defs() -> list[EngineDefinition]:
    return [EngineDefinition(k, parse(v)) for k, v in DEFS.items()]


def test_output_counts_and_stages(store, tmp_path: Path) -> None:
    out = tmp_path / "out" / "pairs.parquet"
    res = evaluate(EvaluationRequest(_defs(), store[0], store[1], NOW, out, SCHEMA, engine="spark"))
    assert res.output_path == out and res.total_profiles == 5
    assert res.counts == {"us": 2, "carts": 2, "both": 1, "either_not": 4, "nobody": 0}
    got = set(duckdb.sql(f"SELECT audience_id, profile_id FROM read_parquet('{out}')").fetchall())
    assert {p for a, p in got if a == "both"} == {"p1"}
    assert {p for a, p in got if a == "either_not"} == {"p1", "p3", "p4", "p5"}
    assert pq.read_schema(out).names == ["audience_id", "profile_id"]
    assert [p.name for p in out.parent.iterdir()] == ["pairs.parquet"]  # no part files or temporary file left
    assert {"compile", "session", "evaluate", "total"} <= set(res.timings)


@pytest.mark.parametrize("when", ["before", "during"])
def test_a_cancel_raises_and_publishes_nothing(when: str, store, tmp_path: Path) -> None:
    progress: list[str] = []
    out = tmp_path / "out" / "pairs.parquet"
    req = EvaluationRequest(
        _defs(),
        store[0],
        store[1],
        NOW,
        out,
        SCHEMA,
        engine="spark",
        # "during": cancelled once the first stage has started (inSegment definitions make three stages).
        should_cancel=(lambda: True) if when == "before" else (lambda: bool(progress)),
        progress=progress.append,
    )
    with pytest.raises(EvaluationCancelled):
        evaluate(req)
    assert not out.exists()
    assert not out.parent.exists() or not list(out.parent.iterdir())  # no part files left
    assert bool(progress) == (when == "during")
