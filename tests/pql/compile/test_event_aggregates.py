"""The SQL compiler hands the engines each event aggregate as the lowering describes it (``EventAggregate``), and
says which comparisons are mask bits, required column values and item tests, so the engine recognises no SQL."""

from __future__ import annotations

from sqlglot import exp

from pql.compile.compile_fixture_data import NOW, SCHEMA
from segmentation_pipelines.pql import compile_polars, compile_sql, parse


def _compile(text: str) -> compile_sql.CompiledSQL:
    return compile_sql.compile_definition(parse(text), SCHEMA, NOW)


def test_each_aggregate_is_described_by_what_it_computes() -> None:
    c = _compile('xEvent[eventType = "addToCart"].sum(commerce.order.priceTotal) > 3')
    [(name, spec)] = c.specs.items()
    assert (spec.fn, spec.order) == ("sum", None)
    assert spec.value.sql("duckdb") == '"e"."commerce"."order"."priceTotal"'
    assert "addToCart" in spec.cond.sql("duckdb")
    assert spec.expression is c.aggregates[name]  # the backend's rendering, what other engines compute


def test_a_chain_is_described_as_its_steps_aggregates() -> None:
    c = _compile(
        'chain(xEvent, timestamp, [A: WHAT(eventType = "a"), B: WHAT(eventType = "b"), C: WHAT(eventType = "c")])'
    )
    assert sorted(s.fn for s in c.specs.values()) == ["max", "min", "timestamps"]


def test_a_comparison_with_a_constant_reads_a_bit_and_drops_the_compared_aggregate() -> None:
    c = _compile('xEvent[eventType = "addToCart"].max(commerce.order.priceTotal) > 10')
    [spec] = c.specs.values()
    assert spec.fn == "bool_or" and spec.value is None
    assert "> 10" in spec.cond.sql("duckdb") and "addToCart" in spec.cond.sql("duckdb")
    kept = _compile(
        'xEvent[eventType = "addToCart"].max(commerce.order.priceTotal) > 10 or xEvent.count() = 2'
    )
    assert sorted(s.fn for s in kept.specs.values()) == ["bool_or", "count"]
    # Polars computes the comparison as written.
    polars = compile_polars.compile_definition(
        parse('xEvent[eventType = "addToCart"].max(commerce.order.priceTotal) > 10'), SCHEMA, NOW
    )
    assert len(polars.aggregates) == 1


def test_required_values_and_item_tests_are_noted_on_the_conditions() -> None:
    c = _compile(
        'select X from xEvent where X.eventType = "a" and X.productListItems[SKU = "PS"].count() > 0'
    )
    [spec] = c.specs.values()
    nodes = list(spec.cond.walk())
    required = [compile_sql.requirement(n) for n in nodes if isinstance(n, exp.EQ)]
    assert [(col, lit.this) for col, lit in filter(None, required)] == [('"e"."eventType"', "a")]
    [items] = [compile_sql.some_item(n) for n in nodes if compile_sql.some_item(n) is not None]
    arr, var, field, value = items
    assert (arr.sql("duckdb"), field.this, value.this) == ('"e"."productListItems"', "SKU", "PS")
    # A flipped or counted-twice test is not an item test.
    for text in (
        'select X from xEvent where X.productListItems["PS" = SKU].count() > 0',
        'select X from xEvent where X.productListItems[SKU = "PS"].count() > 1',
    ):
        [spec] = _compile(text).specs.values()
        assert not [n for n in spec.cond.walk() if compile_sql.some_item(n) is not None], text
