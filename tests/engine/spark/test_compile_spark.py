"""The Spark compiler without a Spark: what it renders (Spark's higher-order functions, timestamp literals,
DATE_TRUNC) and what it refuses, with the construct named, where DuckDB accepts it."""

from __future__ import annotations

import pytest
from pql.compile.compile_fixture_data import NOW, SCHEMA

from segmentation_pipelines.pql import compile_spark, compile_sql, parse
from segmentation_pipelines.pql.lowering import CompileError


def _spark(text: str) -> str:
    c = compile_spark.compile_definition(parse(text), SCHEMA, NOW)
    return " ".join(compile_spark.sql(e) for e in [c.predicate, *c.aggregates.values()])


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        ("(?P<first>J)ohn", "named groups"),
        ("[[:alpha:]]+", "POSIX character classes"),
        ("(?U)J.*", "(?U) flag"),
    ],
)
def test_re2_syntax_java_reads_differently_is_refused_naming_it(pattern: str, construct: str) -> None:
    text = f'person.name.firstName matches "{pattern}"'
    assert compile_sql.compile_definition(parse(text), SCHEMA, NOW)  # DuckDB (RE2) reads it
    with pytest.raises(CompileError, match="not supported on Spark") as err:
        compile_spark.compile_definition(parse(text), SCHEMA, NOW)
    assert construct in str(err.value) and pattern in str(err.value)
    assert isinstance(compile_spark.refusal(parse(text), SCHEMA, NOW), CompileError)
    assert compile_spark.refusal(parse('person.name.firstName matches "^J"'), SCHEMA, NOW) is None


def test_list_lambdas_are_spark_higher_order_functions() -> None:
    sql = _spark("orders[price > loyalty.points].count() > 0 and person.scores.sum() > 2")
    assert "FILTER(`p`.`orders`, x1 -> " in sql and "AGGREGATE(" in sql
    assert "LIST_FILTER" not in sql and "LAMBDA" not in sql


def test_windows_are_timestamp_literals_and_ordered_lists_sort_by_time() -> None:
    sql = _spark(
        'chain(xEvent, timestamp, [A: WHAT(eventType = "a") COUNT(2), B: WHAT(eventType = "b") WHEN(today)])'
    )
    assert "CAST('2026-11-29 00:00:00' AS TIMESTAMP)" in sql
    assert "ARRAY_SORT(COLLECT_LIST(" in sql and "ARRAY_AGG" not in sql


def test_null_handling_of_array_functions_is_duckdbs() -> None:
    sql = _spark('"red" notIn person.favoriteColors and xEvent.eventType.distinct().count() = 2')
    assert "COALESCE(ARRAY_CONTAINS(" in sql  # no match is FALSE even when the array holds nulls
    assert "ARRAY_DISTINCT(FILTER(" in sql  # DuckDB's list_distinct drops nulls


def test_the_event_row_is_a_struct_of_the_event_columns() -> None:
    assert "MIN_BY(STRUCT(e.*), `e`.`timestamp`)" in _spark('xEvent[eventType = "a"].head().eventType = "a"')


def test_like_with_a_backslash_escapes_with_another_character() -> None:
    # DuckDB's LIKE has no escape character; Spark's default is the backslash.
    assert "LIKE 'a\\\\%' ESCAPE '!'" in _spark('person.name.firstName like "a\\\\%"')
    assert "ESCAPE" not in _spark('person.name.firstName like "a%"')


def test_pql_explain_prints_the_spark_plan_or_the_refusal(tmp_path) -> None:
    import json

    from click.testing import CliRunner

    from segmentation_pipelines.cli import main

    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps({"profile": {"person.name.firstName": "string"}, "event": {"timestamp": "date-time"}})
    )
    ok = CliRunner().invoke(
        main, ["pql", "explain", "--engine", "spark", "--schema", str(schema), 'person.name.firstName = "J"']
    )
    assert (
        ok.exit_code == 0
        and "SQL (Spark):" in ok.output
        and "`p`.`person`.`name`.`firstName` = 'J'" in ok.output
    )
    bad = CliRunner().invoke(
        main,
        [
            "pql",
            "explain",
            "--engine",
            "spark",
            "--schema",
            str(schema),
            'person.name.firstName matches "[[:alpha:]]"',
        ],
    )
    assert bad.exit_code == 1 and "POSIX character classes" in bad.output + (
        bad.stderr if bad.stderr_bytes else ""
    )
