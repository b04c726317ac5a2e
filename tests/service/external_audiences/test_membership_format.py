"""External audiences' membership files (engine/external_ingest.py): current members reference their identity maps
in merged profiles pinned by hard links under ``memberships/.profiles/`` instead of carrying a copy; exits carry
theirs. Read through the public client (members, a profile's segmentMembership) and the export reader; a file
written before (every row with its identityMap) is still read, and is the previous membership of the next run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.engine import memberships as m
from segmentation_pipelines.engine.export import SegmentSource, write_export
from service.segment_jobs.scenario import Scenario

from .test_sensor_and_rules import landing

FIELDS = [{"name": "email", "type": "string", "identityNs": "Email"}, {"name": "tier", "type": "string"}]
ROWS = ["ann@example.com,gold", "bob@example.com,silver", "cat@example.com,gold", "zed@example.com,gold"]


def upload(home: Path, rows: list[str]) -> None:
    path = landing(home) / "crm.csv"
    path.write_text("email,tier\n" + "".join(r + "\n" for r in rows))
    stamp = time.time() + 1  # a new modification time within the same second (the fingerprint reads it)
    os.utime(path, (stamp, stamp))


def members(client, audience_id) -> dict[str, tuple[str, list[str], dict | None]]:
    """{name: (status, the namespaces of its identityMap, payload)} through the client."""
    page = client.audiences.members(audience_id, limit=100)
    return {
        row["identityMap"]["Email"][0]["id"].split("@")[0]: (
            row["status"],
            sorted(row["identityMap"]),
            row.get("payload"),
        )
        for row in page["children"]
    }


def latest_file(home: Path, audience_id: str) -> Path:
    files = [
        p
        for p in home.rglob("*.parquet")
        if p.parent.name == m.safe_name(audience_id) and p.parent.parent.name == "memberships"
    ]
    return max(files, key=lambda p: int(p.stem.split("-")[0]))


def raw(path: Path) -> dict[str, tuple[str, bool]]:
    """{profile_id: (status, whether the row carries its identityMap)} of the file itself."""
    con = duckdb.connect()
    try:
        return {
            pid: (status, im is not None)
            for pid, status, im in con.execute(
                f"SELECT profile_id, status, identityMap FROM read_parquet('{path}')"
            ).fetchall()
        }
    finally:
        con.close()


def to_old_format(path: Path) -> None:
    """Rewrite a membership file as external ingestion wrote it before the pinned profiles: every row with its
    identityMap, no key-value metadata."""
    con = duckdb.connect()
    try:
        tmp = path.with_suffix(".old")
        con.execute(
            f"""COPY (SELECT profile_id, status, lastQualificationTime, identityMap, validUntil, payload,
                             true AS was_current FROM ({m.members_sql(con, path)}))
                TO '{tmp}' (FORMAT parquet)"""
        )
    finally:
        con.close()
    tmp.replace(path)


def exported(home: Path, path: Path, tmp_path: Path) -> dict[str, str]:
    """{name: status} of an export of one membership file (engine/export.py reads it with its identity maps)."""
    (profiles,) = {p.parent for p in home.rglob("store/merged/*/current/*.parquet")}
    result = write_export(
        profiles_path=profiles / "*.parquet",
        sources=[SegmentSource("s", path, statuses=("realized", "existing", "exited"))],
        out_dir=tmp_path / f"export-{path.stem}",
    )
    rows = duckdb.sql(f"SELECT identityMap FROM read_parquet('{result.files[0]}')").fetchall()
    return {next(e["value"] for e in im if e["key"] == "Email")[0]["id"].split("@")[0]: 1 for (im,) in rows}


def test_members_reference_pinned_profiles_and_old_files_stay_readable(home, tmp_path):
    client = SegmentationClient(home=home)
    Scenario(client, tmp_path).load()
    upload(home, ROWS)
    created = client.external_audiences.create(
        {
            "name": "crm",
            "fields": FIELDS,
            "sourceSpec": {"params": {"path": "crm.csv", "type": "file"}},
            "originName": "CUSTOM_UPLOAD",
        },
        wait=True,
    )
    audience_id = client.external_audiences.operation(created["operationId"])["audienceId"]

    first = latest_file(home, audience_id)
    con = duckdb.connect()
    pinned = m.inspect_file(con, first).profiles
    con.close()
    assert pinned is not None and pinned.parent.name == ".profiles"
    # The pin is the store's merged profiles, linked (no copy); no member row carries an identityMap.
    store_files = sorted(home.rglob("store/merged/*/current/*.parquet"))
    assert len(list(pinned.glob("*.parquet"))) == len(store_files)
    assert all(any(os.path.samefile(p, s) for s in store_files) for p in pinned.glob("*.parquet"))
    assert {v for v in raw(first).values()} == {("realized", False)}

    gold, silver = {"tier": "gold"}, {"tier": "silver"}
    both = ["CRMID", "Email"]  # the profile's identity map, not only the uploaded identity
    assert members(client, audience_id) == {
        "ann": ("realized", both, gold),
        "bob": ("realized", both, silver),
        "cat": ("realized", both, gold),
    }
    entity = next(iter(client.profiles.get("Email", "ann@example.com").values()))["entity"]
    assert entity["segmentMembership"]["ups"][audience_id]["status"] == "realized"
    assert exported(home, first, tmp_path) == {"ann": 1, "bob": 1, "cat": 1}

    # A file written before the change reads the same, and is the previous membership of the next run: bob's
    # exit takes the identityMap of his old row.
    to_old_format(first)
    con = duckdb.connect()
    assert m.inspect_file(con, first).profiles is None
    con.close()
    assert members(client, audience_id)["ann"] == ("realized", both, gold)
    upload(home, [r for r in ROWS if not r.startswith("bob")])
    run = client.external_audiences.start_run(audience_id, {"dataFilterStartTime": 0}, wait=True)
    assert run["status"] == "SUCCESS", run
    second = latest_file(home, audience_id)
    assert second != first and raw(second)[_pid(client, "bob")] == ("exited", True)
    assert members(client, audience_id) == {
        "ann": ("realized", both, gold),
        "bob": ("exited", both, silver),
        "cat": ("realized", both, gold),
    }

    # From a pinned previous file: cat's exit takes her identityMap from the previous run's pin, bob's retained exit
    # keeps his.
    upload(home, [r for r in ROWS if r.startswith(("ann", "zed"))])
    run = client.external_audiences.start_run(audience_id, {"dataFilterStartTime": 0}, wait=True)
    assert run["status"] == "SUCCESS", run
    third = latest_file(home, audience_id)
    assert {k: v for k, v in raw(third).items() if v[0] == "exited"} == {
        _pid(client, "bob"): ("exited", True),
        _pid(client, "cat"): ("exited", True),
    }
    assert members(client, audience_id) == {
        "ann": ("realized", both, gold),
        "bob": ("exited", both, silver),
        "cat": ("exited", both, gold),
    }
    assert exported(home, third, tmp_path) == {"ann": 1, "bob": 1, "cat": 1}
    # Every run on the same store version shares one pin.
    assert len([p for p in pinned.parent.iterdir() if not p.name.startswith(".")]) == 1


def _pid(client, name: str) -> str:
    return next(iter(client.profiles.get("Email", f"{name}@example.com")))
