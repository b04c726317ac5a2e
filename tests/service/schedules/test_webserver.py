"""With a Dagster webserver configured (``SEGMENTATION_DAGSTER_URL``): schedule changes through the REST API go to
Dagster over GraphQL (start/stop, code-location reload), and the webserver reports the schedule's status."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from running import free_port

from segmentation_pipelines.api import create_app
from segmentation_pipelines.dagster_home import PROJECT_ROOT, dagster_env

from .conftest import dagster_command

BASE = "/data/core/ups/config/schedules"
WEBSERVER = Path(sys.executable).with_name("dagster-webserver")
STATUS_QUERY = """query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) {
  __typename ... on Schedule { cronSchedule executionTimezone scheduleState { status } } } }"""


def _eventually(read, expected, timeout: float = 60):
    """Poll ``read()`` until it returns ``expected`` (the code-location reload runs in the background)."""
    deadline = time.monotonic() + timeout
    while (value := read()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, expected {expected!r}"
        time.sleep(0.5)


def _schedule(url: str, name: str) -> dict:
    selector = {
        "repositoryLocationName": "segmentation_pipelines",
        "repositoryName": "__repository__",
        "scheduleName": name,
    }
    response = httpx.post(
        f"{url}/graphql", json={"query": STATUS_QUERY, "variables": {"s": selector}}, timeout=30
    )
    return response.json()["data"]["scheduleOrError"]


@pytest.mark.slow  # a webserver and several code-location reloads: about a minute
@pytest.mark.timeout(240)
@pytest.mark.skipif(not WEBSERVER.exists(), reason="dagster-webserver is not installed in this environment")
def test_api_changes_reach_the_webserver(settings, ctx, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dagster_env(settings)
    argv = [str(WEBSERVER), "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    with (tmp_path / "webserver.log").open("w") as log, dagster_command(argv, env, log) as server:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the webserver did not start"
            assert server.poll() is None, (tmp_path / "webserver.log").read_text()[-2000:]
            time.sleep(0.5)

        api = TestClient(create_app(settings.model_copy(update={"dagster_url": url})))
        created = api.post(
            BASE,
            json={
                "name": "nightly",
                "type": "batch_segmentation",
                "properties": {"segments": ["*"]},
                "schedule": "0 15 6 ? * MON-FRI",
                "timezone": "Europe/Berlin",
                "state": "active",
            },
        ).json()
        name = created["dagster"]["scheduleName"]

        def seen():
            found = _schedule(url, name)
            if found["__typename"] != "Schedule":
                return found["__typename"]
            return (found["cronSchedule"], found["executionTimezone"], found["scheduleState"]["status"])

        # created after the webserver loaded: the API reloads the location, and the schedule runs
        _eventually(seen, ("15 6 * * MON-FRI", "Europe/Berlin", "RUNNING"))

        started = time.monotonic()
        api.patch(f"{BASE}/{created['id']}", json=[{"op": "add", "path": "/state", "value": "inactive"}])
        assert time.monotonic() - started < 5  # the reload does not hold the request
        assert seen()[2] == "STOPPED"  # at once, before the reload

        api.patch(
            f"{BASE}/{created['id']}", json=[{"op": "add", "path": "/schedule", "value": "0 0 7 ? * SAT"}]
        )
        _eventually(seen, ("0 7 * * SAT", "Europe/Berlin", "STOPPED"))

        api.patch(f"{BASE}/{created['id']}", json=[{"op": "add", "path": "/state", "value": "active"}])
        assert seen()[2] == "RUNNING"

        api.delete(f"{BASE}/{created['id']}")
        _eventually(seen, "ScheduleNotFoundError")
