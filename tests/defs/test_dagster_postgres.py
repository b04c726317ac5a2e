"""A trivial asset materialized against a Dagster instance on the real PostgreSQL (deploy/postgres/dagster.yaml)."""

from __future__ import annotations

import dagster as dg
import pytest

from segmentation_pipelines.dagster_home import prepare_dagster_home


@dg.asset
def answer() -> int:
    return 42


@pytest.mark.postgres
def test_materialize_on_postgres_instance(settings, pg_url, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_URL", pg_url)
    home = prepare_dagster_home(settings)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        result = dg.materialize([answer], instance=instance)
        assert result.success
        run_id = result.run_id

    # A second instance (another process would do the same) reads the run and the materialization back.
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        event = instance.get_latest_materialization_event(dg.AssetKey("answer"))
        assert event is not None and event.run_id == run_id
