"""The external-audience tests' home: a fresh home under the test's folder, and the environment a user's
``segmentation-pipelines`` and Dagster would read it from."""

from __future__ import annotations

import pytest

from segmentation_pipelines.settings import get_settings


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SEGMENTATION_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(get_settings(home=home).dagster_home))
    return home
