"""The path a new user walks, through the public client only: in-process, and over HTTP against a real
``segmentation-pipelines serve`` subprocess (no Dagster daemon: the API's runner runs the jobs).

Own files -> datasets and ingestion (the profile store follows) -> a profile lookup -> definitions -> a job ->
members -> more ingestion -> a second job -> realized / existing / exited with their qualification times.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service.segment_jobs.scenario import EXPECTED_T, EXPECTED_T1, T1, Scenario, T

from segmentation_pipelines import SegmentationClient

SCRIPT = str(Path(sys.executable).with_name("segmentation-pipelines"))


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


def _daemons_healthy(dagster_url: str) -> bool:
    """Dagster's own GraphQL API: is every daemon (sensors and the run queue included) healthy?"""
    try:
        answer = httpx.post(f"{dagster_url}/graphql", json={"query": DAEMON_HEALTH}, timeout=5).json()
    except (httpx.TransportError, ValueError):
        return False
    statuses = answer.get("data", {}).get("instance", {}).get("daemonHealth", {}).get("allDaemonStatuses") or []
    return bool(statuses) and all(s["healthy"] for s in statuses)


def run_command(home: Path, command: str) -> Iterator[str]:
    """``segmentation-pipelines serve`` (or ``dev``) on free ports, as a user starts it; yields the API's URL once
    it answers (for ``dev``, once Dagster's daemons are healthy too)."""
    port, dagster_port = free_port(), free_port()
    args = [SCRIPT, command, "--port", str(port), "--home", str(home)]
    if command == "dev":
        args += ["--dagster-port", str(dagster_port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENTATION_", "DAGSTER_"))}
    log_path = home.parent / f"{command}.log"
    log = open(log_path, "w")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                up = httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                up = False
            if up and (command != "dev" or _daemons_healthy(f"http://127.0.0.1:{dagster_port}")):
                break
            assert time.monotonic() < deadline, f"{command} did not come up within 180 s:\n{log_path.read_text()}"
            time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(params=["in-process", "serve", pytest.param("dev", marks=pytest.mark.slow)])
def client(request, tmp_path) -> Iterator[SegmentationClient]:
    home = tmp_path / "home"
    if request.param == "in-process":
        with SegmentationClient(home=home) as local:
            yield local
        return
    for url in run_command(home, request.param):
        with SegmentationClient(base_url=url, timeout=300) as remote:
            remote.entry_point = request.param
            yield remote


def test_from_own_files_to_members_and_back(client, tmp_path):
    scenario = Scenario(client, tmp_path).load()
    for batch in scenario.batches:
        assert batch["status"] == "success" and batch["rejectedRowCount"] == 0
        assert batch["profileStore"]["status"] == "current", batch["profileStore"]

    # Ingestion made the store current: the lookup finds the merged profile with its identities.
    (entity,) = client.profiles.get("Email", "ann@example.com").values()
    assert entity["entity"]["loyalty"]["points"] == 500
    assert {ns: [i["id"] for i in ids] for ns, ids in entity["entity"]["identityMap"].items()} == {
        "CRMID": ["c-ann"],
        "Email": ["ann@example.com"],
    }

    body = [{"segmentId": i} for i in scenario.ids.values()]
    posted = time.monotonic()
    day_one = client.segment_jobs.create(body, evaluation_time=T, wait=True, poll=0.2)
    where = getattr(client, "entry_point", "in-process")
    print(f"\n[{where}] segment job, POST to {day_one['status']}: {time.monotonic() - posted:.1f} s")
    assert day_one["status"] == "SUCCEEDED", day_one.get("errors")
    store = day_one["profileStore"]["version"]
    assert store["identityGraph"] and store["events"] and store["mergedProfiles"][scenario.merge_policy_id]
    assert scenario.statuses() == EXPECTED_T
    for name in scenario.ids:
        assert {t for _, t in scenario.members(name).values()} == {iso(T)}

    second_batch = scenario.add_day_two_events()
    assert second_batch["profileStore"]["status"] == "current"
    day_two = client.segment_jobs.create([{"segmentId": "*"}], evaluation_time=T1, wait=True, poll=0.2)
    assert day_two["status"] == "SUCCEEDED", day_two.get("errors")
    assert day_two["profileStore"]["version"]["events"] != store["events"]  # it read the new events
    assert scenario.statuses() == EXPECTED_T1
    for name, people in EXPECTED_T1.items():
        times = scenario.members(name)
        for who, status in people.items():
            assert times[who][1] == (iso(T) if status == "existing" else iso(T1)), (name, who)
