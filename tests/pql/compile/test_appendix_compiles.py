"""Acceptance: every appendix example of pql.md that is a segment definition over profile/event fields (i.e. that
the checker accepts as a boolean query against the appendix schema of the front-end tests) compiles on both
engines, and the compiled plan of all of them runs, in one job per engine, on a store of that schema (one profile
whose fields are all null, one such event): DuckDB binds and executes the SQL, Polars executes its plan."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pql.compile.compile_fixture_data import NOW
from pql.pql_front_schema import SCHEMA
from pql.test_appendix import PARSEABLE
from segmentation_pipelines.engine import EngineDefinition, EvaluationRequest, evaluate
from segmentation_pipelines.pql import PQLError, check, compile_polars, compile_sql, parse
from segmentation_pipelines.pql.references import referenced_audiences
from segmentation_pipelines.pql.schema import ClassSchema
from segmentation_pipelines.profiles.schema import IDENTITY_MAP, duck_type
from segmentation_pipelines.profiles.xdm import MAP_FIELDS

SCALARS = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "date-time": "TIMESTAMP",
    "map": IDENTITY_MAP,
}


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


def _tree(schema: ClassSchema, path: tuple[str, ...]):
    """The store's type tree of the field at ``path`` (objects as structs, arrays as lists)."""
    kind = schema.lookup(path) if path else "object"
    if kind == "object":
        return {name: _tree(schema, (*path, name)) for name in schema.children(path)}
    if kind == "array":
        element = (*path, "[]")
        return [_tree(schema, element) if schema.lookup(element) else "VARCHAR"]
    if kind == "map" and path[-1] not in MAP_FIELDS:
        # The schema does not type a map's values; the appendix reads ``stringProperty`` of this one's.
        return [{"key": "VARCHAR", "value": {"stringProperty": "VARCHAR"}}]
    return SCALARS[kind]


def _write_null_row(path: Path, schema: ClassSchema, keys: dict[str, str]) -> None:
    """One row: the key columns set, every field of ``schema`` null (typed as the store types it)."""
    columns = {name: duck_type(tree) for name, tree in _tree(schema, ()).items()}
    columns.setdefault("timestamp", "TIMESTAMP")
    selected = [f"'{value}' AS \"{key}\"" for key, value in keys.items()]
    selected += [f'NULL::{t} AS "{c}"' for c, t in columns.items() if c not in keys]
    duckdb.sql(f"COPY (SELECT {', '.join(selected)}) TO '{path}' (FORMAT parquet)")


def test_there_are_many_segment_definitions_in_the_appendix() -> None:
    assert len(DEFINITIONS) >= 40


@pytest.mark.parametrize("text", DEFINITIONS, ids=[t[:70] for t in DEFINITIONS])
def test_compiles_on_both_engines(text: str) -> None:
    query = parse(text)
    sql = compile_sql.compile_definition(query, SCHEMA, NOW)
    assert sql.predicate.sql("duckdb")
    compile_polars.compile_definition(query, SCHEMA, NOW)


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_every_definition_runs_in_one_job(engine: str, tmp_path: Path) -> None:
    profiles, events = tmp_path / "profiles.parquet", tmp_path / "events"
    events.mkdir()
    _write_null_row(profiles, SCHEMA.profile, {"profile_id": "p1"})
    _write_null_row(events / "part-0.parquet", SCHEMA.event, {"profile_id": "p1", "_id": "e1"})
    definitions = [EngineDefinition(f"a{i:03d}", parse(text)) for i, text in enumerate(DEFINITIONS)]
    # Audiences the examples reference (inSegment) have members of their own: p1 in each.
    external = {}
    for audience in sorted(set().union(*(referenced_audiences(d.ast) for d in definitions))):
        external[audience] = tmp_path / f"external-{len(external)}.parquet"
        duckdb.sql(f"COPY (SELECT 'p1' AS profile_id) TO '{external[audience]}' (FORMAT parquet)")
    out = tmp_path / "pairs.parquet"
    result = evaluate(
        EvaluationRequest(
            definitions, profiles, events, NOW, out, SCHEMA, engine=engine, external_members=external
        )
    )
    assert set(result.counts) == {d.id for d in definitions}
    assert result.total_profiles == 1
    pairs = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0][0]
    assert pairs == sum(result.counts.values())
