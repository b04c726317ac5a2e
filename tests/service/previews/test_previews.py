"""Previews and estimates through the public client, in-process and over HTTP against a real
``segmentation-pipelines serve`` subprocess, on the hand-computed world of ``tests/jobs/scenario.py``.

The store (6 profiles) is smaller than any sample, so the sample is the whole store and the estimate is exact; a
preview's members must be the members a segment job finds for the same expression at the same time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from running import serving

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.errors import SegmentationError
from service.segment_jobs.scenario import BUY, DEFINITIONS, PAGE, Scenario


@pytest.fixture(scope="module", params=["in-process", "serve"])
def client(request, tmp_path_factory) -> Iterator[SegmentationClient]:
    home = tmp_path_factory.mktemp(request.param) / "home"
    if request.param == "in-process":
        with SegmentationClient(home=home) as local:
            yield local
        return
    with serving(home) as (url, _):
        with SegmentationClient(base_url=url, timeout=120) as remote:
            yield remote


@pytest.fixture(scope="module")
def world(client, tmp_path_factory) -> Scenario:
    """One loaded world per transport (tests only read it, but the last, which adds day two's events)."""
    return Scenario(client, tmp_path_factory.mktemp("world")).load()


def emails(results: list[dict]) -> set[str]:
    out = set()
    for item in results:
        (email,) = [r["objectId"] for r in item["relatedObjects"] if r["namespace"] == "Email"]
        out.add(email.split("@")[0])
    return out


def test_preview_pages_equal_segment_job_members_and_estimate_is_exact(client, world):
    names = ["us", "loyal", "big", "frequent", "view_then_buy"]
    previews = {name: client.previews.run(DEFINITIONS[name]) for name in names}
    for preview in previews.values():
        assert preview["state"] == "RESULT_READY", preview.get("error")
        assert preview["relativeTimesAnchoredTo"] == "request"
    # The segment job evaluates at the preview's own time: relative times mean the same thing in both.
    when = previews["us"]["evaluationTime"]
    job = client.segment_jobs.create(
        [{"segmentId": world.ids[n]} for n in names], evaluation_time=when, wait=True
    )
    assert job["status"] == "SUCCEEDED", job.get("errors")
    for name, preview in previews.items():
        members = set(world.members(name))
        assert emails(preview["results"]) == members, name
        estimate = preview["estimate"]
        assert estimate["state"] == "RESULT_READY"
        assert estimate["exact"] is True
        assert estimate["estimatedSize"] == estimate["profilesMatchedSoFar"] == len(members), name
        assert estimate["standardError"] == 0 and estimate["confidenceInterval"] == "95%"
        assert estimate["estimatedSizeLow"] == estimate["estimatedSizeHigh"] == len(members)
        assert estimate["profilesReadSoFar"] == estimate["totalRows"] == estimate["numRowsToRead"] == 6
    # us = ann, bob, eve: each has an Email and a CRMID.
    distribution = {
        d["namespaceId"]: d["profilesMatchedSoFar"]
        for d in previews["us"]["estimate"]["estimatedNamespaceDistribution"]
    }
    assert distribution == {"CRMID": 3, "Email": 3}


def test_pages_are_stable_and_link_to_the_profile_lookup(client, world):
    created = client.previews.create(
        {
            "predicateExpression": "loyalty.points >= 0",
            "predicateType": "pql/text",
            "predicateModel": "_xdm.context.profile",
            "graphType": "none",
        }
    )
    assert created["state"] == "NEW" and created["previewId"]
    if not client.local:  # over REST: 201 with the preview's location, as the contract says
        answer = client.transport.http.post(
            "/data/core/ups/preview", json={"predicateExpression": "loyalty.points >= 0"}
        )
        assert answer.status_code == 201, answer.text
        assert answer.headers["X-Location"] == f"/data/core/ups/preview/{answer.json()['previewId']}"
        assert client.transport.http.get(answer.headers["X-Location"]).status_code == 200
    full = client.previews.wait(created["previewId"])
    assert full["state"] == "RESULT_READY" and len(full["results"]) == 6
    pages, offset = [], 0
    while True:
        page = client.previews.get(created["previewId"], offset=offset, limit=4)
        pages.extend(page["results"])
        assert page["page"] == {"offset": offset, "size": len(page["results"])}
        if not page["link"]["next"]:
            break
        offset += 4
    assert [p["objectId"] for p in pages] == [p["objectId"] for p in full["results"]]
    assert client.previews.get(created["previewId"], offset=2, limit=2)["results"] == full["results"][2:4]
    # Every result links to the profile lookup of its primary identity, which finds that profile.
    first = full["results"][0]
    email = [r["objectId"] for r in first["relatedObjects"] if r["namespace"] == "Email"][0]
    assert "/data/core/ups/access/entities?" in first["_href"] and "entityIdNS=Email" in first["_href"]
    (entity,) = client.profiles.get("Email", email).values()
    assert entity["entityId"] == first["objectId"]


def test_bad_pql_is_a_400_with_its_position(client, world):
    with pytest.raises(SegmentationError) as err:
        client.previews.create(
            {"predicateExpression": 'homeAddress.countryCode = "US" and and', "predicateType": "pql/text"}
        )
    assert err.value.status == 400
    item = err.value.body["errors"]["400"][0]
    assert item["field"] == "predicateExpression" and item["line"] == 1 and item["column"] > 30
    with pytest.raises(SegmentationError) as err:
        client.previews.create({"predicateExpression": "loyalty.nope > 1"})
    assert err.value.status == 400 and err.value.body["errors"]["400"][0]["line"] == 1
    with pytest.raises(SegmentationError) as err:
        client.previews.create({"predicateExpression": "loyalty.points > 1", "predicateType": "pql/json"})
    assert err.value.status == 400 and "predicateType" in err.value.message
    with pytest.raises(SegmentationError) as err:
        client.previews.get("bm8tc3VjaC1wcmV2aWV3")
    assert err.value.status == 404
    with pytest.raises(SegmentationError) as err:
        client.estimates.get("bm8tc3VjaC1wcmV2aWV3")
    assert err.value.status == 404


def test_shadow_diff_against_an_existing_definition(client, world):
    # "us" = ann, bob, eve. The new rule, points >= 300: ann 500, cat 900, eve 300, fay 700.
    # Enter: cat, fay. Exit: bob. (Hand-computed from scenario.PEOPLE.)
    preview = client.previews.run("loyalty.points >= 300", baseSegmentId=world.ids["us"])
    assert preview["state"] == "RESULT_READY", preview.get("error")
    assert emails(preview["results"]) == {"ann", "cat", "eve", "fay"}
    diff = preview["shadowDiff"]
    assert diff["baseSegmentId"] == world.ids["us"] and diff["baseMatchedSoFar"] == 3
    assert diff["enter"]["profilesMatchedSoFar"] == diff["enter"]["estimatedSize"] == 2
    assert diff["exit"]["profilesMatchedSoFar"] == diff["exit"]["estimatedSize"] == 1
    assert emails(diff["enter"]["results"]) == {"cat", "fay"}
    assert emails(diff["exit"]["results"]) == {"bob"}
    with pytest.raises(SegmentationError) as err:
        client.previews.run("loyalty.points >= 300", baseSegmentId="no-such-definition")
    assert err.value.status == 404


def test_cancel_and_time_limit(client, world):
    created = client.previews.create({"predicateExpression": f'xEvent[eventType = "{PAGE}"].count() >= 1'})
    assert client.previews.delete(created["previewId"]) == {"status": True, "message": "KILLED"}
    for read in (client.previews.get, client.estimates.get):
        with pytest.raises(SegmentationError) as err:
            read(created["previewId"])
        assert err.value.status == 404
    # A preview over its time limit ends FAILED, saying so, with what it read.
    late = client.previews.run(f'xEvent[eventType = "{BUY}"].count() >= 1', timeLimitSeconds=0.000001)
    assert late["state"] == "FAILED"
    assert "time limit" in late["estimate"]["error"]["description"]
    # The queue keeps working afterwards: more previews than workers all finish, each with its own answer.
    started = time.monotonic()
    points = [0, 100, 300, 500, 800]
    ids = [client.previews.run(f"loyalty.points >= {n}", wait=False)["previewId"] for n in points]
    sizes = [client.previews.wait(i)["profilesMatchedSoFar"] for i in ids]
    assert sizes == [6, 4, 4, 3, 1]  # ann 500, bob 50, cat 900, dan 10, eve 300, fay 700
    assert time.monotonic() - started < 60


def test_the_sample_follows_the_store(client, world):
    buyers = f'xEvent[eventType = "{BUY}"].count() >= 1'
    before = client.previews.run(buyers)
    assert emails(before["results"]) == {"ann", "bob", "cat", "fay"}
    world.add_day_two_events()  # dan and eve buy: the store changes, the next preview reads the new store
    after = client.previews.run(buyers)
    assert emails(after["results"]) == {"ann", "bob", "cat", "fay", "dan", "eve"}
    assert after["estimate"]["estimatedSize"] == 6 and after["estimate"]["exact"] is True


def test_a_sampled_store_reports_an_honest_interval(tmp_path, monkeypatch):
    """A sample smaller than the store (``SEGMENTATION_PREVIEW_SAMPLE_SIZE``): the estimate says it is not exact,
    reads only the sample, and its interval holds the true size."""
    monkeypatch.setenv("SEGMENTATION_PREVIEW_SAMPLE_SIZE", "4")
    with SegmentationClient(home=tmp_path / "home") as local:
        Scenario(local, tmp_path).load()
        preview = local.previews.run('homeAddress.countryCode = "US"')  # ann, bob, eve: 3 of 6
    estimate = preview["estimate"]
    assert preview["state"] == "RESULT_READY" and preview["sampled"] is True
    assert estimate["exact"] is False and estimate["sample"]["size"] == 4
    assert estimate["numRowsToRead"] == estimate["profilesReadSoFar"] == 4 and estimate["totalRows"] == 6
    assert len(preview["results"]) == estimate["profilesMatchedSoFar"] <= 3
    assert estimate["estimatedSizeLow"] <= 3 <= estimate["estimatedSizeHigh"]
    assert estimate["standardError"] >= 0 and estimate["confidenceInterval"] == "95%"


def test_a_sample_read_in_two_chunks_pages_and_counts_as_one(tmp_path, monkeypatch):
    """The whole store cut in two chunks (as a 1M sample is: a first part, then the rest): the first chunk's members
    are written with their identities (the namespace counts come from that file) and the head of its first page
    is built ahead (here one result: ``DEFAULT_LIMIT`` = 1); paging one result at a time, through the head, the
    file and the last chunk, walks the same members in a fixed order."""
    from segmentation_pipelines.engine import sampling
    from segmentation_pipelines.service import previews

    monkeypatch.setattr(sampling, "MIN_CHUNK", 1)
    monkeypatch.setattr(sampling, "FIRST_FRACTION", 1 / 2)
    monkeypatch.setattr(previews, "DEFAULT_LIMIT", 1)
    served_from_file = []
    read_rows = previews._members_rows
    monkeypatch.setattr(previews, "_members_rows", lambda *a: served_from_file.append(a) or read_rows(*a))
    with SegmentationClient(home=tmp_path / "home") as local:
        Scenario(local, tmp_path).load()
        preview = local.previews.run('homeAddress.countryCode = "US"', limit=10)  # ann, bob, eve
        estimate = preview["estimate"]
        assert preview["state"] == "RESULT_READY" and estimate["sample"]["chunks"] == 2
        assert estimate["exact"] is True and estimate["estimatedSize"] == 3
        assert emails(preview["results"]) == {"ann", "bob", "eve"}
        distribution = {
            d["namespaceId"]: d["profilesMatchedSoFar"] for d in estimate["estimatedNamespaceDistribution"]
        }
        assert distribution == {"CRMID": 3, "Email": 3}
        one_by_one = [
            local.previews.get(preview["previewId"], offset=i, limit=1)["results"] for i in range(4)
        ]
    assert [len(r) for r in one_by_one] == [1, 1, 1, 0]
    assert served_from_file  # the first chunk's members were read from its members file
    assert [r[0]["objectId"] for r in one_by_one[:3]] == [r["objectId"] for r in preview["results"]]
