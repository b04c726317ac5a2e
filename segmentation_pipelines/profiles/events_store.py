"""The keyed experience events (``store/events/<version>/part-*.parquet``): full build and incremental steps.

Parts are listed in the manifest with the range of profile ids they hold (``lo``..``hi``) and their rows. A full
build writes "base" parts, each holding one range of profile ids and clustered by profile id (the engine's one
``GROUP BY profile_id`` then finds a profile's rows together). An incremental step hard-links the parts it keeps
from the previous version and adds one "delta" part (sorted by profile id) with the events of the new batches and
the events whose profile id changed because components merged; a part holding such an event is rewritten without
it. Compaction (a full build) happens when delta parts pile up (:data:`MAX_DELTA_PARTS`, :data:`MAX_DELTA_SHARE`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from segmentation_pipelines.duck import sql_list, sql_str
from segmentation_pipelines.profiles import ranges
from segmentation_pipelines.profiles.xdm import IDENTITY_MAP_TYPE

MAX_DELTA_PARTS = 12  # beyond this many delta parts, rebuild in full (re-cluster)
MAX_DELTA_SHARE = 0.2  # or when delta parts hold this share of the events
# Snappy: writing the 20M-event store with ZSTD took 34 s against 26 s (unsorted, same run), and the engine
# decompresses every row of it on each evaluation.
PARQUET = "FORMAT PARQUET, COMPRESSION SNAPPY, ROW_GROUP_SIZE 122880"
# Base parts: one row group of this many rows per file. A link that merges two people moves the events of the
# merged-away profile, and every base part holding some is rewritten without them: with 30,720-row files (~650 at
# 20M events) 20 links rewrite ~0.6M rows instead of ~2.4M with 122,880-row files.
BASE_PART_ROWS = 30720
PART_PARQUET = f"FORMAT PARQUET, COMPRESSION SNAPPY, ROW_GROUP_SIZE {BASE_PART_ROWS}"
BASE_PARQUET = f"{PART_PARQUET}, ROW_GROUPS_PER_FILE 1"

EMPTY_EVENTS = (
    "SELECT NULL::VARCHAR AS profile_id, NULL::VARCHAR AS _id, NULL::TIMESTAMP AS timestamp, "
    f"NULL::VARCHAR AS eventType, NULL::{IDENTITY_MAP_TYPE} AS identityMap WHERE false"
)


def _keyed_sql(events: str, ids_path: str) -> str:
    """Events joined to the profile of their first identity (non-excluded components only)."""
    return f"""SELECT i.profile_id, e.* FROM {events} e
        JOIN (SELECT namespace, id, profile_id FROM read_parquet({sql_str(ids_path)}) WHERE NOT excluded) i
          ON i.namespace = e.identityMap[1].key AND i.id = e.identityMap[1].value[1].id"""


def full_build(con, version: Path, event_files: list[str], ids_path: str) -> tuple[list[dict], dict]:
    """Key every event; write the base parts. Returns (parts, stats)."""
    if not event_files:
        path = version / "part-empty.parquet"
        con.execute(f"COPY ({EMPTY_EVENTS}) TO {sql_str(str(path))} (FORMAT PARQUET)")
        return [{"file": path.name, "kind": "base", "lo": None, "hi": None, "rows": 0}], {
            "events": 0,
            "events_excluded": 0,
        }
    src = f"read_parquet({sql_list(event_files)}, union_by_name=true)"
    total = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
    scratch = version / ".sorted"
    # Sorted once, cut into files of one row group each: every file holds a narrow range of profile ids, so an
    # incremental step that moves a few profiles' events rewrites only the few files that hold them.
    con.execute(
        f"""COPY (SELECT * FROM ({_keyed_sql(src, ids_path)}) ORDER BY profile_id)
            TO {sql_str(str(scratch))} ({BASE_PARQUET})"""
    )
    parts = []
    for i, f in enumerate(sorted(scratch.glob("*.parquet"))):
        name = f"part-b{i:05d}.parquet"
        os.replace(f, version / name)
        parts.append({"file": name, "kind": "base", "lo": None, "hi": None, "rows": 0})
    shutil.rmtree(scratch, ignore_errors=True)
    if not parts:  # every event belonged to an excluded graph
        return full_build(con, version, [], ids_path)[0], {"events": 0, "events_excluded": int(total)}
    ranges.describe(con, version, parts)
    kept = sum(p["rows"] for p in parts)
    return parts, {"events": kept, "events_excluded": int(total) - kept}


def needs_compaction(parts: list[dict]) -> bool:
    deltas = [p for p in parts if p["kind"] == "delta"]
    total = sum(p["rows"] for p in parts) or 1
    return len(deltas) >= MAX_DELTA_PARTS or sum(p["rows"] for p in deltas) / total > MAX_DELTA_SHARE


def incremental_step(
    con,
    version: Path,
    previous: Path,
    parts: list[dict],
    stats: dict,
    new_event_files: list[str],
    ids_path: str,
    remap_path: str | None,
) -> tuple[list[dict], dict]:
    """Append the events of ``new_event_files`` and move the events of re-keyed profiles (``remap_path``:
    ``old_profile_id -> profile_id, excluded`` of the identity-graph step since the previous version)."""
    moved_from: list[str] = []
    out: list[dict] = []
    if remap_path:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE remap AS
            SELECT DISTINCT old_profile_id AS old, profile_id AS new, excluded FROM read_parquet({sql_str(remap_path)})
            WHERE old_profile_id IS NOT NULL AND NOT old_excluded AND (old_profile_id <> profile_id OR excluded)"""
        )
        olds = [r[0] for r in con.execute("SELECT old FROM remap ORDER BY old").fetchall()]
    else:
        olds = []
    # The parts whose range can hold a re-keyed profile, then, in one scan of their profile ids, those that do.
    candidates = ranges.touched(parts, olds)
    hit = set()
    if candidates:
        hit = {
            r[0]
            for r in con.execute(
                f"""SELECT DISTINCT parse_filename(filename) FROM read_parquet({sql_list(ranges.files(previous, candidates))},
                    filename = true, union_by_name = true) SEMI JOIN remap r ON r.old = profile_id"""
            ).fetchall()
        }
    rewritten = []
    for p in parts:
        src = previous / p["file"]
        if p["file"] not in hit:
            os.link(src, version / p["file"])
            out.append(dict(p))
            continue
        moved_from.append(str(src))
        name = f"part-r{len(out):05d}-{version.name}.parquet"
        con.execute(
            f"""COPY (SELECT * FROM read_parquet({sql_str(str(src))}) ANTI JOIN remap r ON r.old = profile_id
                ORDER BY profile_id) TO {sql_str(str(version / name))} ({PART_PARQUET})"""
        )
        out.append({**p, "file": name})
        rewritten.append(out[-1])
    ranges.describe(con, version, rewritten)
    selects = []
    if moved_from:
        selects.append(
            f"""SELECT r.new AS profile_id, e.* EXCLUDE (profile_id)
                FROM read_parquet({sql_list(moved_from)}, union_by_name=true) e JOIN remap r ON r.old = e.profile_id
                WHERE NOT r.excluded"""
        )
    new_rows = 0
    if new_event_files:
        # Read the new files together with one existing part, so that the delta part gets the store's schema
        # (columns in the same order, structs with every field); the existing part itself is filtered out.
        template = str(version / out[0]["file"])
        src = (
            f"(SELECT * EXCLUDE (profile_id, filename) FROM read_parquet({sql_list([template, *new_event_files])},"
            f" union_by_name=true, filename=true) WHERE filename <> {sql_str(template)})"
        )
        new_rows = con.execute(
            f"SELECT sum(num_rows) FROM parquet_file_metadata({sql_list(new_event_files)})"
        ).fetchone()[0]
        selects.append(_keyed_sql(src, ids_path))
    if selects:
        name = f"part-d{version.name}.parquet"
        union = " UNION ALL BY NAME ".join(f"({s})" for s in selects)
        con.execute(
            f"COPY (SELECT * FROM ({union}) ORDER BY profile_id) TO {sql_str(str(version / name))} ({PARQUET})"
        )
        out.append({"file": name, "kind": "delta", "lo": None, "hi": None, "rows": 0})
        ranges.describe(con, version, out[-1:])
    events = sum(p["rows"] for p in out)
    total = int(stats["events"]) + int(stats["events_excluded"]) + int(new_rows or 0)
    return out, {"events": events, "events_excluded": total - events}
