"""Membership diff over real Parquet files: realized / existing / exited, qualification times, retention."""

from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import pytest

from segmentation_pipelines.engine import memberships as m

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)


def write_profiles(path, ids):
    con = duckdb.connect()
    rows = ", ".join(
        f"('{p}', [{{'key': 'email', 'value': [{{'id': '{p}@x.com', 'primary': true, 'authenticatedState': 'ambiguous'}}]}}])"
        for p in ids
    )
    con.execute(
        f"COPY (SELECT * FROM (VALUES {rows}) v(profile_id, identityMap)) TO '{path}' (FORMAT parquet)"
    )
    con.close()


def write_qualified(path, pairs):
    con = duckdb.connect()
    if pairs:
        rows = ", ".join(f"('{a}', '{p}')" for a, p in pairs)
        con.execute(
            f"COPY (SELECT * FROM (VALUES {rows}) v(audience_id, profile_id)) TO '{path}' (FORMAT parquet)"
        )
    else:
        con.execute(
            f"COPY (SELECT NULL::VARCHAR audience_id, NULL::VARCHAR profile_id WHERE false) TO '{path}' (FORMAT parquet)"
        )
    con.close()


def read(path):
    total, rows = m.read_members(path, 0, 1000)
    assert total == len(rows)
    return {r["profile_id"]: (r["status"], r["lastQualificationTime"]) for r in rows}


def evaluate(tmp_path, t, pairs, previous, audiences=("a1", "a2")):
    tag = t.strftime("%Y%m%d%H%M")
    q = tmp_path / f"q-{tag}.parquet"
    write_qualified(q, pairs)
    profiles = tmp_path / "profiles.parquet"
    diff = m.diff_memberships(
        qualified_path=q,
        audience_ids=list(audiences),
        previous=previous,
        evaluation_time=t,
        profiles_paths={a: profiles for a in audiences},
        staging_root=tmp_path / "memberships",
    )
    ms = int(t.replace(tzinfo=dt.UTC).timestamp() * 1000)
    files = m.publish_files(diff, tmp_path / "memberships", ms)
    assert not diff.staging.exists()
    return files, diff.counts


@pytest.fixture
def store(tmp_path):
    write_profiles(tmp_path / "profiles.parquet", ["p1", "p2", "p3", "p4"])
    return tmp_path


def test_first_evaluation_realizes_everyone(store):
    files, counts = evaluate(store, T0, [("a1", "p1"), ("a1", "p2"), ("a2", "p3")], {})
    assert read(files["a1"]) == {"p1": ("realized", T0), "p2": ("realized", T0)}
    assert read(files["a2"]) == {"p3": ("realized", T0)}
    assert counts["a1"].as_dict() == {
        "members": 2,
        "realized": 2,
        "existing": 0,
        "exited": 0,
        "exitedRetained": 0,
        "by_namespace": {"email": 2},
    }
    assert (
        files["a1"]
        == store / "memberships" / "a1" / f"{int(T0.replace(tzinfo=dt.UTC).timestamp() * 1000)}.parquet"
    )


def test_first_evaluation_with_nobody_writes_empty_files(store):
    files, counts = evaluate(store, T0, [], {})
    assert read(files["a1"]) == {} and read(files["a2"]) == {}
    assert counts["a1"].as_dict()["members"] == 0 and counts["a1"].by_namespace == {}


def test_second_evaluation_existing_realized_exited(store):
    f1, _ = evaluate(store, T0, [("a1", "p1"), ("a1", "p2")], {})
    t1 = T0 + dt.timedelta(days=1)
    f2, counts = evaluate(store, t1, [("a1", "p2"), ("a1", "p3")], {"a1": f1["a1"], "a2": f1["a2"]})
    assert read(f2["a1"]) == {"p1": ("exited", t1), "p2": ("existing", T0), "p3": ("realized", t1)}
    c = counts["a1"]
    assert (c.members, c.realized, c.existing, c.exited_now) == (2, 1, 1, 1)
    # identityMap is carried, in the documented shape, for the exited profile too
    _, rows = m.read_members(f2["a1"], 0, 10)
    exited = next(r for r in rows if r["profile_id"] == "p1")
    assert exited["identityMap"] == [{"key": "email", "value": [{"id": "p1@x.com", "primary": True}]}]
    # an audience with nobody has an (empty, typed) file
    assert read(f2["a2"]) == {}


def test_requalifying_after_exit_is_realized_and_old_exits_are_dropped(store):
    f1, _ = evaluate(store, T0, [("a1", "p1"), ("a1", "p2")], {})
    t1 = T0 + dt.timedelta(days=1)
    f2, _ = evaluate(store, t1, [], {"a1": f1["a1"]})
    assert read(f2["a1"]) == {"p1": ("exited", t1), "p2": ("exited", t1)}
    t2 = t1 + dt.timedelta(days=10)
    f3, c3 = evaluate(store, t2, [("a1", "p1")], {"a1": f2["a1"]})
    assert read(f3["a1"]) == {"p1": ("realized", t2), "p2": ("exited", t1)}
    assert c3["a1"].exited_now == 0 and c3["a1"].exited == 1
    t3 = t1 + dt.timedelta(days=31)
    f4, _ = evaluate(store, t3, [("a1", "p1")], {"a1": f3["a1"]})
    assert read(f4["a1"]) == {"p1": ("existing", t2)}  # p2 exited 31 days ago: dropped


def test_current_members_file_excludes_exited(store, tmp_path):
    f1, _ = evaluate(store, T0, [("a1", "p1"), ("a1", "p2")], {})
    f2, _ = evaluate(store, T0 + dt.timedelta(days=1), [("a1", "p2")], {"a1": f1["a1"]})
    out = m.write_current_members(f2["a1"], tmp_path / "cur.parquet")
    assert sorted(r[0] for r in duckdb.sql(f"select profile_id from '{out}'").fetchall()) == ["p2"]
    empty = m.write_current_members(None, tmp_path / "none.parquet")
    assert duckdb.sql(f"select count(*) from '{empty}'").fetchall()[0][0] == 0


def test_cancel_leaves_nothing(store):
    q = store / "q.parquet"
    write_qualified(q, [("a1", "p1")])
    with pytest.raises(m.MembershipCancelled):
        m.diff_memberships(
            qualified_path=q,
            audience_ids=["a1"],
            previous={},
            evaluation_time=T0,
            profiles_paths={"a1": store / "profiles.parquet"},
            staging_root=store / "memberships",
            should_cancel=lambda: True,
        )
    assert list((store / "memberships").iterdir()) == []


def write_identities(path, identities):
    """Profiles with the given identities: profile id -> {namespace: id} (empty: no identity)."""
    con = duckdb.connect()
    rows = ", ".join(
        f"('{p}', ["
        + ", ".join(f"{{'key': '{k}', 'value': [{{'id': '{v}', 'primary': true}}]}}" for k, v in ids.items())
        + "])"
        for p, ids in identities.items()
    )
    con.execute(
        f'COPY (SELECT profile_id, identityMap::STRUCT(key VARCHAR, value STRUCT(id VARCHAR, "primary" BOOLEAN)[])[] '
        f"AS identityMap FROM (VALUES {rows}) v(profile_id, identityMap)) TO '{path}' (FORMAT parquet)"
    )
    con.close()


def test_each_audience_takes_identities_from_its_own_merged_profiles(tmp_path):
    """Two merge policies: the same profile has other identities in each; namespaces are counted per audience."""
    write_identities(
        tmp_path / "a.parquet", {"p1": {"email": "a@x", "crmId": "c1"}, "p2": {"email": "b@x"}, "p3": {}}
    )
    write_identities(tmp_path / "b.parquet", {"p1": {"phone": "+1"}, "p2": {}})
    q = tmp_path / "q.parquet"
    write_qualified(q, [("a1", "p1"), ("a1", "p2"), ("a1", "p3"), ("b1", "p1"), ("b1", "p2")])
    diff = m.diff_memberships(
        qualified_path=q,
        audience_ids=["a1", "b1"],
        previous={},
        evaluation_time=T0,
        profiles_paths={"a1": tmp_path / "a.parquet", "b1": tmp_path / "b.parquet"},
        staging_root=tmp_path / "memberships",
    )
    files = m.publish_files(diff, tmp_path / "memberships", 1)
    assert diff.counts["a1"].by_namespace == {"email": 2, "crmId": 1}
    assert diff.counts["b1"].by_namespace == {"phone": 1}
    _, rows = m.read_members(files["b1"], 0, 10)
    assert {r["profile_id"]: r["identityMap"] for r in rows} == {
        "p1": [{"key": "phone", "value": [{"id": "+1", "primary": True}]}],
        "p2": [],
    }


def test_many_audiences_each_get_their_own_members(store):
    """150 audiences (more than the 100 partition files DuckDB keeps open by default) in one partitioned write:
    every file holds its audience's members, and only them."""
    audiences = [f"a{i:03d}" for i in range(150)]
    pairs = [(a, f"p{1 + (i + k) % 4}") for i, a in enumerate(audiences) for k in range(i % 3 + 1)]
    files, counts = evaluate(store, T0, pairs, {}, audiences=audiences)
    for i, a in enumerate(audiences):
        expected = {f"p{1 + (i + k) % 4}": ("realized", T0) for k in range(i % 3 + 1)}
        assert read(files[a]) == expected, a
        assert counts[a].members == len(expected)


def test_cancel_at_any_check_leaves_nothing(store):
    """Cancelled at its first, second, ... check: the diff raises, leaves no staging folder, and the published
    previous membership is untouched."""
    f1, _ = evaluate(store, T0, [("a1", "p1"), ("a1", "p2")], {})
    q = store / "q2.parquet"
    write_qualified(q, [("a1", "p2"), ("a1", "p3")])

    def diff(should_cancel):
        return m.diff_memberships(
            qualified_path=q,
            audience_ids=["a1"],
            previous={"a1": f1["a1"]},
            evaluation_time=T0 + dt.timedelta(days=1),
            profiles_paths={"a1": store / "profiles.parquet"},
            staging_root=store / "memberships",
            should_cancel=should_cancel,
        )

    # One check before each of its 5 statements, plus polls while a statement runs (as many as it takes time):
    # a cancel at any of the first 5 lands in every run.
    checks = []
    shutil.rmtree(diff(lambda: checks.append(1) or False).staging)
    assert len(checks) >= 5
    for stop_at in range(1, 6):
        seen = []
        with pytest.raises(m.MembershipCancelled):
            diff(lambda: seen.append(1) or len(seen) >= stop_at)  # noqa: B023 - called before the next loop
        assert not list((store / "memberships").glob(".staging-*"))
        assert read(f1["a1"]) == {"p1": ("realized", T0), "p2": ("realized", T0)}
