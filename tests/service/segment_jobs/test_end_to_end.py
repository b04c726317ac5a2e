"""Segment jobs end to end through the client, in-process and over HTTP, on the real evaluation.

The world of ``scenario.py``: a job at ``T`` gives the hand-computed members (all ``realized``); after two more
purchases, a job at ``T + 1 day`` gives ``realized`` / ``existing`` / ``exited`` with the right qualification times;
and each job's ``metrics`` count exactly those members.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from segmentation_pipelines.api import create_app
from segmentation_pipelines.client import SegmentationClient
from segmentation_pipelines.service.datasets import DatasetsService

from .conftest import LocalDaemon
from .scenario import EXPECTED_T, EXPECTED_T1, PEOPLE, T1, Scenario, T

EVALUATION_PHASES = ("preparation", "evaluation", "identities", "membershipDiff", "publication")


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture(params=["in-process", "http"])
def client(request, ctx):
    local = SegmentationClient(home=ctx.settings.home, sandbox="prod")
    if request.param == "in-process":
        yield local
        return
    # Over HTTP the REST API only queues the job; the stand-in daemon launches it as the sensor would.
    with TestClient(create_app(ctx.settings), base_url="http://testserver") as transport:
        with LocalDaemon(ctx.settings) as daemon, SegmentationClient(http_client=transport) as remote:
            yield remote
        assert not daemon.errors


def check_metrics(job: dict, scenario: Scenario, expected: dict[str, dict[str, str]]) -> None:
    metrics = job["metrics"]
    ids = scenario.ids
    members = {name: [who for who, s in people.items() if s != "exited"] for name, people in expected.items()}
    assert metrics["segmentedProfileCounter"] == {ids[n]: len(m) for n, m in members.items()}
    assert metrics["segmentedProfileByStatusCounter"] == {
        ids[n]: {s: sum(1 for v in people.values() if v == s) for s in ("realized", "existing", "exited")}
        for n, people in expected.items()
    }
    assert metrics["segmentedProfileByNamespaceCounter"] == {
        ids[n]: {"Email": len(m), **({"CRMID": c} if (c := sum(1 for w in m if PEOPLE[w][2])) else {})}
        for n, m in members.items()
    }
    assert metrics["totalProfiles"] == len(PEOPLE)
    assert metrics["totalProfilesByMergePolicy"] == {scenario.merge_policy_id: len(PEOPLE)}
    total, phase = metrics["totalTime"], metrics["profileSegmentationTime"]
    assert total["totalTimeInMs"] == total["endTimeInMs"] - total["startTimeInMs"] >= 0
    assert phase["totalTimeInMs"] == phase["endTimeInMs"] - phase["startTimeInMs"] >= 0
    assert total["startTimeInMs"] <= phase["startTimeInMs"] <= phase["endTimeInMs"] <= total["endTimeInMs"]
    # Extension: where the job's time went. The phases cover the whole job (Dagster takes the rest), and the
    # evaluation's own phases fit in its segmentation time (1 ms of rounding per phase).
    phases = metrics["phasesInMs"]
    assert set(phases) == {*EVALUATION_PHASES, "storeRefresh", "dagsterLaunch", "dagsterFinish"}
    assert all(isinstance(v, int) and v >= 0 for v in phases.values()), phases
    assert sum(phases.values()) == total["totalTimeInMs"]
    assert sum(phases[p] for p in EVALUATION_PHASES) <= phase["totalTimeInMs"] + len(EVALUATION_PHASES)
    launched = phase["startTimeInMs"] - total["startTimeInMs"]
    assert phases["dagsterLaunch"] + phases["storeRefresh"] == launched or phases["dagsterLaunch"] == 0
    assert phases["evaluation"] > 0 and phases["membershipDiff"] > 0 and phases["dagsterLaunch"] > 0


def test_two_days_of_segment_jobs(client, ctx, tmp_path, monkeypatch):
    scenario = Scenario(SegmentationClient(home=ctx.settings.home), tmp_path).load()
    body = [{"segmentId": i} for i in scenario.ids.values()]

    day_one = client.segment_jobs.create(body, evaluation_time=T, wait=True)
    assert day_one["status"] == "SUCCEEDED", day_one.get("errors")
    assert day_one["evaluationTime"] == iso(T)
    assert scenario.statuses() == EXPECTED_T
    for name in scenario.ids:
        assert {t for _, t in scenario.members(name).values()} == {iso(T)}
    check_metrics(client.segment_jobs.get(day_one["id"]), scenario, EXPECTED_T)

    # The day-two batch lands but its store refresh fails (the store stays stale): the job's run refreshes it.
    with monkeypatch.context() as patch:
        patch.setattr(DatasetsService, "_refresh_store", lambda self, reason: {"refreshed": False})
        scenario.add_day_two_events()
    day_two = client.segment_jobs.create([{"segmentId": "*"}], evaluation_time=T1.isoformat(), wait=True)
    assert day_two["status"] == "SUCCEEDED", day_two.get("errors")
    # the new events made the store stale: this job's run refreshed it before evaluating, and says how long
    assert client.segment_jobs.get(day_two["id"])["metrics"]["phasesInMs"]["storeRefresh"] > 0
    assert sorted(s["segmentId"] for s in day_two["segments"]) == sorted(scenario.ids.values())
    assert scenario.statuses() == EXPECTED_T1
    for name, people in EXPECTED_T1.items():
        times = scenario.members(name)
        for who, status in people.items():
            # existing members keep the time they qualified; realized and exited ones get this evaluation's
            assert times[who][1] == (iso(T) if status == "existing" else iso(T1)), (name, who)
    check_metrics(client.segment_jobs.get(day_two["id"]), scenario, EXPECTED_T1)

    listed = client.segment_jobs.list(status="SUCCEEDED", sort="creationTime:asc")
    assert [j["id"] for j in listed["children"]] == [day_one["id"], day_two["id"]]
