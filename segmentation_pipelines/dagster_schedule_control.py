"""Schedule states in Dagster: make a catalog schedule's state (active / inactive / deleted) take effect now.

Dagster-side infrastructure of :mod:`segmentation_pipelines.service.schedules` (which imports no Dagster
internals): GraphQL against a webserver when one is configured, else the instance's stored instigator state.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import httpx
from dagster import DagsterInstance
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, ScheduleInstigatorData
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._time import get_current_timestamp

from segmentation_pipelines.code_location import request_reload
from segmentation_pipelines.dagster_launcher import definitions_scope
from segmentation_pipelines.launcher import dagster_schedule_name
from segmentation_pipelines.settings import Settings

log = logging.getLogger(__name__)

ACTIVE = "active"


class DagsterScheduleControl:
    """Make a schedule's catalog state take effect in Dagster now (best effort: failures are logged).

    The state is written explicitly (``RUNNING`` / ``STOPPED``) in the instance, so it holds whatever definitions a
    process has loaded (the daemon refreshes its workspace only every 60 s); the daemon matches it to its schedule
    by selector (location, repository and schedule names).

    * With a webserver (``settings.dagster_url``): GraphQL ``startSchedule`` / ``stopRunningSchedule`` on the
      definitions the webserver has, then a (debounced, background) reload of the code location.
    * Else, with a prepared Dagster instance (``settings.dagster_home``): load the code location in this process
      and write the schedule's state in the instance.
    * Else nothing: the next code-location load applies ``default_status``.

    Whatever Dagster believes, a tick fires only if the catalog says ``active`` (:meth:`SchedulesService.fire`).
    """

    repository_name = "__repository__"  # the repository of a @dg.definitions location

    def __init__(self, settings: Settings):
        self.settings = settings

    def apply(self, schedule_id: str, schedule_name: str, state: str | None) -> None:
        name = dagster_schedule_name(schedule_id, schedule_name)
        try:
            if self.settings.dagster_url:
                self._apply_graphql(name, state)
            elif (self.settings.dagster_home / "dagster.yaml").is_file():
                self._apply_instance(name, state)
        except Exception:  # the catalog write stands; default_status applies on the next load
            log.exception("Could not apply state %s of schedule %s in Dagster", state, name)

    def _apply_instance(self, name: str, state: str | None) -> None:

        origin = InProcessCodeLocationOrigin(
            loadable_target_origin=LoadableTargetOrigin(
                executable_path=sys.executable, module_name=self.settings.definitions_module
            ),
            location_name=self.settings.code_location_name,
        )
        # Loading a location sets Dagster's process-wide DefinitionsLoadContext (to RECONSTRUCTION, with this
        # load's pinned snapshots) and leaves it set: scope it, or later loads in this process would get stale state.
        # The scope also makes this instance's defs-state storage current (see dagster_runs.definitions_scope).
        with DagsterInstance.from_config(str(self.settings.dagster_home)) as instance:
            with definitions_scope(instance), origin.create_location(instance) as location:
                repo = location.get_repository(self.repository_name)
                if repo.has_schedule(name):
                    write_schedule_state(instance, repo.get_schedule(name), running=state == ACTIVE)
                    return
            # Deleted: stop whatever state is stored under its name (the daemon drops orphaned states later).
            for stored in instance.all_instigator_state():
                if stored.instigator_name == name and stored.is_running:
                    instance.stop_schedule(stored.instigator_origin_id, stored.selector_id, None)

    def _apply_graphql(self, name: str, state: str | None) -> None:
        # The state is set on the definitions the webserver has now (fast); the reload (debounced, in the
        # background) brings the new definitions. A schedule the webserver does not know yet is new: once the
        # reload lands it runs according to its default status, which is its catalog state.
        self._graphql_set_state(name, state)
        request_reload(self.settings)

    def _graphql_set_state(self, name: str, state: str | None) -> bool:
        """Start or stop ``name`` through GraphQL; False when the webserver does not know the schedule."""
        selector = {
            "repositoryLocationName": self.settings.code_location_name,
            "repositoryName": self.repository_name,
            "scheduleName": name,
        }
        found = self._graphql(
            "query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { __typename "
            "... on Schedule { scheduleState { id selectorId status } } } }",
            {"s": selector},
        )["scheduleOrError"]
        if found.get("__typename") != "Schedule":
            return False
        current = found["scheduleState"]
        if state == ACTIVE:
            self._graphql(
                "mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) { __typename } }",
                {"s": selector},
            )
        elif current["status"] == "RUNNING":
            self._graphql(
                "mutation($o: String, $sel: String) { stopRunningSchedule(scheduleOriginId: $o, "
                "scheduleSelectorId: $sel) { __typename } }",
                {"o": current["id"], "sel": current["selectorId"]},
            )
        return True

    def _graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:

        url = self.settings.dagster_url.rstrip("/")
        url = (url if "://" in url else f"http://{url}") + "/graphql"
        response = httpx.post(url, json={"query": query, "variables": variables}, timeout=60).json()
        if response.get("errors"):
            raise RuntimeError(f"Dagster GraphQL: {response['errors']}")
        return response["data"]


def write_schedule_state(instance, remote_schedule, running: bool) -> None:
    """Store ``RUNNING`` / ``STOPPED`` for a schedule in the Dagster instance, whatever its ``default_status``.

    Like ``instance.start_schedule`` / ``stop_schedule``, except that those do nothing when the schedule's
    ``default_status`` already matches, which would leave a daemon with older definitions in the old state.
    """

    status = InstigatorStatus.RUNNING if running else InstigatorStatus.STOPPED
    data = ScheduleInstigatorData(remote_schedule.cron_schedule, get_current_timestamp() if running else None)
    stored = instance.get_instigator_state(
        remote_schedule.get_remote_origin_id(), remote_schedule.selector_id
    )
    if stored is None:
        instance.add_instigator_state(
            InstigatorState(remote_schedule.get_remote_origin(), InstigatorType.SCHEDULE, status, data)
        )
    elif stored.status != status:
        instance.update_instigator_state(stored.with_status(status).with_data(data))
