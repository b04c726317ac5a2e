"""The two instance configurations load with Dagster's own schema, and the right one is selected."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest
import yaml

from segmentation_pipelines.dagster_home import (
    DEFAULT_CONFIG,
    POSTGRES_CONFIG,
    dagster_env,
    prepare_dagster_home,
    selected_config,
)


def _instance_from(config, tmp_path, monkeypatch) -> dg.DagsterInstance:
    shutil.copyfile(config, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return dg.DagsterInstance.get()


def test_default_instance_is_sqlite_with_queue_monitoring_and_threads(tmp_path, monkeypatch):
    instance = _instance_from(DEFAULT_CONFIG, tmp_path, monkeypatch)
    try:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert str(tmp_path) in instance.root_directory
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["cancel_timeout_seconds"] == 180
        assert instance.get_settings("sensors") == {"use_threads": True, "num_workers": 4}
        assert instance.get_settings("schedules") == {"use_threads": True, "num_workers": 2}
        assert instance.get_settings("telemetry") == {"enabled": False}
        assert instance.nux_enabled is False  # GraphQL shouldShowNux: no first-visit pop-up over the UI
    finally:
        instance.dispose()


def test_postgres_config_differs_from_default_only_in_storage():
    default = yaml.safe_load(DEFAULT_CONFIG.read_text())
    postgres = yaml.safe_load(POSTGRES_CONFIG.read_text())
    assert postgres.pop("storage") == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    assert "storage" not in default
    assert postgres == default


def test_selection_follows_dagster_pg_url():
    assert selected_config({}) == DEFAULT_CONFIG
    assert selected_config({"DAGSTER_PG_URL": "postgresql+psycopg2://u@h:5432/d"}) == POSTGRES_CONFIG
    with pytest.raises(ValueError, match=r"postgresql\+psycopg2://"):
        selected_config({"DAGSTER_PG_URL": "postgresql://u@h:5432/d"})


def test_prepare_dagster_home_copies_the_selected_config(settings):
    home = prepare_dagster_home(settings, env={})
    assert home == settings.dagster_home
    assert (home / "dagster.yaml").read_text() == DEFAULT_CONFIG.read_text()
    prepare_dagster_home(settings, env={"DAGSTER_PG_URL": "postgresql+psycopg2://u@h/d"})
    assert (home / "dagster.yaml").read_text() == POSTGRES_CONFIG.read_text()
    env = dagster_env(settings, env={"PATH": "/bin"})
    assert env["DAGSTER_HOME"] == str(home)
    assert env["SEGMENTATION_HOME"] == str(settings.home)
    assert (home / "dagster.yaml").read_text() == DEFAULT_CONFIG.read_text()
