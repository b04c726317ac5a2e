"""Spark against DuckDB: hypothesis' well-typed definitions and small stores of the DuckDB/Polars differential
(tests/pql_compile/generators.py), bounded (Spark plans each batch in seconds, on a shared machine)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pql.compile.generators import assert_engines_agree, boolean, event_row, profile_row

pytestmark = pytest.mark.slow


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    profiles=st.lists(profile_row, min_size=6, max_size=6),
    events=st.lists(event_row, max_size=25),
    texts=st.lists(boolean(), min_size=16, max_size=16),
)
def test_spark_and_duckdb_agree(tmp_path_factory, profiles, events, texts) -> None:
    assert_engines_agree(tmp_path_factory.mktemp("diff"), ("duckdb", "spark"), profiles, events, texts)
