"""The one implementation of :class:`segmentation_pipelines.launcher.Launcher`: runs in a Dagster instance.

Any process that has the home folder has the Dagster instance (``settings.dagster_home``, prepared from the
project's ``dagster.yaml``), so the REST API can terminate a run that a daemon launched, and a script can run a job
in-process and have it recorded like any other run (it shows in the Dagster UI).

In-process runs carry a ``segmentation/worker`` tag (``host:pid``): a run whose process died (killed mid-run) has
no one left to end it, so reconciliation ends it (:meth:`DagsterLauncher.end_lost_run`).

Loading the code location in this process goes through :func:`definitions_scope`: Dagster keeps two process-wide
values for a load (the ``DefinitionsLoadContext`` and, in a context variable, the current instance's
``DefsStateStorage``, read when a load context is created). Both are set by whatever last entered an instance or
loaded a location and are never reset by some Dagster paths (e.g. a schedule context's ``log`` enters an instance
it never exits); a load that inherits them reads a storage whose instance is gone ("Attempted to resolve undefined
DagsterInstance weakref") or a stale pinned snapshot. A scoped load sets both from a live instance and restores them.
The code location is the module ``workspace.yaml`` names (``settings.definitions_module``), imported by name as a
Dagster code server does.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext, DefinitionsLoadType
from dagster._core.storage.defs_state.base import set_defs_state_storage

from segmentation_pipelines.dagster_home import prepare_dagster_home
from segmentation_pipelines.dagster_sqlite import event_index_held
from segmentation_pipelines.launcher import (
    ERROR_RUN_FAILED,
    ERROR_WORKER_LOST,
    TAG_PARTITION,
    TAG_REQUEST_ID,
    TAG_STEP_WORKER,
    TAG_WORKER,
    TAG_WORKER_LOST,
    RunInfo,
    RunRequest,
)
from segmentation_pipelines.settings import Settings

log = logging.getLogger(__name__)

DAEMON_HEARTBEAT_FRESH_S = 60  # a daemon whose sensor heartbeat is older than this is taken as gone

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


def worker_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def definitions_scope(instance: dg.DagsterInstance) -> Iterator[None]:
    """Load definitions in this process as a code server does: a fresh ``INITIALIZATION`` load context, with
    ``instance``'s defs-state storage current; whatever was set before is restored afterwards."""

    with set_defs_state_storage(instance.defs_state_storage):
        fresh = DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION)
        with DefinitionsLoadContext.scoped(fresh):
            yield


def load_definitions(settings: Settings, given: dg.Definitions | None = None) -> dg.Definitions:
    """The code location's definitions, loaded now (so definitions created a moment ago are in it); ``given``
    replaces them, for callers that bring their own."""
    if given is not None:
        return given
    module = importlib.import_module(settings.definitions_module)
    with definitions_scope(instance_for(settings)):
        loaded = module.defs()
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
        "SEGMENTATION_SPARK_MASTER": settings.spark_master,
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
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# How Dagster words a process that died under a run: run monitoring ("Detected run worker status ...") and the
# multiprocess executor (a step failing with ChildProcessCrashException). Such a failure is a lost worker (200501).
_LOST_WORKER_WORDS = (
    "run worker status",
    "unexpectedly exited",
    "childprocesscrashexception",
    "worker process",
)


def _code_of(message: str) -> str:
    lowered = message.lower()
    return ERROR_WORKER_LOST if any(w in lowered for w in _LOST_WORKER_WORDS) else ERROR_RUN_FAILED


def run_errors(instance: dg.DagsterInstance, run_id: str) -> list[dict[str, str]]:
    """The ``errors`` of a failed run: each failed step's error, else the run failure message.

    The one reading of a run's errors: every writer of a request's outcome (run-status sensors, reconciliation,
    settle-on-read, in-process runs) calls it, so whichever writes first writes the same errors. A run ended as lost
    (tagged ``TAG_WORKER_LOST`` before it was failed) reports ``ERROR_WORKER_LOST`` whatever its messages say.
    """
    run = instance.get_run_by_id(run_id)
    lost = run is not None and TAG_WORKER_LOST in run.tags
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
                    "code": _code_of(message),
                    "msg": f"step {event.step_key}: {message}",
                    "callStack": "".join(stack),
                }
            )
    if not errors:
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
            message = record.dagster_event.message or "The run failed."
            errors.append({"code": _code_of(message), "msg": message})
    if lost:
        errors = [{**e, "code": ERROR_WORKER_LOST} for e in errors] or [
            {"code": ERROR_WORKER_LOST, "msg": "The process running this run died during the run."}
        ]
    return errors


def worker_alive(run: dg.DagsterRun) -> bool | None:
    """Whether the process of an in-process run still lives (``None``: not an in-process run, or another host)."""
    tag = run.tags.get(TAG_WORKER) or run.tags.get(TAG_STEP_WORKER)
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


def dagster_run_request(request: RunRequest) -> dg.RunRequest:
    """What a sensor returns for ``request``."""
    return dg.RunRequest(
        run_key=request.run_key,
        job_name=request.job_name,
        asset_selection=[dg.AssetKey(list(parts)) for parts in request.asset_selection],
        # The evaluation day travels as Dagster's own partition tag, which is all a run's partition is: a
        # RunRequest.partition_key would also have Dagster resolve the job's partitions at tick time.
        tags=request.all_tags,
    )


def loaded_asset_keys(context: dg.SensorEvaluationContext) -> set[dg.AssetKey] | None:
    """The asset keys of the code location a sensor tick runs in (None when the context has no repository): a run
    request naming any other key would fail the whole tick."""
    repository = context.repository_def
    return None if repository is None else set(repository.asset_graph.get_all_asset_keys())


class DagsterLauncher:
    """Runs requests in the Dagster instance of ``settings`` (see the module docstring)."""

    def __init__(self, settings: Settings, definitions: dg.Definitions | None = None):
        self.settings = settings
        self.definitions = definitions  # given by tests that bring their own code location

    @property
    def instance(self) -> dg.DagsterInstance:
        return instance_for(self.settings)

    def new_run_id(self) -> str:
        return str(uuid.uuid4())

    def execute(self, request: RunRequest, run_id: str) -> tuple[str, list[dict] | None]:
        instance = self.instance
        # event_index_held: the run's events (one "planned" and one materialization per asset) are written
        # without a checkpoint of Dagster's SQLite event index each (dagster_sqlite.py).
        with settings_environment(self.settings), definitions_scope(instance), event_index_held(instance):
            job = load_definitions(self.settings, self.definitions).resolve_job_def(request.job_name)
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey(list(parts)) for parts in request.asset_selection],
                tags={
                    **{k: v for k, v in request.all_tags.items() if k != TAG_PARTITION},
                    TAG_WORKER: worker_tag(),
                },
                partition_key=request.partition_key,
                run_id=run_id,
                raise_on_error=False,
                # The run's full event log (tracebacks included) stays in the instance, for the Dagster UI; the
                # caller's terminal gets warnings only, and the request's errors carry what failed.
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            )
        status = result.dagster_run.status.value
        return status, (run_errors(instance, run_id) if status == "FAILURE" else None)

    def _info(self, run: dg.DagsterRun | None) -> RunInfo | None:
        if run is None:
            return None
        lost = not run.is_finished and worker_alive(run) is False
        return RunInfo(run.run_id, run.status.value, dict(run.tags), worker_lost=lost)

    def find_run(self, request_id: str, run_id: str | None = None) -> RunInfo | None:
        instance = self.instance
        if run_id:
            return self._info(instance.get_run_by_id(run_id))
        runs = instance.get_runs(dg.RunsFilter(tags={TAG_REQUEST_ID: request_id}), limit=1)  # newest first
        return self._info(runs[0] if runs else None)

    def terminate(self, run_id: str) -> str | None:
        """``run_coordinator.cancel_run``: a queued run is cancelled at once; a launched one gets a termination
        request through its code server; an in-process run is marked ``CANCELING`` (its work notices and stops)."""
        instance = self.instance
        run = instance.get_run_by_id(run_id)
        if run is None:
            return None
        if not run.is_finished:
            instance.run_coordinator.cancel_run(run_id)
            run = instance.get_run_by_id(run_id) or run
        return run.status.value

    def mark_canceling(self, run_id: str) -> None:
        instance = self.instance
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED):
            instance.report_run_canceling(run, message="The request of this run was cancelled.")

    def end_lost_run(self, run_id: str) -> RunInfo | None:
        instance = self.instance
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished or worker_alive(run) is not False:
            return self._info(run)
        worker = run.tags.get(TAG_WORKER) or run.tags.get(TAG_STEP_WORKER)
        message = f"The process running this run ({worker}) is gone."
        # Tagged before the run is failed: a reader that sees it failed also sees why (run_errors).
        instance.add_run_tags(run_id, {TAG_WORKER_LOST: str(worker)})
        instance.report_engine_event(message, run)
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message=message)
        else:
            instance.report_run_failed(run, message=message)
        return self._info(instance.get_run_by_id(run_id))

    def errors(self, run_id: str) -> list[dict]:
        return run_errors(self.instance, run_id)

    def daemon_running(self) -> bool:
        """A sensor daemon whose heartbeat is fresh (``dagster dev`` and ``dagster-daemon run`` write one)."""
        try:
            beat = self.instance.get_daemon_heartbeats().get("SENSOR")
        except Exception:  # storage not ready: assume none
            return False
        return beat is not None and time.time() - float(beat.timestamp) < DAEMON_HEARTBEAT_FRESH_S
