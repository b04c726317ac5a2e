"""Membership diff: turn the qualified (audience, profile) pairs of one evaluation into membership files.

For every audience of an evaluation, compared with that audience's previous membership file
(``architecture.md`` §5, ``docs/data-model.md``):

* qualifies now and was not a current member (absent, or ``exited`` before): ``realized``, qualified at ``T``;
* qualifies now and was ``realized``/``existing``: ``existing``, keeping its ``lastQualificationTime``;
* was ``realized``/``existing`` and no longer qualifies: ``exited`` at ``T``;
* was ``exited`` before and still does not qualify: carried over as ``exited`` (its exit time kept) until it is
  older than the retention (30 days), then dropped.

Since issue 18 the files are in the "pidx format" (below, and ``docs/decisions/segments.md``): integer rows over a
stable profile index, the members' ``identityMap`` (current members' from the merged profiles, exits' from the
previous evaluation) once per evaluation in an identities file, so a past evaluation reads the same later. All
audiences of one evaluation are diffed into one integer table under a temporary folder; :func:`publish_files` then
renames the identities file and each audience's file into ``memberships/<audienceId>/<evaluationMs>.parquet``.
Nothing here touches the catalog: the caller makes the files visible by inserting the ``audience_evaluations`` rows
afterwards. Every reader here reads both formats (files written before, and external audiences' files).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import glob
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from segmentation_pipelines.duck import connect, parquet_exists, sql_list, sql_str
from segmentation_pipelines.engine.interrupt import run_interruptible
from segmentation_pipelines.engine.model import EvaluationCancelled
from segmentation_pipelines.timeutil import naive_utc

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


# ---------------------------------------------------------------------------------------------------------------
# The membership format (issue 18). Files written by this module since then ("pidx format"):
#   memberships/<audienceId>/<evaluationMs>.parquet: (pidx UINTEGER, src UTINYINT, status UTINYINT,
#       lastQualificationTime TIMESTAMP), sorted by pidx, ZSTD; status 0 realized, 1 existing, 2 exited; its
#       Parquet key-value metadata names the evaluation's identities file ("identities").
#   memberships/.identities/: the identities the files name, (src, pidx, profile_id, identityMap) of at least
#       every profile in any of the evaluation's files; src numbers the merged profiles (merge policies) of that
#       evaluation. Usually profiles-<key>.parquet: every profile of the merged profiles the evaluation read (with
#       its identityMap there, and nsid/ns: its list of namespaces, numbered), written by the first evaluation of
#       those merged profiles (the key names their files) and named by every later one: a store version's
#       identities are written once, not once per evaluation. When an exit's profile is no longer in them (merged
#       away, deleted), the evaluation writes its own <evaluationMs>-<token>.parquet: the same rows and that
#       exit's identities as its previous file recorded them.
#   memberships/.index/: the profile index, profile id -> pidx, append-only (a number is never reused).
# Files written before (and external audiences' files, engine/external_ingest.py) carry profile_id, status as a
# string and identityMap per row; every reader accepts both, choosing by the file's columns. An external
# audience's file whose key-value metadata names "profiles" (a folder of pinned merged profiles, relative to the
# memberships root) leaves a current member's identityMap NULL: readers join it from those profiles by profile_id.
# ---------------------------------------------------------------------------------------------------------------
INDEX_DIR = ".index"
IDENTITIES_DIR = ".identities"
PROFILES_PREFIX = "profiles-"  # an identities file shared by the evaluations of the same merged profiles
PROFILES_FORMAT = "profiles-v1"  # part of a profiles file's key: a change of its columns makes new files
STATUS_CODE = {"realized": 0, "existing": 1, "exited": 2}
_STATUS_NAME = "(['realized', 'existing', 'exited'])[{col} + 1]"
_STATUS_OF_NAME = "CASE {col} WHEN 'realized' THEN 0 WHEN 'existing' THEN 1 ELSE 2 END"
# The diff's join key: (audience number, profile number) as one BIGINT (one hash key: measured 2.75 -> 2.38 s for
# the next day's FULL JOIN of 25M pairs on two keys against one).
_KEY = "(({a})::BIGINT << 32 | ({p})::BIGINT)"


@dataclass
class MembershipFile:
    """What a reader needs to know about one membership file."""

    path: Path
    columns: set[str]
    identities: (
        Path | None
    )  # pidx format: its evaluation's identities file; None: a file with profile_id rows
    # profile_id rows whose current members' identityMap is in pinned merged profiles (external audiences): their
    # folder; None: every row carries its identityMap.
    profiles: Path | None = None

    @property
    def pidx_format(self) -> bool:
        return self.identities is not None


def inspect_file(con: duckdb.DuckDBPyConnection, path: Path) -> MembershipFile:
    """The format of a membership file (its columns; for the pidx format, where its identities are)."""
    path = Path(path)
    src = f"read_parquet({sql_str(path)})"
    columns = {c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    identities = profiles = None
    if "pidx" in columns or "validUntil" in columns:
        kv = dict(
            con.execute(
                f"SELECT decode(key), decode(value) FROM parquet_kv_metadata({sql_str(path)})"
            ).fetchall()
        )
        if "pidx" in columns:
            identities = path.parent.parent / IDENTITIES_DIR / kv["identities"]
        elif kv.get("profiles"):
            profiles = path.parent.parent / kv["profiles"]
    return MembershipFile(path, columns, identities, profiles)


def members_sql(con: duckdb.DuckDBPyConnection, path: Path, extra: bool = True) -> str:
    """A SELECT of ``(profile_id, status, lastQualificationTime, identityMap)`` (status as its name) of a
    membership file of either format; ``extra``: also ``validUntil``/``payload`` where the file has them."""
    f = inspect_file(con, path)
    if f.pidx_format:
        return (
            f"SELECT i.profile_id, {_STATUS_NAME.format(col='m.status')} AS status, m.lastQualificationTime, "
            f"i.identityMap FROM read_parquet({sql_str(f.path)}) m "
            f"JOIN read_parquet({sql_str(f.identities)}) i ON i.src = m.src AND i.pidx = m.pidx"
        )
    im = f"identityMap::{IDENTITY_MAP_TYPE}" if "identityMap" in f.columns else f"NULL::{IDENTITY_MAP_TYPE}"
    more = "".join(f", {c}" for c in ("validUntil", "payload") if extra and c in f.columns)
    if f.profiles is not None:  # current members' identityMap from the pinned profiles; exits carry theirs
        more = "".join(f", m.{c}" for c in ("validUntil", "payload") if extra and c in f.columns)
        return (
            f"SELECT m.profile_id::VARCHAR AS profile_id, m.status, m.lastQualificationTime, "
            f"CASE WHEN m.status = 'exited' THEN m.identityMap::{IDENTITY_MAP_TYPE} ELSE p.identityMap END "
            f"AS identityMap{more} FROM read_parquet({sql_str(f.path)}) m "
            f"LEFT JOIN ({pinned_profiles_sql(con, f.profiles)}) p ON p.profile_id = m.profile_id::VARCHAR"
        )
    return (
        f"SELECT profile_id::VARCHAR AS profile_id, status, lastQualificationTime, {im} AS identityMap{more} "
        f"FROM read_parquet({sql_str(f.path)})"
    )


def pinned_profiles_sql(con: duckdb.DuckDBPyConnection, folder: Path) -> str:
    """``(profile_id, identityMap)`` of a folder of pinned merged profiles (engine/external_ingest.py), the identity
    map in the documented shape."""
    src = f"read_parquet({sql_str(Path(folder) / '*.parquet')})"
    shape = con.execute(f"DESCRIBE SELECT identityMap FROM {src}").fetchone()[1]
    im = (
        "identityMap"
        if shape.replace('"', "") == IDENTITY_MAP_TYPE.replace('"', "")
        else _identity_map_of("identityMap")
    )
    return f"SELECT profile_id::VARCHAR AS profile_id, {im}::{IDENTITY_MAP_TYPE} AS identityMap FROM {src}"


@contextlib.contextmanager
def _index_lock(root: Path):
    folder = Path(root) / INDEX_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_COMPACT_AFTER = 16  # parts; then one "-full" part replaces them


def _index_parts(folder: Path) -> list[tuple[int, Path]]:
    """The parts to read: the newest ``<seq>-full.parquet`` and every part after it (older ones are superseded;
    a compaction interrupted before removing them leaves them harmless)."""
    parts = []
    for p in folder.glob("*.parquet"):
        seq, _, kind = p.stem.partition("-")
        if seq.isdigit():
            parts.append((int(seq), kind == "full", p))
    parts.sort()
    full = max((i for i, (_, is_full, _) in enumerate(parts) if is_full), default=0)
    return [(seq, p) for seq, _, p in parts[full:]]


def number_profiles(run, con: duckdb.DuckDBPyConnection, root: Path, new_ids_sql: str) -> None:
    """Load the profile index into the temp table ``idx (profile_id, pidx)``, first appending the profile ids of
    ``new_ids_sql`` (a SELECT of ``profile_id``) it does not hold yet, numbered after the largest (sorted by id).
    Under an exclusive lock: two evaluations never hand out the same number."""
    with _index_lock(root) as folder:
        parts = _index_parts(folder)
        if parts:
            files = sql_list(p for _, p in parts)
            run(f"CREATE TEMP TABLE idx AS SELECT profile_id, pidx FROM read_parquet({files})")
        else:
            run("CREATE TEMP TABLE idx (profile_id VARCHAR, pidx UINTEGER)")
        run(
            f"""CREATE TEMP TABLE idx_new AS
                SELECT n.profile_id, ((SELECT coalesce(max(pidx) + 1, 0) FROM idx)
                                      + row_number() OVER (ORDER BY n.profile_id) - 1)::UINTEGER AS pidx
                FROM (SELECT DISTINCT profile_id::VARCHAR AS profile_id FROM ({new_ids_sql})
                      WHERE profile_id IS NOT NULL) n
                ANTI JOIN idx USING (profile_id)"""
        )
        if run("SELECT count(*) FROM idx_new")[0][0] == 0:
            return
        run("INSERT INTO idx SELECT * FROM idx_new")
        seq = (parts[-1][0] + 1) if parts else 0
        compact = len(parts) + 1 > _COMPACT_AFTER
        name = f"{seq:010d}-full.parquet" if compact else f"{seq:010d}.parquet"
        tmp = folder / f".{name}.{uuid.uuid4().hex}"
        run(
            f"COPY (SELECT * FROM {'idx' if compact else 'idx_new'} ORDER BY pidx) TO {sql_str(tmp)} (FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION V2)"
        )
        os.replace(tmp, folder / name)
        if compact:
            for _, p in parts:
                discard([p])


def profile_numbers(memberships_root: Path, profiles_path: str | Path, out: Path) -> Path:
    """A Parquet of ``(profile_id, pidx)`` numbering every profile of ``profiles_path`` (merged profiles), for the
    engine to write numbered pairs (``EvaluationRequest.profile_numbers``): the profiles file of those merged
    profiles when an evaluation has written it (no work), else ``out``, written after numbering the profiles the
    index does not hold yet (under its lock, as the diff does)."""
    files = resolved_files(profiles_path)
    shared = Path(memberships_root) / IDENTITIES_DIR / f"{PROFILES_PREFIX}{_profiles_key({0: files})}.parquet"
    if shared.exists():
        return shared
    out.parent.mkdir(parents=True, exist_ok=True)
    con = connect()
    try:

        def run(sql: str, params: dict | None = None):
            return con.execute(sql, params or {}).fetchall()

        ids = f"SELECT profile_id::VARCHAR AS profile_id FROM read_parquet({sql_list(files)})"
        number_profiles(run, con, Path(memberships_root), ids)
        run(
            f"COPY (SELECT x.* FROM idx x SEMI JOIN ({ids}) p USING (profile_id)) TO {sql_str(out)} (FORMAT parquet)"
        )
    finally:
        con.close()
    return out


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
    # Where the diff's time went (ms): "identities" (the members' identityMaps normalised from the merged
    # profiles, and the per-namespace counts), "membershipDiff" (the rest: the join with the previous members,
    # writing the files, which carry each member's identityMap, and the counts).
    timings_ms: dict[str, int] = field(default_factory=dict)
    # Files of the whole evaluation (its identities): staged path -> path under the memberships root.
    shared: dict[Path, Path] = field(default_factory=dict)
    # Files shared with later evaluations (a profiles file): published unless already there, never discarded.
    kept: dict[Path, Path] = field(default_factory=dict)


def membership_path(memberships_root: Path, audience_id: str, evaluation_ms: int) -> Path:
    """``memberships/<audienceId>/<evaluationMs>.parquet`` (the audience id made safe as a folder name)."""
    return Path(memberships_root) / safe_name(audience_id) / f"{int(evaluation_ms)}.parquet"


def safe_name(audience_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in audience_id)


def resolved_files(path: str | Path) -> list[str]:
    """The files a path or glob names now, resolved and sorted."""
    p = str(path)
    names = glob.glob(p) if any(c in p for c in "*?[") else [p]
    return sorted(os.path.realpath(n) for n in names)


def files_key(files_of: Mapping[int, list[str]], kind: str) -> str:
    """A name for the ``kind`` of file made from these store files (each group's files: path, size, modification
    time). A store version's files never change (a new version is a new folder), so the same key means the same
    files. Raises OSError when a file is gone."""
    h = hashlib.sha256(kind.encode())
    for src, files in sorted(files_of.items()):
        for f in files:
            st = os.stat(f)
            h.update(f"\n{src}\t{f}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _profiles_key(files_of: Mapping[int, list[str]]) -> str:
    """What a profiles file is of: each src's merged profiles files."""
    return files_key(files_of, PROFILES_FORMAT)


def _has_column(con: duckdb.DuckDBPyConnection, path: Path, name: str) -> bool:
    cols = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_str(path)})").fetchall()
    return any(c[0] == name for c in cols)


def _has_identity_map(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    return _has_column(con, path, "identityMap")


def diff_memberships(
    *,
    qualified_path: Path | list[Path] | None,
    audience_ids: list[str],
    previous: Mapping[str, Path | None],
    evaluation_time: dt.datetime,
    profiles_paths: Mapping[str, str | Path | None],
    staging_root: Path,
    retention_days: int = RETENTION_DAYS,
    should_cancel: Callable[[], bool] | None = None,
    memory_limit: str = "4GB",
) -> DiffResult:
    """Diff every audience of one evaluation against its previous membership; write the files under staging.

    ``qualified_path``: Parquet file(s) of ``(audience_id, profile_id)`` pairs (the engine's output; None or a
    missing file = nobody qualifies).
    ``previous``: audience id -> its previous membership file (absent/None: first evaluation).
    ``profiles_paths``: audience id -> the merged ``profiles.parquet`` its members' identityMap comes from.
    """
    cancelled = should_cancel or (lambda: False)
    t = naive_utc(evaluation_time)
    cutoff = t - dt.timedelta(days=retention_days)
    staging = Path(staging_root) / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        con = connect(staging / "spill", memory_limit)
        try:
            return _diff(
                con, qualified_path, audience_ids, previous, t, cutoff, profiles_paths, staging, cancelled
            )
        finally:
            con.close()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _values_table(con, name: str, **columns: tuple[str, list]) -> None:
    """A temp table of the given columns (name -> (SQL type, values)) built in one statement (row-by-row inserts
    are slow in DuckDB)."""
    selects = ", ".join(f"unnest(${c})::{sql_type} AS {c}" for c, (sql_type, _) in columns.items())
    con.execute(f"CREATE TEMP TABLE {name} AS SELECT {selects}", {c: v for c, (_, v) in columns.items()})


def _diff(
    con, qualified_path, audience_ids, previous, t, cutoff, profiles_paths, staging, cancelled
) -> DiffResult:
    """The pidx format (module docstring): the qualified pairs numbered through the profile index, FULL JOINed
    with the previous members on integers into one table, from which the files (one per audience, sorted by
    pidx), the evaluation's identities and the counts are written/taken: nothing is read back."""

    def run(sql: str, params: dict | None = None):
        if cancelled():
            raise MembershipCancelled()
        try:
            return run_interruptible(
                lambda: con.execute(sql, params or {}).fetchall(), con.interrupt, cancelled
            )
        except EvaluationCancelled:
            raise MembershipCancelled() from None

    root = staging.parent
    # The merged profiles each audience's members take their identityMap from, numbered: src. Each is read as the
    # list of its files, resolved once: what is read is what the profiles file's key names.
    paths: dict[str, int] = {}
    srcs = []
    for audience_id in audience_ids:
        p = profiles_paths.get(audience_id)
        ok = p is not None and parquet_exists(p)
        srcs.append(paths.setdefault(str(p), len(paths)) if ok else 255)
    if len(paths) > 255:
        raise ValueError("more than 255 merged profile files in one evaluation")
    _values_table(
        con,
        "audiences",
        aidx=("INTEGER", list(range(len(audience_ids)))),
        audience_id=("VARCHAR", list(audience_ids)),
        src=("UTINYINT", srcs),
    )
    files_of = {i: resolved_files(path) for path, i in paths.items()}
    # The profiles file of these merged profiles (all their profiles, numbered, with their identities): written
    # by the first evaluation that reads them, reused by every later one (module comment above).
    profiles_file = (
        root / IDENTITIES_DIR / f"{PROFILES_PREFIX}{_profiles_key(files_of)}.parquet" if paths else None
    )
    reuse = profiles_file is not None and profiles_file.exists()
    started = time.perf_counter()
    identities_s = 0.0
    if reuse:
        run(
            f"CREATE TEMP TABLE profiles AS SELECT src, pidx, profile_id, nsid FROM read_parquet({sql_str(profiles_file)})"
        )
        namespaces = dict(
            run(f"SELECT nsid, any_value(ns) FROM read_parquet({sql_str(profiles_file)}) GROUP BY nsid")
        )
    else:
        selects = [
            f"SELECT {i}::UTINYINT AS src, profile_id::VARCHAR AS profile_id, "
            f"{_identity_map_of('identityMap') if _has_identity_map(con, files[0]) else 'NULL'}"
            f"::{IDENTITY_MAP_TYPE} AS identityMap FROM read_parquet({sql_list(files)})"
            for i, files in files_of.items()
        ] or [
            f"SELECT NULL::UTINYINT AS src, NULL::VARCHAR AS profile_id, NULL::{IDENTITY_MAP_TYPE} AS identityMap WHERE false"
        ]
        # The distinct lists of namespaces numbered by a join (cheaper than a window over a million lists).
        run(
            f"""CREATE TEMP TABLE profiles0 AS
                SELECT *, list_sort(list_distinct(list_transform(identityMap, lambda e: e.key))) AS ns
                FROM ({" UNION ALL ".join(selects)})"""
        )
        run(
            """CREATE TEMP TABLE nslists AS SELECT ns, (row_number() OVER (ORDER BY ns))::UINTEGER AS nsid
               FROM (SELECT DISTINCT ns FROM profiles0)"""
        )
        namespaces = dict(run("SELECT nsid, ns FROM nslists"))
    identities_s += time.perf_counter() - started

    # The previous files, by format.
    new_prev: list[tuple[int, str, str]] = []  # (aidx, file, its identities file)
    old_prev: list[tuple[int, str]] = []
    for aidx, a in enumerate(audience_ids):
        p = previous.get(a)
        if p is None or not Path(p).exists():
            continue
        f = inspect_file(con, Path(p))
        if f.pidx_format:
            new_prev.append((aidx, str(Path(p).resolve()), str(Path(f.identities).resolve())))
        else:
            old_prev.append((aidx, str(Path(p).resolve())))
    old_scan = None
    if old_prev:
        _values_table(
            con,
            "prev_old",
            aidx=("INTEGER", [i for i, _ in old_prev]),
            filename=("VARCHAR", [f for _, f in old_prev]),
        )
        files = sql_list(f for _, f in old_prev)
        old_scan = f"read_parquet({files}, filename = true, union_by_name = true)"
        old_columns = {c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {old_scan}").fetchall()}
    if new_prev:
        _values_table(
            con,
            "prev_new",
            aidx=("INTEGER", [i for i, _, _ in new_prev]),
            filename=("VARCHAR", [f for _, f, _ in new_prev]),
            identities=("VARCHAR", [i for _, _, i in new_prev]),
        )

    # Number every profile this evaluation can write (the merged profiles, unless their profiles file is reused;
    # members of files written before): the index is then the temp table idx.
    ids = [] if reuse else ["SELECT profile_id FROM profiles0"]
    if old_scan:
        ids.append(f"SELECT profile_id::VARCHAR AS profile_id FROM {old_scan}")
    if ids:
        number_profiles(run, con, root, " UNION ALL ".join(ids))
    if not reuse:
        started = time.perf_counter()
        run(
            """CREATE TEMP TABLE profiles AS SELECT p.src, x.pidx, p.profile_id, p.identityMap, n.nsid, p.ns
               FROM profiles0 p JOIN idx x USING (profile_id) JOIN nslists n ON n.ns IS NOT DISTINCT FROM p.ns"""
        )
        run("DROP TABLE profiles0")
        identities_s += time.perf_counter() - started

    # The qualified pairs (each pair once: the engine writes every pair once), numbered, with their namespaces.
    sources = (
        [qualified_path] if isinstance(qualified_path, str | os.PathLike) else list(qualified_path or [])
    )
    sources = [p for p in sources if Path(p).exists()]
    expected_pairs = 0
    if sources:
        # The engine's pairs name profiles by id, or by number (EvaluationRequest.profile_numbers): joined to the
        # merged profiles on that (by number: integers, no string read).
        numbered = [p for p in sources if _has_column(con, Path(p), "pidx")]
        by_id = [p for p in sources if p not in numbered]
        selects = [
            f"SELECT {_KEY.format(a='a.aidx', p='pr.pidx')} AS k, pr.nsid FROM read_parquet({sql_list(group)}) q "
            f"JOIN audiences a ON a.audience_id = q.audience_id JOIN profiles pr ON pr.src = a.src AND {on}"
            for group, on in ((numbered, "pr.pidx = q.pidx"), (by_id, "pr.profile_id = q.profile_id"))
            if group
        ]
        qualified = " UNION ALL ".join(selects)
        expected_pairs = run(
            f"SELECT count(*) FROM read_parquet({sql_list(sources)}, union_by_name = true) q "
            "SEMI JOIN audiences a ON a.audience_id = q.audience_id"
        )[0][0]
    else:
        qualified = "SELECT NULL::BIGINT AS k, NULL::UINTEGER AS nsid WHERE false"

    prevs = []
    if new_prev:
        files = sql_list(f for _, f, _ in new_prev)
        prevs.append(
            f"SELECT {_KEY.format(a='f.aidx', p='m.pidx')} AS k, m.src AS psrc, m.status, m.lastQualificationTime AS lqt "
            f"FROM read_parquet({files}, filename = true) m JOIN prev_new f ON f.filename = m.filename"
        )
    if old_scan:
        prevs.append(
            f"SELECT {_KEY.format(a='f.aidx', p='x.pidx')} AS k, NULL::UTINYINT AS psrc, "
            f"{_STATUS_OF_NAME.format(col='m.status')}::UTINYINT "
            f"AS status, m.lastQualificationTime AS lqt FROM {old_scan} m JOIN prev_old f ON f.filename = m.filename "
            "JOIN idx x ON x.profile_id = m.profile_id::VARCHAR"
        )
    # qualifies now: realized (0), or existing (1, keeping its time) if it was a current member; was a current
    # member and does not qualify: exited (2) now; exited before: kept (with its exit time) until the retention.
    if prevs:
        body = f"""SELECT (coalesce(q.k, p.k) >> 32)::INTEGER AS aidx, (coalesce(q.k, p.k) & 4294967295)::UINTEGER AS pidx,
                   (CASE WHEN q.k IS NULL THEN 2 WHEN p.status <= 1 THEN 1 ELSE 0 END)::UTINYINT AS status,
                   CASE WHEN q.k IS NULL AND p.status = 2 THEN p.lqt
                        WHEN q.k IS NOT NULL AND p.status <= 1 THEN p.lqt
                        ELSE $t END AS lqt,
                   q.nsid, CASE WHEN q.k IS NULL THEN p.psrc END AS psrc
            FROM ({qualified}) q FULL JOIN ({" UNION ALL ".join(prevs)}) p ON p.k = q.k
            WHERE q.k IS NOT NULL OR p.status <= 1 OR (p.status = 2 AND p.lqt >= $cutoff)"""
        params = {"t": t, "cutoff": cutoff}
    else:
        body = (
            "SELECT (k >> 32)::INTEGER AS aidx, (k & 4294967295)::UINTEGER AS pidx, 0::UTINYINT AS status, $t AS lqt, "
            f"nsid, NULL::UTINYINT AS psrc FROM ({qualified})"
        )
        params = {"t": t}
    run(f"CREATE TEMP TABLE result AS {body}", params)

    # Counts, from the same table: by status, and by namespace (per list of namespaces, then per namespace).
    counts = {a: AudienceCounts() for a in audience_ids}
    for aidx, status, n, exited_now in run(
        "SELECT aidx, status, count(*), count(*) FILTER (WHERE status = 2 AND lqt = $t) FROM result GROUP BY ALL",
        {"t": t},
    ):
        c = counts[audience_ids[int(aidx)]]
        setattr(c, STATUSES[int(status)], n)
        if status == 2:
            c.exited_now = exited_now
    for c in counts.values():
        c.members = c.realized + c.existing
    if sources and sum(c.members for c in counts.values()) != expected_pairs:
        raise RuntimeError(
            f"the qualified pairs name profiles missing from the merged profiles ({expected_pairs} pairs, "
            f"{sum(c.members for c in counts.values())} numbered)"
        )
    identities_started = time.perf_counter()
    for aidx, nsid, n in run("SELECT aidx, nsid, count(*) FROM result WHERE status <= 1 GROUP BY ALL"):
        by_namespace = counts[audience_ids[aidx]].by_namespace
        for namespace in namespaces.get(nsid) or []:
            by_namespace[namespace] = by_namespace.get(namespace, 0) + n

    # The evaluation's identities: its merged profiles' profiles file (every profile in them, with the identityMap
    # they have there), written once per merged profiles. An exit whose profile is no longer in them ("gone":
    # merged away or deleted) keeps the identities its previous file recorded; then the evaluation writes its own
    # identities file: the profiles' rows and the gone exits'.
    run(
        """CREATE TEMP TABLE exits AS SELECT r.aidx, a.src, r.pidx, r.psrc FROM result r JOIN audiences a USING (aidx)
           WHERE r.status = 2"""
    )
    run(
        "CREATE TEMP TABLE gone AS SELECT * FROM exits e ANTI JOIN profiles p ON p.src = e.src AND p.pidx = e.pidx"
    )
    gone = run("SELECT count(*) FROM gone")[0][0]
    shared: dict[Path, Path] = {}
    kept: dict[Path, Path] = {}
    if profiles_file is not None and gone == 0:
        token = profiles_file.name
        if not reuse:
            staged = staging / profiles_file.name
            run(
                f"""COPY (SELECT src, pidx, profile_id, identityMap, nsid, ns FROM profiles ORDER BY src, pidx)
                    TO {sql_str(staged)} (FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION V2)"""
            )
            kept[staged] = Path(IDENTITIES_DIR) / profiles_file.name
    else:
        token = f"{int(t.replace(tzinfo=dt.UTC).timestamp() * 1000)}-{uuid.uuid4().hex[:12]}.parquet"
        identities = staging / "identities.parquet"
        gone_sources = []
        if new_prev:
            id_files = sorted({i for _, _, i in new_prev})
            gone_sources.append(
                f"SELECT g.aidx, g.pidx, i.profile_id, i.identityMap FROM gone g JOIN prev_new f ON f.aidx = g.aidx "
                f"JOIN read_parquet({sql_list(id_files)}, filename = true) i "
                "ON i.filename = f.identities AND i.src = g.psrc AND i.pidx = g.pidx"
            )
        if old_scan:
            im = f"m.identityMap::{IDENTITY_MAP_TYPE}" if "identityMap" in old_columns else "NULL"
            gone_sources.append(
                f"SELECT g.aidx, g.pidx, x.profile_id, {im} AS identityMap FROM gone g JOIN prev_old f ON f.aidx = g.aidx "
                f"JOIN idx x ON x.pidx = g.pidx JOIN {old_scan} m ON m.filename = f.filename "
                "AND m.profile_id::VARCHAR = x.profile_id"
            )
        gone_identities = (
            " UNION ALL ".join(gone_sources)
            if gone_sources
            else f"SELECT NULL::INTEGER AS aidx, NULL::UINTEGER AS pidx, NULL::VARCHAR AS profile_id, "
            f"NULL::{IDENTITY_MAP_TYPE} AS identityMap WHERE false"
        )
        rows = f"read_parquet({sql_str(profiles_file)})" if reuse else "profiles"
        run(
            f"""COPY (
                SELECT src, pidx, profile_id, identityMap FROM {rows}
                UNION ALL
                SELECT g.src, g.pidx, any_value(gi.profile_id), any_value(gi.identityMap)
                FROM gone g LEFT JOIN ({gone_identities}) gi ON gi.aidx = g.aidx AND gi.pidx = g.pidx
                GROUP BY g.src, g.pidx
                ORDER BY 1, 2
            ) TO {sql_str(identities)} (FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION V2)"""
        )
        shared[identities] = Path(IDENTITIES_DIR) / token
    identities_s += time.perf_counter() - identities_started

    # The membership files: one per audience, sorted by pidx (a point lookup reads one row group), ZSTD.
    parts = staging / "parts"
    con.execute("SET preserve_insertion_order = true")
    run(
        f"""COPY (SELECT r.aidx, r.pidx, a.src, r.status, r.lqt AS lastQualificationTime
                  FROM result r JOIN audiences a USING (aidx) ORDER BY r.aidx, r.pidx)
            TO {sql_str(parts)} (FORMAT parquet, PARTITION_BY (aidx), COMPRESSION zstd, PARQUET_VERSION V2,
                                 KV_METADATA {{identities: {sql_str(token)}}})"""
    )
    written: dict[int, list[Path]] = {}
    if parts.exists():
        for entry in os.scandir(parts):
            if entry.is_dir() and entry.name.startswith("aidx="):
                written[int(entry.name[5:])] = sorted(Path(entry.path).glob("*.parquet"))
    files: dict[str, Path] = {}
    for aidx, audience_id in enumerate(audience_ids):
        found = written.get(aidx) or []
        if len(found) == 1:
            files[audience_id] = found[0]  # published straight from here (one rename per file)
            continue
        target = staging / f"{aidx}.parquet"
        rows = (
            f"SELECT * FROM read_parquet({sql_str(parts / f'aidx={aidx}' / '*.parquet')}, hive_partitioning = false) "
            "ORDER BY pidx"
            if found
            else "SELECT NULL::UINTEGER AS pidx, NULL::UTINYINT AS src, NULL::UTINYINT AS status, "
            "NULL::TIMESTAMP AS lastQualificationTime WHERE false"
        )
        con.execute(
            f"COPY ({rows}) TO {sql_str(target)} (FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION V2, "
            f"KV_METADATA {{identities: {sql_str(token)}}})"
        )
        files[audience_id] = target
    total_s = time.perf_counter() - started
    timings = {
        "identities": round(identities_s * 1000),
        "membershipDiff": round((total_s - identities_s) * 1000),
    }
    return DiffResult(
        staging=staging,
        files=files,
        counts=counts,
        timings_ms=timings,
        shared=shared,
        kept=kept,
    )


def publish_files(diff: DiffResult, memberships_root: Path, evaluation_ms: int) -> dict[str, Path]:
    """Rename every staged file into ``memberships/<audienceId>/<evaluationMs>.parquet``; return the final paths.

    When that name is taken (the same evaluation time again), the file gets a unique suffix instead, so the
    published file stays intact until the catalog row is replaced.

    The evaluation's shared files (its identities, unique names) are moved first. Each rename is atomic; the
    evaluation becomes visible only when the caller records the catalog rows. On error, files already moved are
    removed again (no catalog row points at them yet).
    """
    moved: dict[str, Path] = {}
    shared: list[Path] = []
    try:
        for staged, relative in diff.kept.items():
            final = Path(memberships_root) / relative
            final.parent.mkdir(parents=True, exist_ok=True)
            if not final.exists():  # written by an evaluation meanwhile: the same rows
                os.replace(staged, final)
        for staged, relative in diff.shared.items():
            final = Path(memberships_root) / relative
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            shared.append(final)
        for audience_id, staged in diff.files.items():
            final = membership_path(memberships_root, audience_id, evaluation_ms)
            if final.exists():  # a re-run at the same time: never overwrite the published file before its row
                final = final.with_name(f"{int(evaluation_ms)}-{uuid.uuid4().hex[:8]}.parquet")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            moved[audience_id] = final
    except BaseException:
        discard([*moved.values(), *shared])
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


def write_current_members(
    membership_file: Path | None, out_path: Path, at: dt.datetime | None = None
) -> Path:
    """A Parquet of ``profile_id`` of the current members (realized/existing) of a membership file (either format).

    This is what the engine reads for an ``inSegment`` reference to an audience not evaluated in the same run.
    ``at``: members whose ``validUntil`` (external audiences' TTL) has passed by then are not current.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    con = connect()
    try:
        if membership_file is None or not Path(membership_file).exists():
            con.execute(
                f"COPY (SELECT NULL::VARCHAR AS profile_id WHERE false) TO {sql_str(out_path)} (FORMAT parquet)"
            )
        else:
            f = inspect_file(con, Path(membership_file))
            if f.pidx_format:
                rows = (
                    f"SELECT i.profile_id FROM read_parquet({sql_str(f.path)}) m "
                    f"JOIN read_parquet({sql_str(f.identities)}) i ON i.src = m.src AND i.pidx = m.pidx "
                    "WHERE m.status <= 1"
                )
            else:
                valid = ""
                if at is not None and "validUntil" in f.columns:
                    valid = (
                        f" AND (validUntil IS NULL OR validUntil > TIMESTAMP '{naive_utc(at).isoformat()}')"
                    )
                rows = (
                    f"SELECT profile_id FROM read_parquet({sql_str(f.path)}) "
                    f"WHERE status IN ('realized', 'existing'){valid}"
                )
            con.execute(f"COPY ({rows}) TO {sql_str(out_path)} (FORMAT parquet)")
    finally:
        con.close()
    return out_path


def read_members(membership_file: Path, start: int = 0, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
    """One page of a membership file (either format), ordered by profile id: ``(total, rows)``; times as naive
    UTC datetimes. External audiences' files also carry validUntil and payload (engine/external_ingest.py)."""
    con = connect()
    try:
        total = con.execute(f"SELECT count(*) FROM read_parquet({sql_str(membership_file)})").fetchone()[0]
        f = inspect_file(con, Path(membership_file))
        source = members_sql(con, f.path)
        if f.profiles is not None:  # the page first, then only its members' identity maps from the pin
            source = f"SELECT * EXCLUDE (was_current) FROM read_parquet({sql_str(f.path)})"
        cur = con.execute(
            f"SELECT * FROM ({source}) ORDER BY profile_id LIMIT $limit OFFSET $start",
            {"limit": int(limit), "start": int(start)},
        )
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        wanted = [r["profile_id"] for r in rows if r["status"] != "exited"]
        if f.profiles is not None and wanted:
            maps = dict(
                con.execute(
                    f"SELECT profile_id, identityMap FROM ({pinned_profiles_sql(con, f.profiles)}) "
                    f"WHERE profile_id IN ({', '.join(sql_str(p) for p in wanted)})"
                ).fetchall()
            )
            for r in rows:
                if r["status"] != "exited":
                    r["identityMap"] = maps.get(r["profile_id"])
        return int(total), rows
    finally:
        con.close()


def read_profile_status(membership_file: Path, profile_id: str) -> dict[str, Any] | None:
    """The row of one profile in a membership file (either format), or None."""
    con = connect()
    try:
        row = profile_status(con, Path(membership_file), profile_id)
    finally:
        con.close()
    return None if row is None else {"status": row[0], "lastQualificationTime": row[1]}


def profile_status(con: duckdb.DuckDBPyConnection, path: Path, profile_id: str) -> tuple | None:
    """``(status, lastQualificationTime)`` of one profile in a membership file, or None."""
    sql = profile_rows_sql(con, {"": Path(path)}, profile_id).get("")
    return None if sql is None else con.execute(sql + " LIMIT 1").fetchone()


def profile_rows_sql(
    con: duckdb.DuckDBPyConnection, files: Mapping[str, Path], profile_id: str
) -> dict[str, str]:
    """For each of ``files`` (key -> membership file, either format) a SELECT of ``(status,
    lastQualificationTime)`` of one profile's row; a key is left out when the profile is in none of its
    evaluation's identities. In the pidx format the profile's numbers are looked up once per identities file
    (shared by an evaluation's audiences), then the file (sorted by pidx) is filtered on them."""
    numbers: dict[Path, list[tuple[int, int]]] = {}
    out: dict[str, str] = {}
    for key, path in files.items():
        f = inspect_file(con, Path(path))
        if not f.pidx_format:
            out[key] = (
                f"SELECT status, lastQualificationTime FROM read_parquet({sql_str(f.path)}) "
                f"WHERE profile_id = {sql_str(profile_id)}"
            )
            continue
        if f.identities not in numbers:
            numbers[f.identities] = con.execute(
                f"SELECT src, pidx FROM read_parquet({sql_str(f.identities)}) WHERE profile_id = $pid",
                {"pid": profile_id},
            ).fetchall()
        found = numbers[f.identities]
        if found:
            match = " OR ".join(f"(src = {int(s)} AND pidx = {int(n)})" for s, n in found)
            out[key] = (
                f"SELECT {_STATUS_NAME.format(col='status')} AS status, lastQualificationTime "
                f"FROM read_parquet({sql_str(f.path)}) WHERE {match}"
            )
    return out
