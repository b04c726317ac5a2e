"""External-audience ingestion in one connection (``engine/external_ingest.Ingestion``): stage 2 on the rows stage 1
keeps in memory gives the same membership and counts as stage 2 reading the snapshot file."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from segmentation_pipelines.engine import external_ingest as ingest

FIELDS = [
    {"name": "email", "type": "string", "identityNs": "Email"},
    {"name": "phone", "type": "string", "identityNs": "Phone"},
    {"name": "score", "type": "number"},
]
NAMESPACES = {"email": "Email", "phone": "Phone"}
DAY = 86_400_000
T0 = 1_700_000_000_000


def _store(folder: Path) -> None:
    """Profiles P0..P9 with an Email each, P0..P4 also a Phone; P7 has a second Email."""
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT * FROM (
              SELECT 'Email' AS namespace, 'e' || i AS id, true AS "primary", 'P' || i AS profile_id,
                     1 AS component_size, false AS excluded FROM range(10) t(i)
              UNION ALL SELECT 'Phone', 'ph' || i, false, 'P' || i, 2, false FROM range(5) t(i)
              UNION ALL SELECT 'Email', 'e7b', false, 'P7', 2, false))
            TO '{folder}/identities.parquet' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT profile_id, list({{'key': namespace, 'value': ids}} ORDER BY namespace) AS identityMap FROM (
              SELECT profile_id, namespace, list({{'id': id, 'primary': "primary"}} ORDER BY id) AS ids
              FROM read_parquet('{folder}/identities.parquet') GROUP BY profile_id, namespace) GROUP BY profile_id)
            TO '{folder}/profiles.parquet' (FORMAT parquet)"""
    )
    con.close()


def _rows(path: Path, order: str) -> list[tuple]:
    con = duckdb.connect()
    try:
        return con.execute(f"SELECT * FROM read_parquet('{path}') ORDER BY {order}").fetchall()
    finally:
        con.close()


def _run(
    folder: Path, tag: str, source: Path, previous: tuple[Path, Path] | None, at: int, one_connection: bool
):
    if not (folder / "profiles.parquet").exists():
        _store(folder)
    identities, profiles = folder / "identities.parquet", folder / "profiles.parquet"
    staged, final = folder / f".{tag}.parquet", folder / f"{tag}.parquet"
    out = folder / f"{tag}-members" / "members.parquet"
    out.parent.mkdir()
    stage1 = dict(
        files=[source],
        fmt="csv",
        fields=FIELDS,
        namespaces=NAMESPACES,
        previous_data=previous[0] if previous else None,
        ingestion_ms=at,
        differential=True,
        out_path=staged,
    )
    stage2 = dict(
        identities_path=identities,
        profiles_path=profiles,
        previous_membership=previous[1] if previous else None,
        evaluation_ms=at,
        ttl_days=30,
        out_path=out,
        namespaces=["Email", "Phone"],
    )
    if one_connection:
        with ingest.Ingestion(folder) as run:
            rows = run.ingest_rows(**stage1)
            os.replace(staged, final)  # as the service does between the stages
            assert run.holds(final) and not run.holds(identities)
            members = run.build_membership(data_path=final, **stage2)
    else:
        rows = ingest.ingest_rows(**stage1)
        os.replace(staged, final)
        members = ingest.build_membership(data_path=final, **stage2)
    return rows, members, final, out


def test_membership_from_memory_equals_membership_from_the_snapshot(tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    first.write_text(
        "email,phone,score\n"
        "e1,,1.5\ne1,,1.5\n e2 ,ph2,2\ne7,,7\ne7b,,8\n,ph3,3\ne3,ph4,9\n,,1\ne5,,abc\nzz,,1\ne9,,\n"
    )
    second = tmp_path / "second.csv"
    second.write_text("email,phone,score\ne1,,1.5\n e2 ,ph2,2.5\n,ph3,3\nzz,,1\ne8,,4\n")
    results = {}
    for one_connection in (True, False):
        folder = tmp_path / ("one" if one_connection else "two")
        folder.mkdir()
        r1, m1, data1, members1 = _run(folder, "run1", first, None, T0, one_connection)
        r2, m2, data2, members2 = _run(folder, "run2", second, (data1, members1), T0 + DAY, one_connection)
        results[one_connection] = [
            (r.rows_read, r.accepted, r.rejects, r.changed, r.removed, [s["reason"] for s in r.samples])
            for r in (r1, r2)
        ] + [
            (m.counts, m.pending_rows, m.next_expiry_ms, _rows(m.path, "profile_id"), _rows(d, "row_hash"))
            for m, d in ((m1, data1), (m2, data2))
        ]
    assert results[True] == results[False]
    (read1, accepted1, rejects1, *_), (read2, accepted2, _, changed2, removed2, _) = results[True][:2]
    assert (read1, accepted1, rejects1) == (11, 9, {"MISSING_IDENTITY": 1, "WRONG_TYPE": 1})
    assert (read2, accepted2, changed2, removed2) == (5, 5, 2, 5)
    counts1, pending1, _, members1, _ = results[True][2]
    # e1 twice and e7/e7b name one profile each; e3+ph4 names two (P3, P4); zz no profile yet (pending).
    assert {m[0]: m[1] for m in members1} == dict.fromkeys(["P1", "P2", "P3", "P4", "P7", "P9"], "realized")
    assert (counts1["members"], pending1, counts1["by_namespace"]) == (6, 1, {"Email": 5, "Phone": 3})
    counts2, pending2, _, members2, _ = results[True][3]
    status2 = {m[0]: m[1] for m in members2}
    assert status2 == {
        "P1": "realized",
        "P2": "realized",
        "P3": "realized",
        "P8": "realized",
    } | dict.fromkeys(["P4", "P7", "P9"], "exited")
    assert (counts2["members"], counts2["exited"], pending2) == (4, 3, 1)
