"""Range files of a store part keyed by ``profile_id`` (the identity graph, the merged profiles of a policy).

A version folder holds ``part-*.parquet`` files; the manifest lists each with the range of profile ids it holds
(``lo``..``hi``), its rows and its kind. A full build writes "base" parts: sorted once by profile id and cut into
files of :data:`PART_ROWS` rows, so each holds one narrow range. An incremental step hard-links every part that
holds none of the profiles it replaces, rewrites the others without them, and adds one "delta" part with the
replacing rows: a batch rewrites only the ranges it touches. A step that touches most ranges rewrites each one
with the added rows of its range instead (no delta part, no global sort). When delta parts pile up
(:data:`MAX_DELTA_PARTS`, :data:`MAX_DELTA_SHARE`) the step re-clusters every row into base parts (the rows themselves do not change).

Readers take the folder's ``*.parquet`` glob (``StoreLayout.identities_path`` / ``profiles_path``); the parts
never hold the same row twice, so the glob reads exactly the rows of the store.
"""

from __future__ import annotations

import bisect
import os
import shutil
from pathlib import Path

from segmentation_pipelines.duck import sql_list, sql_str

PART_ROWS = 16384
MAX_DELTA_PARTS = 12
MAX_DELTA_SHARE = 0.2
# When the parts a step touches hold more than this share of the rows, every range is rewritten in one
# statement partitioned by range (the added rows folded into their ranges) rather than one statement per part
# plus a delta part.
REGROUP_SHARE = 0.5
PARQUET = "FORMAT PARQUET, COMPRESSION SNAPPY"


def _base_options(rows: int) -> str:
    return f"{PARQUET}, ROW_GROUP_SIZE {int(rows)}, ROW_GROUPS_PER_FILE 1"


def files(version: Path, parts: list[dict]) -> list[str]:
    return [str(version / p["file"]) for p in parts]


def write_base(con, version: Path, select_sql: str, rows: int = PART_ROWS) -> list[dict]:
    """``select_sql`` sorted by profile id into base parts of ``rows`` rows (one empty file of its columns when
    it has no rows: a built part always has a file, so the glob reads)."""
    scratch = version / ".sorted"
    con.execute(
        f"COPY (SELECT * FROM ({select_sql}) ORDER BY profile_id) TO {sql_str(str(scratch))} "
        f"({_base_options(rows)})"
    )
    written = (
        sorted(scratch.glob("*.parquet"), key=lambda f: (len(f.name), f.name)) if scratch.exists() else []
    )
    parts = []
    for i, f in enumerate(written):
        name = f"part-b{i:05d}-{version.name}.parquet"
        os.replace(f, version / name)
        parts.append({"file": name, "kind": "base", "lo": None, "hi": None, "rows": 0})
    shutil.rmtree(scratch, ignore_errors=True)
    if not parts:
        return [_empty(con, version, select_sql)]
    describe(con, version, parts)
    return parts


def _empty(con, version: Path, like_sql: str) -> dict:
    """An empty base part with the columns of ``like_sql`` (a store with no row still has a file to read)."""
    name = f"part-empty-{version.name}.parquet"
    con.execute(f"COPY (SELECT * FROM ({like_sql}) LIMIT 0) TO {sql_str(str(version / name))} ({PARQUET})")
    return {"file": name, "kind": "base", "lo": None, "hi": None, "rows": 0}


def describe(con, version: Path, parts: list[dict]) -> None:
    """Fill in each part's rows and profile-id range from the Parquet footers."""
    if not parts:
        return
    listed = sql_list(files(version, parts))
    rows = dict(
        con.execute(
            f"SELECT parse_filename(file_name), num_rows FROM parquet_file_metadata({listed})"
        ).fetchall()
    )
    ranges = {
        r[0]: (r[1], r[2])
        for r in con.execute(
            f"""SELECT parse_filename(file_name), min(stats_min_value), max(stats_max_value)
                FROM parquet_metadata({listed}) WHERE path_in_schema = 'profile_id' GROUP BY 1"""
        ).fetchall()
    }
    for p in parts:
        p["rows"] = int(rows.get(p["file"], 0))
        p["lo"], p["hi"] = ranges.get(p["file"], (None, None))


def needs_compaction(parts: list[dict]) -> bool:
    deltas = [p for p in parts if p["kind"] == "delta"]
    total = sum(p["rows"] for p in parts) or 1
    return len(deltas) > MAX_DELTA_PARTS or sum(p["rows"] for p in deltas) / total > MAX_DELTA_SHARE


def _holds_any(part: dict, ids: list[str]) -> bool:
    """Whether ``part``'s range can hold one of ``ids`` (sorted)."""
    if not part["rows"]:
        return False
    if part.get("lo") is None or part.get("hi") is None:
        return True
    i = bisect.bisect_left(ids, part["lo"])
    return i < len(ids) and ids[i] <= part["hi"]


def touched(parts: list[dict], ids: list[str]) -> list[dict]:
    """The parts whose range can hold one of ``ids`` (sorted)."""
    return [p for p in parts if _holds_any(p, ids)]


def step(
    con,
    version: Path,
    previous: Path,
    parts: list[dict],
    drop_table: str,
    add_sql: str | None,
    rows: int = PART_ROWS,
) -> list[dict]:
    """The parts of ``previous`` without the rows whose profile id is in the temp table ``drop_table``
    (``profile_id``), plus the rows of ``add_sql`` as one delta part. Parts that hold none of the dropped ids are
    hard-linked, not rewritten."""
    drop = [r[0] for r in con.execute(f"SELECT DISTINCT profile_id FROM {drop_table} ORDER BY 1").fetchall()]
    drop = [d for d in drop if d is not None]
    hit = {p["file"] for p in touched(parts, drop)}
    if sum(p["rows"] for p in parts if p["file"] in hit) > REGROUP_SHARE * sum(p["rows"] for p in parts):
        return _rewrite_ranges(con, version, previous, parts, hit, drop_table, add_sql, rows)
    out: list[dict] = []
    rewritten: list[dict] = []
    for i, p in enumerate(parts):
        src = previous / p["file"]
        if not p["rows"]:
            continue  # an empty part (of an empty store): the step writes an empty one again if needed
        if p["file"] not in hit:
            os.link(src, version / p["file"])
            out.append(dict(p))
            continue
        name = f"part-r{i:05d}-{version.name}.parquet"
        n = con.execute(
            f"""COPY (SELECT * FROM read_parquet({sql_str(str(src))}) ANTI JOIN {drop_table} d USING (profile_id))
                TO {sql_str(str(version / name))} ({PARQUET}, ROW_GROUP_SIZE {int(rows)})"""
        ).fetchone()[0]
        if int(n) == 0:
            (version / name).unlink()
            continue
        new = {**p, "file": name}
        out.append(new)
        rewritten.append(new)
    describe(con, version, rewritten)
    if add_sql is not None:
        name = f"part-d-{version.name}.parquet"
        n = con.execute(
            f"COPY (SELECT * FROM ({add_sql}) ORDER BY profile_id) TO {sql_str(str(version / name))} ({PARQUET})"
        ).fetchone()[0]
        if int(n):
            out.append({"file": name, "kind": "delta", "lo": None, "hi": None, "rows": 0})
            describe(con, version, out[-1:])
        else:
            (version / name).unlink()
    if not out:
        return [
            _empty(con, version, f"SELECT * FROM read_parquet({sql_str(str(previous / parts[0]['file']))})")
        ]
    if needs_compaction(out):
        return compact(con, version, out, rows)
    return out


def _rewrite_ranges(
    con,
    version: Path,
    previous: Path,
    parts: list[dict],
    hit: set[str],
    drop_table: str,
    add_sql: str | None,
    rows: int,
) -> list[dict]:
    """Most rows are in touched parts (a batch of profiles spread over every range): each range is rewritten on
    its own, without the dropped rows and with the added rows (and the rows of earlier delta parts) whose ids fall
    in it, in one statement partitioned by range. No global sort and no delta part: the rows only move within
    their range, so the files keep their narrow, non-overlapping ranges (rows are not sorted within a file).
    Base parts that lose and gain no row are hard-linked."""
    bases = sorted(
        (p for p in parts if p["kind"] == "base" and p["rows"] and p.get("lo") is not None),
        key=lambda p: p["lo"],
    )
    if not bases:
        return _regroup(con, version, previous, parts, hit, drop_table, add_sql, rows)
    index = {p["file"]: i for i, p in enumerate(bases)}
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _ranges AS SELECT * FROM (VALUES "
        + ", ".join(
            f"({i}, {sql_str(p['lo'])}, {sql_str(str(previous / p['file']))})" for i, p in enumerate(bases)
        )
        + ") t(_range, lo, filename)"
    )
    # The rows that enter a range: the added ones and those of earlier delta parts, each to the range of the
    # last base part starting at or before its id (ids before the first range go to the first one).
    loose = []
    deltas = [p for p in parts if p["rows"] and p["file"] not in index]
    if deltas:
        loose.append(
            f"SELECT * FROM read_parquet({sql_list(files(previous, deltas))}) ANTI JOIN {drop_table} d USING (profile_id)"
        )
    if add_sql is not None:
        loose.append(f"SELECT * FROM ({add_sql})")
    entering = "_entering"
    if loose:
        union = " UNION ALL BY NAME ".join(f"({q})" for q in loose)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {entering} AS
            SELECT e.*, coalesce(r._range, 0) AS _range FROM ({union}) e ASOF LEFT JOIN _ranges r ON e.profile_id >= r.lo"""
        )
        gaining = {r[0] for r in con.execute(f"SELECT DISTINCT _range FROM {entering}").fetchall()}
    else:
        gaining = set()
    redo = [p for i, p in enumerate(bases) if p["file"] in hit or i in gaining]
    redone = {p["file"] for p in redo}
    out = []
    for p in parts:
        if p["rows"] and p["file"] in index and p["file"] not in redone:
            os.link(previous / p["file"], version / p["file"])
            out.append(dict(p))
    scratch = version / ".ranges"
    sql = f"""SELECT b.* EXCLUDE (filename), r._range
        FROM read_parquet({sql_list(files(previous, redo))}, filename = true) b JOIN _ranges r USING (filename)
        ANTI JOIN {drop_table} d USING (profile_id)"""
    if loose:
        sql = f"{sql} UNION ALL BY NAME SELECT * FROM {entering}"
    if redo or loose:
        con.execute(
            f"COPY ({sql}) TO {sql_str(str(scratch))} ({PARQUET}, PARTITION_BY (_range), ROW_GROUP_SIZE {4 * int(rows)})"
        )
    new = []
    for folder in sorted(scratch.glob("_range=*")) if scratch.exists() else []:
        i = int(folder.name.split("=", 1)[1])
        for k, f in enumerate(sorted(folder.glob("*.parquet"))):
            name = f"part-r{i:05d}-{k}-{version.name}.parquet"
            os.replace(f, version / name)
            new.append({"file": name, "kind": "base", "lo": None, "hi": None, "rows": 0})
    shutil.rmtree(scratch, ignore_errors=True)
    describe(con, version, new)
    out.extend(p for p in new if p["rows"])
    if not out:
        return [
            _empty(con, version, f"SELECT * FROM read_parquet({sql_str(str(previous / bases[0]['file']))})")
        ]
    return sorted(out, key=lambda p: p["lo"])


def _regroup(
    con,
    version: Path,
    previous: Path,
    parts: list[dict],
    hit: set[str],
    drop_table: str,
    add_sql: str | None,
    rows: int,
) -> list[dict]:
    """:func:`_rewrite_ranges` when no base part has a range to fold rows into: one sorted statement rewrites the
    touched parts without the dropped rows, together with the added rows, as base parts."""
    out = []
    for p in parts:
        if p["rows"] and p["file"] not in hit:
            os.link(previous / p["file"], version / p["file"])
            out.append(dict(p))
    kept = sql_list(str(previous / p["file"]) for p in parts if p["file"] in hit)
    sql = f"SELECT * FROM read_parquet({kept}) ANTI JOIN {drop_table} d USING (profile_id)"
    if add_sql is not None:
        sql = f"{sql} UNION ALL BY NAME SELECT * FROM ({add_sql})"
    new = write_base(con, version, sql, rows)
    return [*out, *(p for p in new if p["rows"] or not out)]


def compact(con, version: Path, parts: list[dict], rows: int = PART_ROWS) -> list[dict]:
    """Every row of ``parts`` (files of ``version``) re-clustered into base parts."""
    old = files(version, parts)
    new = write_base(con, version, f"SELECT * FROM read_parquet({sql_list(old)})", rows)
    for f in old:
        Path(f).unlink()
    return new
