"""Membership diff: turn the qualified (audience, profile) pairs of one evaluation into membership files.

For every audience of an evaluation, compared with that audience's previous membership file
(``architecture.md`` §5, ``docs/data-model.md``):

* qualifies now and was not a current member (absent, or ``exited`` before): ``realized``, qualified at ``T``;
* qualifies now and was ``realized``/``existing``: ``existing``, keeping its ``lastQualificationTime``;
* was ``realized``/``existing`` and no longer qualifies: ``exited`` at ``T``;
* was ``exited`` before and still does not qualify: carried over as ``exited`` (its exit time kept) until it is
  older than the retention (30 days), then dropped.

Each file also carries the member's ``identityMap`` as of the evaluation (from the merged profiles for current
members, from the previous file for exits), so a past evaluation reads the same later. All audiences of one
evaluation are diffed in one DuckDB query and written under a temporary folder; :func:`publish_files` then renames
each into ``memberships/<audienceId>/<evaluationMs>.parquet``. Nothing here touches the catalog: the caller makes
the files visible by inserting the ``audience_evaluations`` rows afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

RETENTION_DAYS = 30
CURRENT_STATUSES = ("realized", "existing")
STATUSES = ("realized", "existing", "exited")
IDENTITY_MAP_TYPE = 'STRUCT(key VARCHAR, value STRUCT(id VARCHAR, "primary" BOOLEAN)[])[]'


def _identity_map_of(column: str) -> str:
    """``column`` projected to the documented identityMap shape (drops extra fields such as authenticatedState)."""
    return (
        f"list_transform({column}, lambda e: {{'key': e.key::VARCHAR, "
        f"'value': list_transform(e.value, lambda v: {{'id': v.id::VARCHAR, 'primary': v.primary::BOOLEAN}})}})"
    )


class MembershipCancelled(Exception):
    """The caller asked to stop; nothing was published."""


@dataclass
class AudienceCounts:
    """Counts of one audience in one evaluation."""

    members: int = 0  # current members: realized + existing
    realized: int = 0
    existing: int = 0
    exited: int = 0  # rows with status exited in the file (this evaluation's exits and retained older ones)
    exited_now: int = 0  # profiles that exited in this evaluation
    by_namespace: dict[str, int] = field(default_factory=dict)  # current members having an identity there

    def as_dict(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "realized": self.realized,
            "existing": self.existing,
            "exited": self.exited_now,
            "exitedRetained": self.exited,
            "by_namespace": dict(self.by_namespace),
        }


@dataclass
class DiffResult:
    """Membership files written (not yet published) under ``staging``, one per audience, and their counts."""

    staging: Path
    files: dict[str, Path]
    counts: dict[str, AudienceCounts]


def membership_path(memberships_root: Path, audience_id: str, evaluation_ms: int) -> Path:
    """``memberships/<audienceId>/<evaluationMs>.parquet`` (the audience id made safe as a folder name)."""
    return Path(memberships_root) / safe_name(audience_id) / f"{int(evaluation_ms)}.parquet"


def safe_name(audience_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in audience_id)


def _naive_utc(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t


def _sql_str(value: str | os.PathLike) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def connect(memory_limit: str = "2GB", temp_directory: Path | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
    if temp_directory is not None:
        Path(temp_directory).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {_sql_str(temp_directory)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def _has_identity_map(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    cols = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_sql_str(path)})").fetchall()
    return any(c[0] == "identityMap" for c in cols)


def diff_memberships(
    *,
    qualified_path: Path | list[Path] | None,
    audience_ids: list[str],
    previous: Mapping[str, Path | None],
    evaluation_time: dt.datetime,
    profiles_paths: Mapping[str, Path | None],
    staging_root: Path,
    retention_days: int = RETENTION_DAYS,
    should_cancel: Callable[[], bool] | None = None,
    memory_limit: str = "2GB",
) -> DiffResult:
    """Diff every audience of one evaluation against its previous membership; write the files under staging.

    ``qualified_path``: Parquet file(s) of ``(audience_id, profile_id)`` pairs (the engine's output; None or a
    missing file = nobody qualifies).
    ``previous``: audience id -> its previous membership file (absent/None: first evaluation).
    ``profiles_paths``: audience id -> the merged ``profiles.parquet`` its members' identityMap comes from.
    """
    cancelled = should_cancel or (lambda: False)
    t = _naive_utc(evaluation_time)
    cutoff = t - dt.timedelta(days=retention_days)
    staging = Path(staging_root) / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        con = connect(memory_limit, staging / "spill")
        try:
            return _diff(
                con, qualified_path, audience_ids, previous, t, cutoff, profiles_paths, staging, cancelled
            )
        finally:
            con.close()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _index_table(con, name: str, column: str, values: list[str], indexes: list[int] | None = None) -> None:
    """A temp table ``(aidx, <column>)`` built in one statement (row-by-row inserts are slow in DuckDB)."""
    indexes = list(range(len(values))) if indexes is None else indexes
    con.execute(
        f"CREATE TEMP TABLE {name} AS SELECT unnest($i)::INTEGER AS aidx, unnest($v)::VARCHAR AS {column}",
        {"i": indexes, "v": values},
    )


def _diff(
    con, qualified_path, audience_ids, previous, t, cutoff, profiles_paths, staging, cancelled
) -> DiffResult:
    _index_table(con, "audiences", "audience_id", list(audience_ids))

    # Qualified pairs of this evaluation, as audience indexes.
    sources = (
        [qualified_path] if isinstance(qualified_path, str | os.PathLike) else list(qualified_path or [])
    )
    sources = [p for p in sources if Path(p).exists()]
    if sources:
        files = "[" + ", ".join(_sql_str(p) for p in sources) + "]"
        con.execute(
            f"""CREATE TEMP TABLE qualified AS
                SELECT DISTINCT a.aidx, q.profile_id::VARCHAR AS profile_id
                FROM read_parquet({files}) q JOIN audiences a ON a.audience_id = q.audience_id"""
        )
    else:
        con.execute("CREATE TEMP TABLE qualified (aidx INTEGER, profile_id VARCHAR)")

    # Previous memberships (one file per audience that has been evaluated before).
    con.execute(
        "CREATE TEMP TABLE prev (aidx INTEGER, profile_id VARCHAR, status VARCHAR, "
        f"lqt TIMESTAMP, identityMap {IDENTITY_MAP_TYPE})"
    )
    # One scan over every previous file; the file name tells which audience a row belongs to.
    sources = [
        (aidx, str(Path(previous[a]).resolve()))
        for aidx, a in enumerate(audience_ids)
        if previous.get(a) is not None and Path(previous[a]).exists()
    ]
    if sources:
        _index_table(con, "prev_files", "filename", [f for _, f in sources], [i for i, _ in sources])
        files = "[" + ", ".join(_sql_str(f) for _, f in sources) + "]"
        scan = f"read_parquet({files}, filename = true, union_by_name = true)"
        columns = {c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        im = _identity_map_of("m.identityMap") if "identityMap" in columns else "NULL"
        con.execute(
            f"""INSERT INTO prev SELECT f.aidx, m.profile_id, m.status, m.lastQualificationTime, {im}
                FROM {scan} m JOIN prev_files f ON f.filename = m.filename"""
        )
    if cancelled():
        raise MembershipCancelled()

    # identityMap of the qualified profiles, from the merged profiles of each audience's merge policy.
    con.execute(
        f"CREATE TEMP TABLE idmap (aidx INTEGER, profile_id VARCHAR, identityMap {IDENTITY_MAP_TYPE})"
    )
    by_profiles: dict[str, list[int]] = {}
    for aidx, audience_id in enumerate(audience_ids):
        p = profiles_paths.get(audience_id)
        if p is not None and Path(p).exists():
            by_profiles.setdefault(str(p), []).append(aidx)
    for path, idxs in by_profiles.items():
        im = _identity_map_of("p.identityMap") if _has_identity_map(con, Path(path)) else "NULL"
        con.execute(
            f"""INSERT INTO idmap SELECT q.aidx, q.profile_id, {im}
                FROM qualified q JOIN read_parquet({_sql_str(path)}) p ON p.profile_id = q.profile_id
                WHERE q.aidx IN ({",".join(str(i) for i in idxs)})"""
        )

    con.execute(
        """CREATE TEMP TABLE result AS
        SELECT q.aidx, q.profile_id,
               CASE WHEN p.status IN ('realized', 'existing') THEN 'existing' ELSE 'realized' END AS status,
               CASE WHEN p.status IN ('realized', 'existing') THEN p.lqt ELSE $t END AS lastQualificationTime,
               coalesce(i.identityMap, p.identityMap) AS identityMap
        FROM qualified q
        LEFT JOIN prev p ON p.aidx = q.aidx AND p.profile_id = q.profile_id
        LEFT JOIN idmap i ON i.aidx = q.aidx AND i.profile_id = q.profile_id
        UNION ALL
        SELECT p.aidx, p.profile_id, 'exited',
               CASE WHEN p.status = 'exited' THEN p.lqt ELSE $t END, p.identityMap
        FROM prev p ANTI JOIN qualified q ON q.aidx = p.aidx AND q.profile_id = p.profile_id
        WHERE p.status IN ('realized', 'existing') OR (p.status = 'exited' AND p.lqt >= $cutoff)""",
        {"t": t, "cutoff": cutoff},
    )
    if cancelled():
        raise MembershipCancelled()

    counts = {a: AudienceCounts() for a in audience_ids}
    rows = con.execute(
        """SELECT aidx, status, count(*), count(*) FILTER (WHERE status = 'exited' AND lastQualificationTime = $t)
           FROM result GROUP BY ALL""",
        {"t": t},
    ).fetchall()
    for aidx, status, n, exited_now in rows:
        c = counts[audience_ids[aidx]]
        setattr(c, status, n)
        if status == "exited":
            c.exited_now = exited_now
    for c in counts.values():
        c.members = c.realized + c.existing
    ns_rows = con.execute(
        """SELECT aidx, e.key, count(DISTINCT profile_id)
           FROM (SELECT aidx, profile_id, unnest(identityMap) AS e FROM result WHERE status <> 'exited')
           GROUP BY ALL"""
    ).fetchall()
    for aidx, namespace, n in ns_rows:
        counts[audience_ids[aidx]].by_namespace[namespace] = n

    # One partitioned write for every audience, then an empty file for audiences without rows.
    parts = staging / "parts"
    con.execute(
        f"""COPY (SELECT aidx, profile_id, status, lastQualificationTime, identityMap FROM result ORDER BY aidx)
            TO {_sql_str(parts)} (FORMAT parquet, PARTITION_BY (aidx))"""
    )
    if cancelled():
        raise MembershipCancelled()
    # What DuckDB wrote, listed once: parts/aidx=<n>/<file>.parquet (one file per partition in practice).
    written: dict[int, list[Path]] = {}
    if parts.exists():
        for entry in os.scandir(parts):
            if entry.is_dir() and entry.name.startswith("aidx="):
                written[int(entry.name[5:])] = sorted(Path(entry.path).glob("*.parquet"))
    files: dict[str, Path] = {}
    empty = staging / "empty.parquet"
    for aidx, audience_id in enumerate(audience_ids):
        found = written.get(aidx) or []
        if len(found) == 1:
            files[audience_id] = found[0]  # published straight from here (one rename per file)
            continue
        target = staging / f"{aidx}.parquet"
        if found:
            con.execute(
                f"COPY (SELECT * FROM read_parquet({_sql_str(parts / f'aidx={aidx}' / '*.parquet')})) "
                f"TO {_sql_str(target)} (FORMAT parquet)"
            )
        else:
            if not empty.exists():
                con.execute(
                    f"""COPY (SELECT profile_id, status, lastQualificationTime, identityMap FROM result WHERE false)
                        TO {_sql_str(empty)} (FORMAT parquet)"""
                )
            shutil.copyfile(empty, target)
        files[audience_id] = target
    return DiffResult(staging=staging, files=files, counts=counts)


def publish_files(diff: DiffResult, memberships_root: Path, evaluation_ms: int) -> dict[str, Path]:
    """Rename every staged file into ``memberships/<audienceId>/<evaluationMs>.parquet``; return the final paths.

    When that name is taken (the same evaluation time again), the file gets a unique suffix instead, so the
    published file stays intact until the catalog row is replaced.

    Each rename is atomic; the evaluation becomes visible only when the caller records the catalog rows. On error,
    files already moved are removed again (no catalog row points at them yet).
    """
    moved: dict[str, Path] = {}
    try:
        for audience_id, staged in diff.files.items():
            final = membership_path(memberships_root, audience_id, evaluation_ms)
            if final.exists():  # a re-run at the same time: never overwrite the published file before its row
                final = final.with_name(f"{int(evaluation_ms)}-{uuid.uuid4().hex[:8]}.parquet")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            moved[audience_id] = final
    except BaseException:
        discard(moved.values())
        raise
    finally:
        shutil.rmtree(diff.staging, ignore_errors=True)
    return moved


def discard(paths) -> None:
    for p in paths:
        try:
            Path(p).unlink()
        except FileNotFoundError:
            pass


def write_current_members(membership_file: Path | None, out_path: Path) -> Path:
    """A Parquet of ``profile_id`` of the current members (realized/existing) of a membership file.

    This is what the engine reads for an ``inSegment`` reference to an audience not evaluated in the same run.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        if membership_file is None or not Path(membership_file).exists():
            con.execute(
                f"COPY (SELECT NULL::VARCHAR AS profile_id WHERE false) TO {_sql_str(out_path)} (FORMAT parquet)"
            )
        else:
            con.execute(
                f"""COPY (SELECT profile_id FROM read_parquet({_sql_str(membership_file)})
                          WHERE status IN ('realized', 'existing'))
                    TO {_sql_str(out_path)} (FORMAT parquet)"""
            )
    finally:
        con.close()
    return out_path


def read_members(membership_file: Path, start: int = 0, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
    """One page of a membership file, ordered by profile id: ``(total, rows)``; times as naive UTC datetimes."""
    con = duckdb.connect()
    try:
        src = f"read_parquet({_sql_str(membership_file)})"
        total = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
        im = "identityMap" if _has_identity_map(con, Path(membership_file)) else "NULL AS identityMap"
        cur = con.execute(
            f"""SELECT profile_id, status, lastQualificationTime, {im} FROM {src}
                ORDER BY profile_id LIMIT $limit OFFSET $start""",
            {"limit": int(limit), "start": int(start)},
        )
        names = [d[0] for d in cur.description]
        return int(total), [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def read_profile_status(membership_file: Path, profile_id: str) -> dict[str, Any] | None:
    """The row of one profile in a membership file, or None."""
    con = duckdb.connect()
    try:
        row = con.execute(
            f"""SELECT status, lastQualificationTime FROM read_parquet({_sql_str(membership_file)})
                WHERE profile_id = $pid LIMIT 1""",
            {"pid": profile_id},
        ).fetchone()
    finally:
        con.close()
    return None if row is None else {"status": row[0], "lastQualificationTime": row[1]}
