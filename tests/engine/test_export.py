"""The export writer's ``segmentMembership``: a Parquet MAP ``{ns: {segmentId: {status, lastQualificationTime}}}``
whichever way it is built (a cast of a STRUCT literal for one segment, grouped entries for several)."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from segmentation_pipelines.engine.export import SegmentSource, write_export

IDENTITY = "[{'key': 'Email', 'value': [{'id': profile_id || '@x.com', 'primary': true}]}]"


def _files(tmp_path):
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT profile_id, {IDENTITY} AS identityMap, {{'city': 'C' || profile_id}} AS homeAddress "
        f"FROM (VALUES ('a'), ('b'), ('c')) t(profile_id)) TO '{tmp_path / 'profiles.parquet'}' (FORMAT parquet)"
    )
    for name, rows in (
        ("s1", "('a', 'realized'), ('b', 'existing'), ('c', 'exited')"),
        ("s2", "('b', 'realized')"),
    ):
        con.execute(
            f"COPY (SELECT profile_id, status, TIMESTAMP '2026-03-01 10:00:00' AS lastQualificationTime, "
            f"{IDENTITY} AS identityMap FROM (VALUES {rows}) t(profile_id, status)) "
            f"TO '{tmp_path / (name + '.parquet')}' (FORMAT parquet)"
        )
    con.close()
    return tmp_path / "profiles.parquet", tmp_path / "s1.parquet", tmp_path / "s2.parquet"


def _read(result):
    table = pq.read_table(result.files[0])
    assert pa.types.is_map(table.schema.field("segmentMembership").type)
    assert pa.types.is_map(table.schema.field("segmentMembership").type.item_type)
    return {
        r["profile_id"]: {ns: dict(segs) for ns, segs in r["segmentMembership"]}
        for r in table.select(["profile_id", "segmentMembership"]).to_pylist()
    }


def test_one_segment_membership_is_a_map(tmp_path):
    profiles, s1, _ = _files(tmp_path)
    result = write_export(
        profiles_path=profiles, sources=[SegmentSource("seg-1", s1)], out_dir=tmp_path / "out"
    )
    when = dt.datetime(2026, 3, 1, 10)
    assert _read(result) == {
        "a": {"ups": {"seg-1": {"status": "realized", "lastQualificationTime": when}}},
        "b": {"ups": {"seg-1": {"status": "existing", "lastQualificationTime": when}}},
    }
    assert result.rows == 2 and result.by_namespace == {"Email": 2}


def test_several_segments_group_into_one_map_per_profile(tmp_path):
    profiles, s1, s2 = _files(tmp_path)
    result = write_export(
        profiles_path=profiles,
        sources=[SegmentSource("seg-1", s1), SegmentSource("seg-2", s2)],
        out_dir=tmp_path / "out",
    )
    rows = _read(result)
    assert set(rows) == {"a", "b"}
    assert set(rows["b"]["ups"]) == {"seg-1", "seg-2"}
    assert rows["b"]["ups"]["seg-2"]["status"] == "realized"
    assert result.by_namespace == {"Email": 2}
