"""Through the running Dagster daemon (``dagster-daemon run`` on the project's workspace.yaml, a temporary
DAGSTER_HOME): activating a schedule through the REST API makes Dagster report it running; deactivating stops it;
and the daemon, which loaded its workspace before the change, keeps that state."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import InstigatorStatus
from fastapi.testclient import TestClient
from running import wait_for

from segmentation_pipelines.api import create_app
from segmentation_pipelines.dagster_home import PROJECT_ROOT, dagster_env

from .conftest import dagster_command

BASE = "/data/core/ups/config/schedules"
DAEMON = Path(sys.executable).with_name("dagster-daemon")


def _schedule_status(dagster_home: Path, name: str):
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        states = [s for s in instance.all_instigator_state() if s.instigator_name == name]
        return states[0].status if states else None


@pytest.mark.timeout(120)
@pytest.mark.skipif(not DAEMON.exists(), reason="dagster-daemon is not installed in this environment")
def test_api_state_changes_take_effect_in_the_running_daemon(settings, ctx, monkeypatch, tmp_path):
    env = dagster_env(settings)  # prepares DAGSTER_HOME = <home>/dagster with the project's dagster.yaml
    dagster_home = Path(env["DAGSTER_HOME"])
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    api = TestClient(create_app(settings))
    created = api.post(
        BASE,
        json={
            "name": "nightly",
            "type": "batch_segmentation",
            "properties": {"segments": ["*"]},
            "schedule": "0 0 1 * * ?",
        },
    ).json()
    name = created["dagster"]["scheduleName"]
    assert created["state"] == "inactive"

    argv = [str(DAEMON), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")]
    with (tmp_path / "daemon.log").open("w") as log, dagster_command(argv, env, log) as daemon:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            wait_for(
                lambda: "SCHEDULER" in instance.get_daemon_heartbeats(),
                timeout=60,
                what="the scheduler daemon",
                every=0.5,
            )
        assert _schedule_status(dagster_home, name) in (None, InstigatorStatus.STOPPED)

        response = api.patch(
            f"{BASE}/{created['id']}", json=[{"op": "add", "path": "/state", "value": "active"}]
        )
        assert response.status_code == 204
        assert _schedule_status(dagster_home, name) == InstigatorStatus.RUNNING
        assert api.get(f"{BASE}/{created['id']}").json()["state"] == "active"

        time.sleep(
            3
        )  # a daemon iteration runs over the state: it must keep it (its workspace has the schedule)
        assert _schedule_status(dagster_home, name) == InstigatorStatus.RUNNING
        assert daemon.poll() is None

        response = api.patch(
            f"{BASE}/{created['id']}", json=[{"op": "add", "path": "/state", "value": "inactive"}]
        )
        assert response.status_code == 204
        assert _schedule_status(dagster_home, name) == InstigatorStatus.STOPPED

        response = api.patch(
            f"{BASE}/{created['id']}", json=[{"op": "add", "path": "/state", "value": "active"}]
        )
        assert _schedule_status(dagster_home, name) == InstigatorStatus.RUNNING
        api.delete(f"{BASE}/{created['id']}")
        assert _schedule_status(dagster_home, name) == InstigatorStatus.STOPPED
    assert "Traceback" not in (tmp_path / "daemon.log").read_text(), (tmp_path / "daemon.log").read_text()[
        -3000:
    ]
    shutil.rmtree(dagster_home, ignore_errors=True)
