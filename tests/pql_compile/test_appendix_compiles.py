"""Acceptance: every appendix example of pql.md that is a segment definition over profile/event fields (i.e. that
the checker accepts as a boolean query against the appendix schema of the front-end tests) compiles on both
engines, and the SQL binds on DuckDB against empty tables of that schema."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from segmentation_pipelines.pql import PQLError, check, compile_polars, compile_sql, parse

sys.path.insert(0, str(Path(__file__).parent.parent / "pql"))
from compile_fixture_data import NOW  # noqa: E402
from pql_front_schema import SCHEMA  # noqa: E402
from test_appendix import PARSEABLE  # noqa: E402


def _segment_definitions() -> list[str]:
    out = []
    for _, text, _ in PARSEABLE:
        try:
            check(parse(text), SCHEMA)
        except PQLError:
            continue
        out.append(text)
    return out


DEFINITIONS = _segment_definitions()


def test_there_are_many_segment_definitions_in_the_appendix() -> None:
    assert len(DEFINITIONS) >= 40


@pytest.mark.parametrize("text", DEFINITIONS, ids=[t[:70] for t in DEFINITIONS])
def test_compiles_on_both_engines(text: str) -> None:
    query = parse(text)
    sql = compile_sql.compile_definition(query, SCHEMA, NOW)
    assert sql.predicate.sql("duckdb")
    compile_polars.compile_definition(query, SCHEMA, NOW)


def test_the_pairs_example_is_in_the_appendix() -> None:
    # Its members on both engines are checked by test_semantics (same text, on the fixture store).
    assert any("Order2.timestamp occurs < 2 weeks after Order1.timestamp" in t for t in DEFINITIONS)
