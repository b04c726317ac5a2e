"""Every Dagster definition of the code location loads: in-process, and through workspace.yaml like `dagster dev`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from segmentation_pipelines.dagster_home import PROJECT_ROOT


@pytest.fixture(autouse=True)
def empty_home(tmp_path, monkeypatch):
    """The definitions load from a fresh, empty home: not from whatever ``./.segmentation`` holds."""
    monkeypatch.setenv("SEGMENTATION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SEGMENTATION_CATALOG_URL", raising=False)


def _load_definitions() -> dg.Definitions:
    from segmentation_pipelines import definitions

    target = definitions.defs
    # @dg.definitions wraps the function lazily; Dagster calls it when the code location loads.
    return target.load_fn() if hasattr(target, "load_fn") else target


def test_every_domain_is_merged_by_name():
    """Each folder of defs/ exposes defs() and is one of the domains definitions.py merges."""
    import importlib
    import pkgutil

    from segmentation_pipelines import defs as defs_package

    source = (PROJECT_ROOT / "segmentation_pipelines" / "definitions.py").read_text()
    for info in pkgutil.iter_modules(defs_package.__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"segmentation_pipelines.defs.{info.name}")
        assert isinstance(module.defs(), dg.Definitions), info.name
        assert f"{info.name}.defs()" in source, f"definitions.py does not merge defs/{info.name}"


def test_definitions_resolve_every_object():
    defs = _load_definitions()
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    # Resolving jobs, schedules, sensors and the asset graph is what a code server does on load.
    repo.get_all_jobs()
    for schedule in repo.schedule_defs:
        assert schedule.name
    for sensor in repo.sensor_defs:
        assert sensor.name
    assert repo.asset_graph is not None


def test_dagster_definitions_validate_on_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}  # SEGMENTATION_HOME: the fresh home of empty_home
    (tmp_path / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(PROJECT_ROOT / "workspace.yaml")],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "All code locations passed validation" in output
