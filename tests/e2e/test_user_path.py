"""The path a new user walks, through the public client only: in-process, and over HTTP against a real
``segmentation-pipelines serve`` subprocess (no Dagster daemon: the API's runner runs the jobs).

Own files -> datasets and ingestion (the profile store follows) -> a profile lookup -> definitions -> a job ->
members -> more ingestion -> a second job -> realized / existing / exited with their qualification times.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from running import serving
from service.segment_jobs.scenario import EXPECTED_T, EXPECTED_T1, T1, Scenario, T

from segmentation_pipelines import SegmentationClient


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture(params=["in-process", "serve", pytest.param("dev", marks=pytest.mark.slow)])
def client(request, tmp_path) -> Iterator[SegmentationClient]:
    home = tmp_path / "home"
    if request.param == "in-process":
        with SegmentationClient(home=home) as local:
            yield local
        return
    with serving(home, request.param) as (url, _):
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
