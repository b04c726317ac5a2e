"""The membership format of issue 18 (engine/memberships.py): integer rows over a stable profile index, the
identities once per evaluation. Read through the public client across evaluations (realized, existing, exited),
an evaluation written in the format before still read after the upgrade (as of its time, and as the previous
evaluation of the next diff), and the bytes on disk per member."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.engine import memberships as m
from segmentation_pipelines.engine.export import SegmentSource, write_export
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.merge_policies import MergePoliciesService
from segmentation_pipelines.service.segment_evaluation import run_evaluation

from .helpers import EVENT, definition, ingest

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
T2 = T0 + dt.timedelta(days=10)
BUYERS = 'select X from xEvent where X.eventType = "commerce.purchases" and X.timestamp occurs <= 7 days before now'


def iso(t):
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def members(client, audience_id, at=None):
    """{email: (status, lastQualificationTime)} through the client (the audience members API)."""
    page = client.audiences.members(audience_id, evaluation_time=at, limit="1000")
    assert page["_page"]["totalCount"] == len(page["children"])
    return {
        c["identityMap"]["Email"][0]["id"].split("@")[0]: (c["status"], c["lastQualificationTime"])
        for c in page["children"]
    }


def membership(client, email):
    """A profile's segmentMembership through the client (the profile access API)."""
    entity = next(iter(client.profiles.get("Email", email).values()))["entity"]
    return {
        a: (v["status"], v["lastQualificationTime"])
        for a, v in entity.get("segmentMembership", {}).get("ups", {}).items()
    }


def exported(store, path, tmp_path):
    """(email, status) of an export of one membership file (engine/export.py reads it)."""
    policy = MergePoliciesService(store).ensure_default()["id"]
    result = write_export(
        profiles_path=StoreLayout(store.sandbox_root).profiles_path(policy),
        sources=[SegmentSource("s", Path(path), statuses=("realized", "existing", "exited"))],
        out_dir=tmp_path / f"export-{Path(path).stem}",
    )
    rows = duckdb.sql(
        f"SELECT identityMap, segmentMembership FROM read_parquet('{result.files[0]}')"
    ).fetchall()
    return {
        next(e["value"] for e in im if e["key"] == "Email")[0]["id"].split("@")[0]: sm["ups"]["s"]["status"]
        for im, sm in rows
    }


def to_old_format(path: Path) -> None:
    """Rewrite a membership file in the format written before issue 18 (profile_id, status, time and identityMap on
    every row), as an evaluation published before the upgrade left it."""
    con = duckdb.connect()
    try:
        tmp = path.with_suffix(".old")
        con.execute(
            f"COPY (SELECT profile_id, status, lastQualificationTime, identityMap FROM ({m.members_sql(con, path)})) "
            f"TO '{tmp}' (FORMAT parquet)"
        )
    finally:
        con.close()
    tmp.replace(path)


@pytest.fixture
def client(store, settings):
    return SegmentationClient(home=settings.home, sandbox="prod")


@pytest.fixture
def audiences(client):
    us = client.segment_definitions.create(definition("US", 'homeAddress.countryCode = "US"'))["id"]
    buyers = client.segment_definitions.create(definition("Buyers", BUYERS))["id"]
    return us, buyers


def cid_buys(store, tmp_path):
    """Cid buys something the day before T2 (Ann's purchase is then 12 days old: she exits Buyers at T2)."""
    event = {
        "identityMap": {"Email": [{"id": "cid@x.com", "primary": True}]},
        "_id": "e3",
        "timestamp": "2026-03-10T12:00:00Z",
        "eventType": "commerce.purchases",
        "commerce": {"order": {"priceTotal": 10.0}},
    }
    ingest(store, tmp_path, "web", EVENT, [event])


def test_two_evaluations_in_the_new_format_read_through_the_client(client, store, audiences, tmp_path):
    us, buyers = audiences
    both = client.segment_definitions.create(
        definition("US buyers", f'inSegment("{us}") and inSegment("{buyers}")')
    )["id"]
    run_evaluation(store, [us, buyers], T0)
    cid_buys(store, tmp_path)
    run_evaluation(store, [us, buyers], T2)
    run_evaluation(
        store, [both], T2 + dt.timedelta(hours=1)
    )  # reads US and Buyers from their files (inSegment)

    evaluations = AudienceEvaluations(store)
    files = {a: e.path for a, e in evaluations.latest_for([us, buyers, both]).items()}
    con = duckdb.connect()
    assert all(m.inspect_file(con, p).pidx_format for p in files.values())
    assert {m.inspect_file(con, p).identities for p in (files[us], files[buyers])} == {
        m.inspect_file(con, files[us]).identities
    }  # one identities file for both audiences of the evaluation
    identities = StoreLayout(store.sandbox_root).memberships_dir() / m.IDENTITIES_DIR
    # Written once per version of the merged profiles (cid's purchase made a new one): the third evaluation,
    # on the same store as the second, names the second's identities file.
    assert m.inspect_file(con, files[both]).identities == m.inspect_file(con, files[us]).identities
    assert len(list(identities.glob("*.parquet"))) <= 2
    con.close()

    assert members(client, us) == {"ann": ("existing", iso(T0)), "cid": ("existing", iso(T0))}
    assert members(client, buyers) == {"ann": ("exited", iso(T2)), "cid": ("realized", iso(T2))}
    assert members(client, both) == {"cid": ("realized", iso(T2 + dt.timedelta(hours=1)))}
    # The first evaluation reads as it was, after the second.
    assert members(client, buyers, at="2026-03-01T00:00:00Z") == {"ann": ("realized", iso(T0))}
    assert members(client, us, at="2026-03-01T00:00:00Z") == {
        "ann": ("realized", iso(T0)),
        "cid": ("realized", iso(T0)),
    }
    assert membership(client, "ann@x.com") == {us: ("existing", iso(T0)), buyers: ("exited", iso(T2))}
    assert membership(client, "cid@x.com") == {
        us: ("existing", iso(T0)),
        buyers: ("realized", iso(T2)),
        both: ("realized", iso(T2 + dt.timedelta(hours=1))),
    }
    assert membership(client, "bob@x.com") == {}
    assert exported(store, files[buyers], tmp_path) == {"ann": "exited", "cid": "realized"}
    counts = evaluations.latest(buyers).counts
    assert (counts["members"], counts["realized"], counts["existing"], counts["exited"]) == (1, 1, 0, 1)
    assert counts["by_namespace"] == {"Email": 1}


def test_an_evaluation_written_before_the_upgrade_is_still_read(client, store, audiences, tmp_path):
    us, buyers = audiences
    run_evaluation(store, [us, buyers], T0)
    evaluations = AudienceEvaluations(store)
    before = {a: e.path for a, e in evaluations.latest_for([us, buyers]).items()}
    for path in before.values():
        to_old_format(path)
    root = StoreLayout(store.sandbox_root).memberships_dir()
    for folder in (m.IDENTITIES_DIR, m.INDEX_DIR):  # the upgrade starts with neither
        for f in (root / folder).iterdir():
            f.unlink()
    con = duckdb.connect()
    assert not any(m.inspect_file(con, p).pidx_format for p in before.values())
    con.close()
    old_us = members(client, us)
    assert old_us == {"ann": ("realized", iso(T0)), "cid": ("realized", iso(T0))}
    assert membership(client, "ann@x.com") == {us: ("realized", iso(T0)), buyers: ("realized", iso(T0))}
    assert exported(store, before[buyers], tmp_path) == {"ann": "realized"}

    cid_buys(store, tmp_path)
    run_evaluation(store, [us, buyers], T2)  # its previous evaluation is in the old format
    assert members(client, us) == {"ann": ("existing", iso(T0)), "cid": ("existing", iso(T0))}
    assert members(client, buyers) == {"ann": ("exited", iso(T2)), "cid": ("realized", iso(T2))}
    assert members(client, us, at="2026-03-01T00:00:00Z") == old_us  # the old file, as of its time
    assert membership(client, "ann@x.com") == {us: ("existing", iso(T0)), buyers: ("exited", iso(T2))}
    # inSegment of an audience whose newest evaluation is in the old format (write_current_members), and of one
    # in the new format.
    for path in before.values():
        assert path.exists()
    both = client.segment_definitions.create(
        definition("US buyers", f'inSegment("{us}") and inSegment("{buyers}")')
    )["id"]
    run_evaluation(store, [both], T0 + dt.timedelta(hours=1))
    assert members(client, both) == {"ann": ("realized", iso(T0 + dt.timedelta(hours=1)))}
    run_evaluation(store, [both], T2 + dt.timedelta(hours=1))
    assert members(client, both) == {
        "ann": ("exited", iso(T2 + dt.timedelta(hours=1))),
        "cid": ("realized", iso(T2 + dt.timedelta(hours=1))),
    }


def test_bytes_on_disk_per_member(tmp_path):
    """200,000 profiles, 10 audiences of ~25% of them each: the membership files take under 1 byte per member
    (the format before took ~43 B), the identities are written once for the evaluation."""
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT 'profile-' || lpad(i::VARCHAR, 8, '0') AS profile_id,
                         [{{'key': 'email', 'value': [{{'id': 'u' || i || '@x.com', 'primary': true}}]}}] AS identityMap
                  FROM range(200000) t(i)) TO '{tmp_path / "profiles.parquet"}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT 'a' || k AS audience_id, profile_id FROM read_parquet('{tmp_path / "profiles.parquet"}'),
                  range(10) r(k) WHERE hash(profile_id || k) % 4 = 0) TO '{tmp_path / "q.parquet"}' (FORMAT parquet)"""
    )
    pairs = con.execute(f"SELECT count(*) FROM '{tmp_path / 'q.parquet'}'").fetchone()[0]
    con.close()
    audiences = [f"a{k}" for k in range(10)]
    root = tmp_path / "memberships"
    previous = {}
    for day in range(2):
        t = dt.datetime(2026, 1, 1 + day)
        diff = m.diff_memberships(
            qualified_path=tmp_path / "q.parquet",
            audience_ids=audiences,
            previous=previous,
            evaluation_time=t,
            profiles_paths={a: tmp_path / "profiles.parquet" for a in audiences},
            staging_root=root,
        )
        assert sum(c.members for c in diff.counts.values()) == pairs
        previous = m.publish_files(diff, root, 1000 * (day + 1))
        size = sum(p.stat().st_size for p in previous.values())
        assert size / pairs < 1.0, (day, size / pairs)
    assert sum(c.existing for c in diff.counts.values()) == pairs
    # The same merged profiles: their identities written once, named by both evaluations.
    assert len(list((root / m.IDENTITIES_DIR).glob("*.parquet"))) == 1
    index = list((root / m.INDEX_DIR).glob("*.parquet"))
    assert len(index) == 1  # the second evaluation numbered no new profile


def test_profile_numbers_never_change_across_many_evaluations(tmp_path):
    """Each evaluation brings a new profile: the index grows by parts, is compacted after 16, and a profile keeps
    its number throughout (read back from each evaluation's identities)."""
    root = tmp_path / "memberships"
    numbers: dict[str, set[int]] = {}
    previous = {}
    for day in range(20):
        ids = [f"p{k:02d}" for k in range(day + 1)]
        con = duckdb.connect()
        con.execute(
            f"COPY (SELECT unnest($ids) AS profile_id, NULL::{m.IDENTITY_MAP_TYPE} AS identityMap) "
            f"TO '{tmp_path / 'profiles.parquet'}' (FORMAT parquet)",
            {"ids": list(reversed(ids))},
        )
        con.execute(
            f"COPY (SELECT 'a1' AS audience_id, unnest($ids) AS profile_id) TO '{tmp_path / 'q.parquet'}' "
            "(FORMAT parquet)",
            {"ids": ids[::2]},
        )
        con.close()
        diff = m.diff_memberships(
            qualified_path=tmp_path / "q.parquet",
            audience_ids=["a1"],
            previous=previous,
            evaluation_time=dt.datetime(2026, 1, 1) + dt.timedelta(hours=day),
            profiles_paths={"a1": tmp_path / "profiles.parquet"},
            staging_root=root,
        )
        previous = m.publish_files(diff, root, day + 1)
        con = duckdb.connect()
        identities = m.inspect_file(con, previous["a1"]).identities
        for profile_id, pidx in con.execute(f"SELECT profile_id, pidx FROM '{identities}'").fetchall():
            numbers.setdefault(profile_id, set()).add(pidx)
        con.close()
        assert len(list((root / m.INDEX_DIR).glob("*.parquet"))) <= 16
        assert m.read_members(previous["a1"], 0, 100)[0] == len(ids[::2])
    assert all(len(n) == 1 for n in numbers.values())  # one number per profile, ever
    assert len({next(iter(n)) for n in numbers.values()}) == len(numbers)  # never reused
    assert list((root / m.INDEX_DIR).glob("*-full.parquet"))  # compacted at least once


def _profiles(path: Path, emails: dict[str, str]) -> Path:
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT p AS profile_id, [{{'key': 'Email', 'value': [{{'id': e, 'primary': true}}]}}]
                         ::{m.IDENTITY_MAP_TYPE} AS identityMap
                  FROM (SELECT unnest($p) AS p, unnest($e) AS e)) TO '{path}' (FORMAT parquet)""",
        {"p": list(emails), "e": list(emails.values())},
    )
    con.close()
    return path


def _evaluate(tmp_path: Path, day: int, members: list[str], profiles: Path, previous: dict) -> dict:
    q = tmp_path / f"q{day}.parquet"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT 'a1' AS audience_id, unnest($p::VARCHAR[]) AS profile_id) TO '{q}' (FORMAT parquet)",
        {"p": members},
    )
    con.close()
    diff = m.diff_memberships(
        qualified_path=q,
        audience_ids=["a1"],
        previous=previous,
        evaluation_time=dt.datetime(2026, 1, 1 + day),
        profiles_paths={"a1": profiles},
        staging_root=tmp_path / "memberships",
    )
    return m.publish_files(diff, tmp_path / "memberships", 1000 * (day + 1))


def _read(path: Path) -> dict[str, tuple[str, str]]:
    _, rows = m.read_members(path, 0, 100)
    return {r["profile_id"]: (r["status"], r["identityMap"][0]["value"][0]["id"]) for r in rows}


def test_identities_written_once_per_merged_profiles_and_kept_for_profiles_gone_from_them(tmp_path):
    """Evaluations of the same merged profiles name one identities file, written by the first (not rewritten).
    An exit whose profile is still in the merged profiles has its identityMap there; one whose profile left them
    (merged away) keeps the one its previous evaluation recorded, in an identities file of its evaluation."""
    v1 = _profiles(tmp_path / "v1.parquet", {"p1": "p1@x", "p2": "p2@x", "p3": "p3@x"})
    con = duckdb.connect()
    f0 = _evaluate(tmp_path, 0, ["p1", "p2"], v1, {})["a1"]
    shared = m.inspect_file(con, f0).identities
    assert shared.name.startswith(m.PROFILES_PREFIX)
    written = shared.stat().st_mtime_ns
    f1 = _evaluate(tmp_path, 1, ["p1"], v1, {"a1": f0})["a1"]
    assert m.inspect_file(con, f1).identities == shared and shared.stat().st_mtime_ns == written
    assert _read(f1) == {"p1": ("existing", "p1@x"), "p2": ("exited", "p2@x")}

    # A new store version: p2 merged away, p1's email changed; p1 exits now.
    v2 = _profiles(tmp_path / "v2.parquet", {"p1": "new@x", "p3": "p3@x"})
    f2 = _evaluate(tmp_path, 2, [], v2, {"a1": f1})["a1"]
    own = m.inspect_file(con, f2).identities
    assert not own.name.startswith(m.PROFILES_PREFIX)
    assert _read(f2) == {"p1": ("exited", "new@x"), "p2": ("exited", "p2@x")}
    f3 = _evaluate(tmp_path, 3, ["p3"], v2, {"a1": f2})["a1"]  # p2 still gone: kept again
    assert _read(f3) == {"p1": ("exited", "new@x"), "p2": ("exited", "p2@x"), "p3": ("realized", "p3@x")}
    # Earlier evaluations read as they were.
    assert _read(f0) == {"p1": ("realized", "p1@x"), "p2": ("realized", "p2@x")}
    assert _read(f1) == {"p1": ("existing", "p1@x"), "p2": ("exited", "p2@x")}
    con.close()
