"""End-to-end evaluation through the services: members at T, then at T+1 day after new events, then later exits."""

from __future__ import annotations

import datetime as dt

import pytest

from segmentation_pipelines.errors import SegmentationError
from segmentation_pipelines.service.segment_evaluation import EvaluationCancelled, run_evaluation
from segmentation_pipelines.service.services import Services

from .helpers import EVENT, build_store, definition, ingest

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(days=1)
T2 = T0 + dt.timedelta(days=10)
PURCHASED_LAST_WEEK = 'select X from xEvent where X.eventType = "commerce.purchases" and X.timestamp occurs <= 7 days before now'


def members(services, audience_id, at=None):
    """{email: (status, lastQualificationTime)} of an evaluation."""
    page = services.audiences.members(audience_id, evaluation_time=at, limit="1000")
    return {
        m["identityMap"]["Email"][0]["id"].split("@")[0]: (m["status"], m["lastQualificationTime"])
        for m in page["children"]
    }


def iso(t):
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def defs(store):
    svc = Services(store).segment_definitions
    us = svc.create(definition("US", 'homeAddress.countryCode = "US"'))
    buyers = svc.create(definition("Buyers", PURCHASED_LAST_WEEK))
    both = svc.create(definition("US buyers", f'inSegment("{us["id"]}") and inSegment("Buyers")'))
    return us["id"], buyers["id"], both["id"]


def test_members_across_evaluations(store, defs, tmp_path):
    services = Services(store)
    us, buyers, both = defs
    s0 = run_evaluation(store, [both, buyers, us], T0, job_id="job-0")
    assert s0.order.index(both) > s0.order.index(us) and s0.order.index(both) > s0.order.index(buyers)
    assert members(services, us) == {"ann": ("realized", iso(T0)), "cid": ("realized", iso(T0))}
    assert members(services, buyers) == {"ann": ("realized", iso(T0))}
    assert members(services, both) == {"ann": ("realized", iso(T0))}
    assert s0.audiences[us] == {
        "members": 2,
        "realized": 2,
        "existing": 0,
        "exited": 0,
        "exitedRetained": 0,
        "by_namespace": {"Email": 2},
    }
    assert s0.total_profiles == 3

    # T+1 day: Cid bought something this morning.
    ingest(
        store,
        tmp_path,
        "web",
        EVENT,
        [
            {
                "identityMap": {"Email": [{"id": "cid@x.com", "primary": True}]},
                "_id": "e3",
                "timestamp": "2026-03-01T12:00:00Z",
                "eventType": "commerce.purchases",
                "commerce": {"order": {"priceTotal": 10.0}},
            },
        ],
    )
    build_store(store)
    s1 = run_evaluation(store, [us, buyers, both], T1, job_id="job-1")
    assert members(services, buyers) == {"ann": ("existing", iso(T0)), "cid": ("realized", iso(T1))}
    assert members(services, both) == {"ann": ("existing", iso(T0)), "cid": ("realized", iso(T1))}
    assert members(services, us) == {"ann": ("existing", iso(T0)), "cid": ("existing", iso(T0))}
    assert s1.audiences[buyers]["realized"] == 1 and s1.audiences[buyers]["existing"] == 1

    # T+10 days: nobody bought within a week; they exit (and stay listed as exited).
    s2 = run_evaluation(store, [us, buyers, both], T2)
    assert members(services, buyers) == {"ann": ("exited", iso(T2)), "cid": ("exited", iso(T2))}
    assert s2.audiences[both] == {
        "members": 0,
        "realized": 0,
        "existing": 0,
        "exited": 2,
        "exitedRetained": 2,
        "by_namespace": {},
    }
    # every evaluation stays readable
    assert members(services, buyers, at=iso(T0)) == {"ann": ("realized", iso(T0))}
    assert members(services, buyers, at=iso(T1 + dt.timedelta(hours=3))) == members(
        services, buyers, at=iso(T1)
    )
    page = services.audiences.members(buyers)
    assert page["evaluationTime"] == iso(T2) and page["jobId"] is None and page["_page"]["totalCount"] == 2
    with pytest.raises(SegmentationError) as err:
        services.audiences.members(buyers, evaluation_time="2020-01-01T00:00:00Z")
    assert err.value.status == 404

    # paging
    first = services.audiences.members(us, start="0", limit="1")
    second = services.audiences.members(us, start="1", limit="1")
    assert first["_page"] == {"totalCount": 2, "pageSize": 1, "start": 0, "limit": 1, "next": 1}
    assert {first["children"][0]["profileId"], second["children"][0]["profileId"]} == {
        m["profileId"] for m in services.audiences.members(us)["children"]
    }

    # a profile lookup shows segmentMembership as the platform does
    profile = services.profiles.get("Email", "ann@x.com")
    entity = next(iter(profile.values()))["entity"]
    assert entity["segmentMembership"]["ups"][us] == {"status": "existing", "lastQualificationTime": iso(T0)}
    assert entity["segmentMembership"]["ups"][buyers]["status"] == "exited"

    # the audience shows the latest evaluation's metrics
    assert services.audiences.get(us)["metrics"]["data"]["totalProfiles"] == 2


def test_evaluating_a_subset_reads_referenced_audiences_as_published(store, defs):
    services = Services(store)
    us, buyers, both = defs
    # only "both" at T0: its references were never evaluated, so nobody qualifies
    run_evaluation(store, [both], T0)
    assert members(services, both) == {}
    run_evaluation(store, [us, buyers], T0)
    run_evaluation(store, [both], T0 + dt.timedelta(hours=1))
    assert members(services, both) == {"ann": ("realized", iso(T0 + dt.timedelta(hours=1)))}


def test_cancelled_evaluation_publishes_nothing(store, defs):
    services = Services(store)
    us, buyers, both = defs
    run_evaluation(store, [us], T0)
    before = services.audiences.members(us)
    calls = {"n": 0}

    def cancel_later():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(EvaluationCancelled):
        run_evaluation(store, [us, buyers], T1, should_cancel=cancel_later)
    assert services.audiences.members(us) == before
    assert services.audiences.members(buyers)["evaluationTime"] is None
    memberships = store.sandbox_root / "memberships"
    assert not any(p.name.startswith(".staging") for p in memberships.iterdir())
    assert sorted(p.name for p in (memberships / us).iterdir()) == [f"{int(T0.timestamp() * 1000)}.parquet"]


def test_deleting_a_definition_drops_its_memberships(store, defs):
    services = Services(store)
    us, buyers, both = defs
    run_evaluation(store, [us, buyers, both], T0)
    folder = store.sandbox_root / "memberships" / buyers
    assert folder.exists()
    services.segment_definitions.delete(both)
    services.segment_definitions.delete(buyers)
    assert not folder.exists()
    from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations

    assert AudienceEvaluations(store).latest(buyers) is None
    assert AudienceEvaluations(store).latest(us) is not None


def test_killed_evaluation_leaves_the_previous_membership_and_a_new_one_succeeds(store, defs, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    services = Services(store)
    us, buyers, both = defs
    run_evaluation(store, [us], T0)
    before = services.audiences.members(us)
    marker = tmp_path / "ready"
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.service.segment_definitions.kill_worker",
            str(store.settings.home),
            str(marker),
            iso(T1),
            us,
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the worker never reached the diff"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert services.audiences.members(us) == before
    run_evaluation(store, [us], T1)
    assert services.audiences.members(us)["evaluationTime"] == iso(T1)


def test_rerun_at_the_same_time_replaces_the_evaluation(store, defs):
    services = Services(store)
    us, buyers, both = defs
    run_evaluation(store, [us], T0)
    first = services.audiences.members(us)
    run_evaluation(store, [us], T0)
    assert services.audiences.members(us) == first  # same data, same time: same members
    files = list((store.sandbox_root / "memberships" / us).iterdir())
    assert len(files) == 1  # the replaced file was removed


def test_polars_engine_gives_the_same_members(store, defs):
    import dataclasses

    us, buyers, both = defs
    run_evaluation(store, [us, buyers, both], T0)
    duck = {a: members(Services(store), a) for a in defs}
    polars_ctx = dataclasses.replace(store, settings=store.settings.model_copy(update={"engine": "polars"}))
    run_evaluation(polars_ctx, [us, buyers, both], T0)
    assert {a: members(Services(store), a) for a in defs} == duck


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_a_pass_reads_an_audience_of_an_earlier_pass_of_another_merge_policy(store, defs, engine):
    """Two merge policies, two engine passes: the second reads the first's audience (inSegment) from the first
    pass's output, whose pairs name profiles by number (EvaluationRequest.profile_numbers)."""
    import dataclasses

    services = Services(store)
    us, _, _ = defs
    other = services.merge_policies.create({"name": "other"})
    assert services.profile_store.refresh()["status"] == "current"
    reader = services.segment_definitions.create(
        definition("US, other policy", f'inSegment("{us}")', mergePolicyId=other["id"])
    )["id"]
    ctx = dataclasses.replace(store, settings=store.settings.model_copy(update={"engine": engine}))
    summary = run_evaluation(ctx, [us, reader], T0)
    assert summary.order == [us, reader] and not summary.failed
    expected = {"ann": ("realized", iso(T0)), "cid": ("realized", iso(T0))}
    assert members(services, us) == expected and members(services, reader) == expected
