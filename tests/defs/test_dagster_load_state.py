"""In-process loads of the code location do not depend on Dagster's process-wide load state.

Dagster keeps the current defs-state storage in a context variable that an instance sets when entered; an
instance entered and never exited in order (e.g. by a schedule context left open) leaves behind the storage of an
instance that is gone, and any ``DefinitionsLoadContext`` created afterwards fails with "Attempted to resolve
undefined DagsterInstance weakref". The service layer's loads (segment-job runs, schedule state) must still work.
"""

from __future__ import annotations

import gc

import dagster as dg
import pytest
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext, DefinitionsLoadType
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.storage.defs_state.base import set_defs_state_storage

from segmentation_pipelines import dagster_launcher as dagster_runs
from segmentation_pipelines.service.context import ServiceContext


def _storage_of_a_gone_instance():
    with dg.instance_for_test() as instance:
        storage = instance.defs_state_storage
    del instance
    gc.collect()
    return storage


@pytest.fixture
def leftover_storage():
    storage = _storage_of_a_gone_instance()
    with set_defs_state_storage(storage):  # what a leaked instance context leaves current
        with pytest.raises(DagsterInvariantViolationError, match="weakref"):
            DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION)  # a plain load breaks
        yield storage


def test_load_definitions_ignores_a_leftover_defs_state_storage(settings, monkeypatch, leftover_storage):
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    ctx = ServiceContext.create(settings, None, "prod")
    defs = dagster_runs.load_definitions(ctx.settings)
    assert defs.resolve_job_def("segment_job") is not None
    assert not DefinitionsLoadContext.is_set()


def test_schedule_state_is_written_despite_a_leftover_defs_state_storage(
    settings, monkeypatch, leftover_storage
):
    from dagster._core.scheduler.instigation import InstigatorStatus

    from segmentation_pipelines.dagster_home import prepare_dagster_home
    from segmentation_pipelines.service.schedules import SchedulesService

    home = prepare_dagster_home(settings)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    schedules = SchedulesService(ServiceContext.create(settings, None, "prod"))
    created = schedules.create(
        {
            "name": "nightly",
            "type": "batch_segmentation",
            "properties": {"segments": ["*"]},
            "schedule": "0 0 1 * * ?",
            "state": "active",
        }
    )
    name = created["dagster"]["scheduleName"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        states = [s.status for s in instance.all_instigator_state() if s.instigator_name == name]
    assert states == [InstigatorStatus.RUNNING]
