"""Every semantic case of the compiler tests (tests/pql_compile/test_semantics.py: each function group and each
decision of pql.md §0, with members computed by hand) gives the same members on Spark, all in one evaluation
(~200 definitions sharing aggregates: the one-pass plan with its bit masks)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from pql.compile.compile_fixture_data import NOW, SCHEMA
from pql.compile.test_semantics import CASES, _case

from segmentation_pipelines.engine import EngineDefinition, EvaluationRequest, evaluate
from segmentation_pipelines.pql import parse

pytestmark = pytest.mark.slow


def test_every_semantic_case_has_its_hand_computed_members_on_spark(store, tmp_path: Path) -> None:
    defs = [EngineDefinition(f"c{i:03d}", parse(_case(c)[0])) for i, c in enumerate(CASES)]
    out = tmp_path / "spark.parquet"
    res = evaluate(EvaluationRequest(defs, store[0], store[1], NOW, out, SCHEMA, engine="spark"))
    got: dict[str, set[str]] = {d.id: set() for d in defs}
    for a, p in duckdb.sql(f"SELECT audience_id, profile_id FROM read_parquet('{out}')").fetchall():
        got[a].add(p)
    wrong = [
        (text, sorted(got[f"c{i:03d}"]), sorted(expected))
        for i, (text, expected, _) in enumerate(map(_case, CASES))
        if got[f"c{i:03d}"] != expected
    ]
    assert not wrong, f"{len(wrong)} of {len(CASES)} cases differ on Spark (text, got, expected): {wrong}"
    assert res.counts == {k: len(v) for k, v in got.items()}
    assert res.total_profiles == 5
