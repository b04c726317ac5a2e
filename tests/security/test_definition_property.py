"""Property: every definition ``check()`` accepts compiles on both engines and evaluates on both (the guarantee a
write relies on to store nothing a job would fail on). Expressions: well-typed ones (the differential test's
generator), hostile ones (any regex pattern, any string literal, lone surrogates, nesting up to past the limit,
huge numbers) and mixtures. Bounded for CI: ``PROPERTY_EXAMPLES`` (default 30)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pql.compile.compile_fixture_data import NOW, SCHEMA, write_store  # noqa: E402
from pql.compile.generators import STR_FIELDS, boolean  # noqa: E402

from segmentation_pipelines import pql  # noqa: E402
from segmentation_pipelines.engine import EngineDefinition, EvaluationRequest, evaluate  # noqa: E402
from segmentation_pipelines.pql import compile_polars, compile_sql  # noqa: E402
from segmentation_pipelines.pql.limits import MAX_DEPTH  # noqa: E402

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "30"))


def _pql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


any_text = st.text(st.characters(codec=None), max_size=12) | st.sampled_from(
    [
        "(unclosed[",
        "(?=a)b",
        "a++",
        "\\1",
        "[a-",
        "\\p{javaLowerCase}",
        "a{2,1}",
        "\ud800",
        "\udfff\ud800",
        "",
    ]
)


@st.composite
def hostile(draw) -> str:
    field = draw(st.sampled_from(STR_FIELDS))
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return f"{field}.matches({_pql_string(draw(any_text))})"
    if kind == 1:
        return f"{field}.regexGroup({_pql_string(draw(any_text))}) = {_pql_string(draw(any_text))}"
    if kind == 2:
        return f"{field} = {_pql_string(draw(any_text))}"
    if kind == 3:
        return f"{field}.like({_pql_string(draw(any_text))})"
    if kind == 4:
        return f"loyalty.points > {draw(st.sampled_from(['1e999', '-1e999', '9223372036854775808', '0.5', '-0']))}"
    return f"{field}.contains({_pql_string(draw(any_text))}, {draw(st.sampled_from(['true', 'false']))})"


@st.composite
def definition(draw) -> str:
    atom = draw(st.one_of(boolean(1), hostile()))
    depth = draw(st.sampled_from([0, 1, 3, MAX_DEPTH // 2, MAX_DEPTH - 8, MAX_DEPTH - 4, MAX_DEPTH + 2]))
    return "not(" * depth + atom + ")" * depth


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("property_store"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(text=definition())
def test_what_check_accepts_compiles_and_evaluates_on_both_engines(store, tmp_path_factory, text):
    try:
        checked = pql.check(pql.parse(text), SCHEMA)
    except pql.PQLError:
        return  # refused with a PQL error: a 400 at write time
    compile_sql.compile_definition(checked, SCHEMA, NOW).sql()
    compile_polars.compile_definition(checked, SCHEMA, NOW)
    profiles, events = store
    out = tmp_path_factory.mktemp("property")
    for engine in ("duckdb", "polars"):
        evaluate(
            EvaluationRequest(
                [EngineDefinition("d", checked)],
                profiles,
                events,
                NOW,
                out / f"{engine}.parquet",
                SCHEMA,
                engine=engine,
            )
        )
        assert (out / f"{engine}.parquet").exists()
