"""The Dagster side of jobs, seen from the service layer: the instance, in-process runs, termination, run status.

Any process that has the home folder has the Dagster instance (``settings.dagster_home``, prepared from the
project's ``dagster.yaml``), so the REST API can terminate a run that a daemon launched, and a script can run a job
in-process and have it recorded like any other run (it shows in the Dagster UI).

In-process runs carry a ``segmentation/worker`` tag (``host:pid``): a run whose process died (killed mid-run) has
no one left to end it, so the reconciliation pass (:func:`worker_alive`) marks it failed.

Loading the code location in this process goes through :func:`definitions_scope`: Dagster keeps two process-wide
values for a load (the ``DefinitionsLoadContext`` and, in a context variable, the current instance's
``DefsStateStorage``, read when a load context is created). Both are set by whatever last entered an instance or
loaded a location and are never reset by some Dagster paths (e.g. a schedule context's ``log`` enters an instance
it never exits); a load that inherits them reads a storage whose instance is gone ("Attempted to resolve undefined
DagsterInstance weakref") or a stale pinned snapshot. A scoped load sets both from a live instance and restores them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg

from segmentation_pipelines.dagster_home import prepare_dagster_home
from segmentation_pipelines.service.segment_jobs import TAG_JOB_ID
from segmentation_pipelines.settings import Settings

if TYPE_CHECKING:
    from segmentation_pipelines.service.context import ServiceContext

log = logging.getLogger(__name__)

TAG_WORKER = "segmentation/worker"
TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

_instances: dict[str, dg.DagsterInstance] = {}
_lock = threading.Lock()
_run_lock = threading.RLock()


def instance_for(settings: Settings) -> dg.DagsterInstance:
    """The Dagster instance of a home folder (one per process and folder)."""
    home = str(settings.dagster_home)
    with _lock:
        if home not in _instances:
            prepare_dagster_home(settings)
            _instances[home] = dg.DagsterInstance.from_config(home)
        return _instances[home]


def new_run_id() -> str:
    return str(uuid.uuid4())


def worker_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def definitions_scope(instance: dg.DagsterInstance) -> Iterator[None]:
    """Load definitions in this process as a code server does: a fresh ``INITIALIZATION`` load context, with
    ``instance``'s defs-state storage current; whatever was set before is restored afterwards."""
    from dagster._core.definitions.definitions_load_context import (
        DefinitionsLoadContext,
        DefinitionsLoadType,
    )
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(instance.defs_state_storage):
        fresh = DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION)
        with DefinitionsLoadContext.scoped(fresh):
            yield


def load_definitions(ctx: ServiceContext) -> dg.Definitions:
    """The code location's definitions, loaded now (so definitions created a moment ago are in it).

    ``ctx.extras["dagster_definitions"]`` (a ``Definitions``) replaces them, for callers that bring their own.
    """
    given = ctx.extras.get("dagster_definitions")
    if given is not None:
        return given
    from segmentation_pipelines.definitions import defs

    with definitions_scope(instance_for(ctx.settings)):
        loaded = defs()
        loaded.get_repository_def()  # resolved (and cached) now, inside the scope, not lazily by a caller
        return loaded


@contextmanager
def settings_environment(settings: Settings) -> Iterator[None]:
    """The code location reads its settings from ``SEGMENTATION_*`` variables (like a deployed one): point them at
    ``settings`` while an in-process run loads and executes. In-process runs of one process take turns."""
    values = {
        "SEGMENTATION_HOME": str(settings.home),
        "SEGMENTATION_CATALOG_URL": settings.catalog_url,
        "SEGMENTATION_ENGINE": settings.engine,
        "DAGSTER_HOME": str(settings.dagster_home),
    }
    with _run_lock:
        saved = {k: os.environ.get(k) for k in values}
        try:
            _set_environment(values)
            yield
        finally:
            _set_environment(saved)


def _set_environment(values: dict[str, str | None]) -> None:
    """Set each variable to its value, or unset it where the value is None."""
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def execute_in_process(ctx: ServiceContext, request: dict[str, Any], run_id: str) -> tuple[str, Any]:
    """Run ``request`` (from ``SegmentJobsService.run_request_for``) in this process; ``(run status, error)``."""
    instance = instance_for(ctx.settings)
    with settings_environment(ctx.settings), definitions_scope(instance):
        job = load_definitions(ctx).resolve_job_def(request["job_name"])
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(parts) for parts in request["asset_selection"]],
            tags={**request["tags"], TAG_WORKER: worker_tag()},
            run_id=run_id,
            raise_on_error=False,
            # The run's full event log stays in the instance (Dagster UI); the caller's terminal gets progress only.
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
    status = result.dagster_run.status.value
    return status, (run_errors(instance, run_id) if status == "FAILURE" else None)


def find_run_id(settings: Settings, job_id: str) -> str | None:
    """The newest run carrying ``segmentation/job_id = job_id`` (a sensor-launched run the job has not seen yet)."""
    runs = instance_for(settings).get_runs(dg.RunsFilter(tags={TAG_JOB_ID: job_id}), limit=1)
    return runs[0].run_id if runs else None


def run_status(settings: Settings, run_id: str) -> str | None:
    run = instance_for(settings).get_run_by_id(run_id)
    return None if run is None else run.status.value


def terminate(settings: Settings, run_id: str) -> bool:
    """Ask Dagster to terminate a run, from any process (``run_coordinator.cancel_run``).

    A queued run is cancelled at once; a launched one gets a termination request through its code server; an
    in-process run is marked ``CANCELING`` (its evaluation sees the job ``CANCELLING`` and stops).
    """
    instance = instance_for(settings)
    run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished:
        return False
    return bool(instance.run_coordinator.cancel_run(run_id))


def mark_canceling(settings: Settings, run_id: str) -> None:
    """Record that a running run is being cancelled (its evaluation noticed the job's cancel itself)."""
    instance = instance_for(settings)
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status in (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED):
        instance.report_run_canceling(run, message="The segment job of this run was cancelled.")


def run_errors(instance: dg.DagsterInstance, run_id: str) -> list[dict[str, str]]:
    """The job's ``errors`` of a failed run: each failed step's error, else the run failure message."""
    errors: list[dict[str, str]] = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        info = getattr(getattr(event, "step_failure_data", None), "error", None)
        if info is not None:
            message, stack = info.message.strip(), info.stack
            cause = info.cause
            while cause is not None:  # Dagster wraps user errors: the innermost cause says what went wrong
                message, stack = f"{message} Caused by: {cause.message.strip()}", cause.stack
                cause = cause.cause
            errors.append(
                {
                    "code": "SEGP-200500",
                    "msg": f"step {event.step_key}: {message}",
                    "callStack": "".join(stack),
                }
            )
    if not errors:
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
            errors.append({"code": "SEGP-200500", "msg": record.dagster_event.message or "The run failed."})
    return errors


def worker_alive(run: dg.DagsterRun) -> bool | None:
    """Whether the process of an in-process run still lives (``None``: not an in-process run, or another host)."""
    tag = run.tags.get(TAG_WORKER)
    if not tag:
        return None
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(int(pid))


def _not_zombie(pid: int) -> bool:
    # A killed child that its parent has not reaped yet still answers kill(0): read its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True
