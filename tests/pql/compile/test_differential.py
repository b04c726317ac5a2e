"""Differential testing: hypothesis generates well-typed definitions (profile conditions, strings, lists, every
``occurs`` form, event aggregates, chains) and small profile stores (with nulls, empty arrays and timestamps on
window boundaries); the DuckDB and Polars engines must give identical members on every case."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pql.compile.generators import assert_engines_agree, boolean, event_row, profile_row


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    profiles=st.lists(profile_row, min_size=6, max_size=6),
    events=st.lists(event_row, max_size=25),
    texts=st.lists(boolean(), min_size=8, max_size=8),
)
def test_duckdb_and_polars_agree(tmp_path_factory, profiles, events, texts) -> None:
    assert_engines_agree(tmp_path_factory.mktemp("diff"), ("duckdb", "polars"), profiles, events, texts)
