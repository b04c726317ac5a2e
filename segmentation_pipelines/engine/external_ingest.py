"""External-audience ingestion in DuckDB: source files -> validated rows -> members of the audience.

Two stages, the ones the contract names:

* ``DATASET_INGEST`` (:func:`ingest_rows`): reads the CSV (header row) or Parquet files, types every declared field
  (``TRY_CAST``), rejects each bad row with its reason (a value of the wrong type, no identity, only identities
  in a namespace the sandbox does not know) and writes the good rows as the audience's data
  snapshot: ``row_hash`` (the row's content), ``ids`` (``[{ns, id}]``), ``payload`` (the enrichment fields, typed),
  ``ingested_ms``. A differential run keeps the ingestion time of rows that did not change.
* ``PROFILE_STORE_INGEST`` (:func:`build_membership`): resolves each row's identities to merged profiles through
  the identity graph and writes a membership file in the format of :mod:`engine.memberships` (``profile_id``,
  ``status``, ``lastQualificationTime``, ``identityMap``) plus ``validUntil`` and ``payload``. Current members are
  ``realized`` (qualified at their row's ingestion time, valid for the TTL); members whose row left the data, or
  whose TTL passed, are ``exited``; exits are kept for the retention (30 days). Rows whose identities no profile
  has yet are *pending*: they stay in the data snapshot and become members when a later pass resolves them.

Everything is written under a staging folder; the caller publishes (renames, then catalog rows). No catalog, no
Dagster here.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from segmentation_pipelines.duck import connect, parquet_exists, sql_list, sql_str
from segmentation_pipelines.engine.memberships import (
    IDENTITY_MAP_TYPE,
    RETENTION_DAYS,
    _identity_map_of,
    files_key,
    inspect_file,
    pinned_profiles_sql,
    resolved_files,
)

DAY_MS = 86_400_000
#: The contract's field types -> DuckDB types.
FIELD_TYPES = {
    "string": "VARCHAR",
    "number": "DOUBLE",
    "long": "BIGINT",
    "integer": "INTEGER",
    "date": "DATE",
    "datetime": "TIMESTAMPTZ",
    "boolean": "BOOLEAN",
}
WRONG_TYPE, MISSING_IDENTITY, UNKNOWN_NAMESPACE = "WRONG_TYPE", "MISSING_IDENTITY", "UNKNOWN_NAMESPACE"
SAMPLE_REJECTS = 20
#: Under the memberships root: merged profiles pinned by hard links, one folder per store version that external
#: audience memberships reference (current members' identity maps are read from there, not copied per member).
PINS_DIR = ".profiles"


class IngestError(Exception):
    """The run cannot ingest its source (a missing column, no file, only bad rows); says what and where."""


@dataclass
class RowsResult:
    data_path: Path
    rows_read: int
    accepted: int
    rejected: int
    rejects: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    changed: int = 0  # rows new or changed since the previous data (all rows on a full run)
    removed: int = 0  # rows of the previous data no longer there


@dataclass
class MembershipResult:
    path: Path
    counts: dict[str, Any]
    pending_rows: int
    next_expiry_ms: int | None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pin_profiles(profiles_path: str | Path, memberships_root: Path) -> str | None:
    """Pin the merged profiles' files (a file or a glob) under ``<memberships_root>/.profiles/<key>/`` by hard links
    and return that folder relative to the root; None when they cannot be linked (another file system: the caller
    then writes each member's identity map). ``key`` names the files (:func:`memberships.files_key`), so every run
    on the same store version shares one folder, and hard links cost no copy: disk is held only for parts a
    later store version replaced. The folder appears complete or not at all (written under a temporary name)."""
    files = resolved_files(profiles_path)
    if not files:
        return None
    try:
        key = files_key({0: files}, PINS_DIR)
    except OSError:  # a file gone meanwhile
        return None
    relative = f"{PINS_DIR}/{key}"
    target = Path(memberships_root) / relative
    if target.is_dir():
        return relative
    tmp = target.parent / f".{key}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        for i, f in enumerate(files):
            os.link(f, tmp / f"{i:05d}.parquet")
        try:
            os.rename(tmp, target)
        except OSError:  # pinned meanwhile by another run
            if not target.is_dir():
                raise
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    shutil.rmtree(tmp, ignore_errors=True)
    return relative


def _scan(files: list[Path], fmt: str) -> str:
    if fmt == "csv":
        return (
            f"read_csv({sql_list(files)}, header = true, all_varchar = true, union_by_name = true, "
            "filename = true, null_padding = true)"
        )
    return f"read_parquet({sql_list(files)}, union_by_name = true, filename = true)"


class Ingestion:
    """Both stages of a run in one DuckDB connection (a context manager; see the module docstring).

    Stage 1 (:meth:`ingest_rows`) reads, types and validates the source once into an in-memory table and writes
    the data snapshot from it; stage 2 (:meth:`build_membership`) on that snapshot resolves identities and writes
    the membership from the same table instead of reading back the file just written. Stage 2 on any other
    snapshot (TTL extension, maintenance) reads the file."""

    def __init__(self, work_dir: Path, memory_limit: str = "2GB"):
        self.con = connect(Path(work_dir) / "spill", memory_limit)
        self.con.execute("SET TimeZone = 'UTC'")
        # The snapshot file whose rows the relation ``rows`` holds (device and inode: the caller renames the file
        # into place between the stages), and the identity columns of ``rows``: [(column, namespace)].
        self._rows_file: tuple[int, int] | None = None
        self._rows_identities: list[tuple[str, str]] = []
        # The enrichment fields of ``rows``' payload, and its ingestion time when every row has the same one (a
        # first or full run): stage 2 then aggregates plain columns instead of the payload struct and a 128-bit key.
        self._rows_payload: list[str] = []
        self._rows_ms: int | None = None

    def __enter__(self) -> Ingestion:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def holds(self, data_path: Path) -> bool:
        """Whether the rows of the snapshot file ``data_path`` are the ones stage 1 keeps in memory."""
        try:
            st = Path(data_path).stat()
        except OSError:
            return False
        return self._rows_file == (st.st_dev, st.st_ino)

    def ingest_rows(
        self,
        *,
        files: list[Path],
        fmt: str,
        fields: list[dict[str, Any]],
        namespaces: dict[str, str | None],
        previous_data: Path | None,
        ingestion_ms: int,
        differential: bool,
        out_path: Path,
    ) -> RowsResult:
        """Stage 1 (see the module docstring). ``namespaces``: each identity field's namespace as the sandbox
        spells it (None: unknown to the sandbox). Raises :class:`IngestError` when no row can land."""
        if not files:
            raise IngestError("the source has no file to ingest")
        con = self.con
        self._rows_file = None
        scan = _scan(files, fmt)
        try:
            columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
        except duckdb.Error as exc:
            raise IngestError(f"cannot read the {fmt.upper()} source ({files[0].name}...): {exc}") from None
        missing = [f["name"] for f in fields if f["name"] not in columns]
        if missing:
            shown = ", ".join(c for c in columns if c != "filename")
            raise IngestError(
                f"field(s) {', '.join(repr(m) for m in missing)} are not columns of the source "
                f"(its header has: {shown})"
            )
        ident_fields = [f for f in fields if f.get("identityNs")]
        payload_fields = [f for f in fields if not f.get("identityNs")]
        values = []
        typed = []  # each enrichment value cast once: the type check and the payload both use it
        errors = []
        for i, f in enumerate(fields):
            col = _ident(f["name"])
            values.append(f"nullif(trim({col}::VARCHAR), '') AS v{i}")
            if not f.get("identityNs"):
                typed.append(f"TRY_CAST(v{i} AS {FIELD_TYPES[f['type']]}) AS t{i}")
                errors.append(
                    f"CASE WHEN v{i} IS NOT NULL AND t{i} IS NULL THEN "
                    f"'{WRONG_TYPE}|field ''{f['name']}'': ''' || left(v{i}, 80) || ''' is not a {f['type']}' END"
                )
        index = {f["name"]: i for i, f in enumerate(fields)}
        known = [f for f in ident_fields if namespaces.get(f["name"])]
        unknown = [f for f in ident_fields if not namespaces.get(f["name"])]
        has_known = " OR ".join(f"v{index[f['name']]} IS NOT NULL" for f in known) or "false"
        has_unknown = " OR ".join(f"v{index[f['name']]} IS NOT NULL" for f in unknown) or "false"
        unknown_names = ", ".join(repr(f["identityNs"]) for f in unknown)
        identity_error = (
            f"CASE WHEN NOT ({has_known}) AND ({has_unknown}) THEN "
            f"'{UNKNOWN_NAMESPACE}|identity namespace(s) {unknown_names.replace(chr(39), chr(39) * 2)} "
            "are not known in this sandbox' "
            f"WHEN NOT ({has_known}) THEN '{MISSING_IDENTITY}|no identity value (identity fields: "
            f"{', '.join(f['name'] for f in ident_fields).replace(chr(39), chr(39) * 2)})' END"
        )
        ids = ", ".join(
            f"CASE WHEN v{index[f['name']]} IS NOT NULL THEN {{'ns': {sql_str(namespaces[f['name']])}, "
            f"'id': v{index[f['name']]}}} END"
            for f in known
        )
        # The row's identities as [{ns, id}]; one identity field: the same list built directly (no lambda), so
        # row hashes match those of snapshots written before.
        ids_list = f"list_filter([{ids}], lambda x: x IS NOT NULL)"
        if len(known) == 1:
            v = f"v{index[known[0]['name']]}"
            ids_list = (
                f"CASE WHEN {v} IS NOT NULL THEN [{{'ns': {sql_str(namespaces[known[0]['name']])}, 'id': {v}}}] "
                "ELSE [] END"
            )
        payload = (
            "{" + ", ".join(f"{sql_str(f['name'])}: t{index[f['name']]}" for f in payload_fields) + "}"
            if payload_fields
            else "NULL::STRUCT(none BOOLEAN)"
        )
        value_list = ", ".join(f"v{i}" for i in range(len(fields)))
        identity_values = "".join(f", v{index[f['name']]}" for f in known)
        # One pass over the source: each row's reject reason (NULL: a good row; a rejected row keeps its file and
        # values for the samples) and what the snapshot keeps of a good row, with its identity values as columns.
        # row_hash: the row's content (64-bit hash). Identical rows are not collapsed here (a GROUP BY over every
        # row costs more than it saves): they name the same profiles, which the membership stage groups anyway.
        # No row numbers: a window over the whole scan would serialize it; a reject names its file and values.
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE src AS
                SELECT *, hash(ids, payload) AS row_hash FROM (
                  SELECT err, CASE WHEN err IS NOT NULL THEN _file END AS _file,
                         CASE WHEN err IS NOT NULL THEN [{value_list}] END AS raw{identity_values},
                         {ids_list} AS ids, {payload} AS payload
                  FROM (SELECT *, coalesce({", ".join([*errors, identity_error])}) AS err
                        FROM (SELECT *{"".join(", " + t for t in typed)}
                              FROM (SELECT filename AS _file, {", ".join(values)} FROM {scan}))))"""
        )
        rows_read = 0
        rejects = {}
        for reason, n in con.execute(
            "SELECT split_part(err, '|', 1), count(*) FROM src GROUP BY 1 ORDER BY 1 NULLS FIRST"
        ).fetchall():
            rows_read += int(n)
            if reason:
                rejects[reason] = int(n)
        names = [f["name"] for f in fields]
        samples = [
            {
                "file": Path(fname).name,
                "reason": reason,
                "message": message,
                "values": dict(zip(names, vals, strict=True)),
            }
            for fname, reason, message, vals in con.execute(
                f"""SELECT _file, split_part(err, '|', 1), split_part(err, '|', 2), raw FROM src
                    WHERE err IS NOT NULL LIMIT {SAMPLE_REJECTS}"""
            ).fetchall()
        ]
        rejected = sum(rejects.values())
        if rows_read == 0:
            raise IngestError("the source has no rows (only a header, or empty files)")
        if rejected == rows_read:
            first = samples[0] if samples else {}
            raise IngestError(
                f"all {rows_read} rows were rejected ({', '.join(f'{k}: {v}' for k, v in rejects.items())}); "
                f"e.g. in {first.get('file')}: {first.get('message')} (row {first.get('values')})"
            )
        accepted = rows_read - rejected
        prev = previous_data is not None and Path(previous_data).exists()
        # ``rows``: the snapshot's rows, and the identity values as columns (stage 2 joins them to the graph).
        identity_columns = "".join(f", s.v{index[f['name']]}" for f in known)
        t = int(ingestion_ms)
        con.execute("DROP VIEW IF EXISTS rows")
        con.execute("DROP TABLE IF EXISTS rows")
        if prev:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE prev AS SELECT row_hash, min(ingested_ms) AS ingested_ms "
                f"FROM read_parquet({sql_str(previous_data)}) GROUP BY row_hash"
            )
        if prev and differential:  # rows that did not change keep their ingestion time
            con.execute(
                f"""CREATE TEMP TABLE rows AS
                    SELECT s.row_hash, s.ids, s.payload, coalesce(p.ingested_ms, {t})::BIGINT AS ingested_ms
                           {identity_columns}
                    FROM src s LEFT JOIN prev p USING (row_hash) WHERE s.err IS NULL"""
            )
        else:
            con.execute(
                f"""CREATE TEMP VIEW rows AS SELECT s.row_hash, s.ids, s.payload, {t}::BIGINT AS ingested_ms
                    {identity_columns} FROM src s WHERE s.err IS NULL"""
            )
        con.execute(
            f"COPY (SELECT row_hash, ids, payload, ingested_ms FROM rows) TO {sql_str(out_path)} (FORMAT parquet)"
        )
        st = Path(out_path).stat()
        self._rows_file = (st.st_dev, st.st_ino)
        self._rows_identities = [(f"v{index[f['name']]}", str(namespaces[f["name"]])) for f in known]
        self._rows_payload = [f["name"] for f in payload_fields]
        self._rows_ms = None if prev and differential else t
        changed, removed = accepted, 0
        if prev:
            changed, removed = con.execute(
                """WITH new AS (SELECT DISTINCT row_hash FROM rows)
                   SELECT (SELECT count(*) FROM new ANTI JOIN prev USING (row_hash)),
                          (SELECT count(*) FROM prev ANTI JOIN new USING (row_hash))"""
            ).fetchone()
        return RowsResult(
            data_path=out_path,
            rows_read=int(rows_read),
            accepted=int(accepted),
            rejected=int(rejected),
            rejects=rejects,
            samples=samples,
            changed=int(accepted if not differential else changed),  # a full run re-ingests every row
            removed=int(removed),
        )

    def build_membership(
        self,
        *,
        data_path: Path,
        identities_path: str | Path | None,
        profiles_path: str | Path | None,
        previous_membership: Path | None,
        evaluation_ms: int,
        ttl_days: int,
        out_path: Path,
        retention_days: int = RETENTION_DAYS,
        namespaces: list[str] | None = None,
        memberships_root: Path | None = None,
    ) -> MembershipResult:
        """Stage 2 (see the module docstring): the membership file of the audience at ``evaluation_ms``, from the
        rows stage 1 keeps in memory when ``data_path`` is their snapshot, else from the file.

        ``namespaces``: the identity namespaces the rows use (read from the rows when not given).
        ``memberships_root``: the folder ``out_path`` is published under (``out_path``'s grandparent, as for every
        membership file); given, the merged profiles are pinned there and current members reference their identity
        maps (``pin_profiles``); exits always carry theirs."""
        t = dt.datetime.fromtimestamp(evaluation_ms / 1000, tz=dt.UTC).replace(tzinfo=None)
        cutoff = t - dt.timedelta(days=retention_days)
        con = self.con
        in_memory = self.holds(data_path)
        if identities_path is not None and parquet_exists(identities_path):
            graph = f"SELECT namespace, id, profile_id FROM read_parquet({sql_str(identities_path)}) WHERE NOT excluded"
        else:
            graph = "SELECT NULL::VARCHAR AS namespace, NULL::VARCHAR AS id, NULL::VARCHAR AS profile_id WHERE false"
        # ``data``: the snapshot's rows. ``matches``: each (row, identity) with the row's time, payload and the
        # profile the graph gives the identity (NULL: none). Rows held in memory have their identities as columns
        # (one known identity field: a plain join, the graph read for that namespace only); a file's rows unnest
        # their ``ids``.
        con.execute("DROP VIEW IF EXISTS data")
        idents = self._rows_identities if in_memory else []
        if in_memory:
            con.execute("CREATE TEMP VIEW data AS SELECT row_hash, ids, payload, ingested_ms FROM rows")
            max_ids = len(idents)
            if namespaces is None:
                namespaces = [ns for _col, ns in idents]
        else:
            con.execute(f"CREATE TEMP VIEW data AS SELECT * FROM read_parquet({sql_str(data_path)})")
            max_ids = None
        if len(idents) == 1:
            col, ns = idents[0]
            matches = f"""SELECT d.row_hash, d.ingested_ms, d.payload, {sql_str(ns)} AS ns, g.profile_id
                          FROM rows d LEFT JOIN ({graph}) g ON g.namespace = {sql_str(ns)} AND g.id = d.{col}"""
        else:
            each = (
                " UNION ALL ".join(
                    f"SELECT row_hash, ingested_ms, payload, {sql_str(ns)} AS ns, {col} AS id FROM rows "
                    f"WHERE {col} IS NOT NULL"
                    for col, ns in idents
                )
                if idents
                else "SELECT row_hash, ingested_ms, payload, i.ns AS ns, i.id AS id "
                "FROM (SELECT row_hash, ingested_ms, payload, unnest(ids) AS i FROM data)"
            )
            matches = f"""SELECT d.row_hash, d.ingested_ms, d.payload, d.ns, g.profile_id
                          FROM ({each}) d LEFT JOIN ({graph}) g ON g.namespace = d.ns AND g.id = d.id"""
        try:
            if namespaces is None:
                namespaces = [
                    r[0]
                    for r in con.execute(
                        "SELECT DISTINCT i.ns FROM (SELECT unnest(ids) AS i FROM data)"
                    ).fetchall()
                ]
            namespaces = sorted(set(namespaces))
            ns_columns = "".join(
                f"bool_or(m.ns = {sql_str(ns)}) AS ns_{k}, " for k, ns in enumerate(namespaces)
            )
            # Per profile (one GROUP BY over the rows' identities joined to the graph): its newest row's ingestion
            # time and payload (ties broken by the row's content) and the namespaces that matched. A row naming
            # identities of two profiles makes both members. The NULL group holds the identities no profile has.
            # Rows held in memory aggregate cheaper: each enrichment field on its own (arg_max of a struct costs more),
            # by the row's content alone when every row has the same time, and one namespace needs no bool_or.
            key, ms = "(m.ingested_ms::HUGEINT << 64) + m.row_hash", "max(m.ingested_ms)"
            payload = f"arg_max(m.payload, {key})"
            if in_memory:
                if self._rows_ms is not None:
                    key, ms = "m.row_hash", f"{int(self._rows_ms)}::BIGINT"
                if self._rows_payload:
                    payload = (
                        "{"
                        + ", ".join(
                            f"{sql_str(f)}: arg_max_null(struct_extract(m.payload, {sql_str(f)}), {key})"
                            for f in self._rows_payload
                        )
                        + "}"
                    )
                if len(idents) == 1:
                    ns_columns = "true AS ns_0, "
            con.execute("DROP TABLE IF EXISTS cur_all")
            con.execute(
                f"""CREATE TEMP TABLE cur_all AS
                    SELECT m.profile_id, {ms} AS ms, {payload} AS payload, {ns_columns}count(*) AS n
                    FROM ({matches}) m
                    GROUP BY m.profile_id"""
            )
            con.execute(
                "CREATE OR REPLACE TEMP VIEW cur AS SELECT * FROM cur_all WHERE profile_id IS NOT NULL"
            )
            # Pending rows: rows none of whose identities a profile has. With one identity per row (the usual upload)
            # that is the NULL group's size; otherwise rows are checked one by one.
            if max_ids is None:
                max_ids = con.execute("SELECT max(len(ids)) FROM data").fetchone()[0] or 0
            if max_ids <= 1:
                pending = con.execute(
                    "SELECT coalesce(sum(n), 0) FROM cur_all WHERE profile_id IS NULL"
                ).fetchone()[0]
            else:
                pending = con.execute(
                    f"""SELECT count(*) FROM data ANTI JOIN (
                            SELECT DISTINCT x.row_hash FROM (SELECT row_hash, unnest(ids) AS i FROM data) x
                            JOIN ({graph}) g ON g.namespace = x.i.ns AND g.id = x.i.id) USING (row_hash)"""
                ).fetchone()[0]
            has_profiles = profiles_path is not None and parquet_exists(profiles_path)
            pin = pin_profiles(profiles_path, memberships_root) if has_profiles and memberships_root else None
            im = _identity_map_of("identityMap")
            if has_profiles and pin is None:
                shape = dict(
                    (r[0], r[1])
                    for r in con.execute(
                        f"DESCRIBE SELECT identityMap FROM read_parquet({sql_str(profiles_path)})"
                    ).fetchall()
                )
                if shape.get("identityMap", "").replace('"', "") == IDENTITY_MAP_TYPE.replace('"', ""):
                    im = "identityMap"  # already in the documented shape: no per-row rewrite
            profiles = (
                f"SELECT profile_id::VARCHAR AS profile_id, {im}::{IDENTITY_MAP_TYPE} AS identityMap "
                f"FROM read_parquet({sql_str(profiles_path)})"
                if has_profiles
                else f"SELECT NULL::VARCHAR AS profile_id, NULL::{IDENTITY_MAP_TYPE} AS identityMap WHERE false"
            )
            payload_type = con.execute("SELECT typeof(payload) FROM data LIMIT 1").fetchone()
            payload_type = payload_type[0] if payload_type else "STRUCT(none BOOLEAN)"
            prev_pin = previous = None
            if previous_membership is not None and Path(previous_membership).exists():
                previous = inspect_file(con, Path(previous_membership))
                cols, prev_pin = previous.columns, previous.profiles
                vu = "validUntil" if "validUntil" in cols else "NULL::TIMESTAMP AS validUntil"
                pl = "payload" if "payload" in cols else "NULL AS payload"
                prev = (
                    f"SELECT profile_id, status, lastQualificationTime AS lqt, identityMap::{IDENTITY_MAP_TYPE} AS im, "
                    f"{vu}, {pl} FROM read_parquet({sql_str(previous_membership)})"
                )
                prev_join = f"FULL JOIN ({prev}) p ON p.profile_id = c.profile_id"
            else:  # no previous members: every column of ``p`` is NULL (one row, no FULL JOIN to run)
                prev_join = (
                    f"CROSS JOIN (SELECT NULL::VARCHAR AS profile_id, NULL::VARCHAR AS status, NULL::TIMESTAMP AS lqt, "
                    f"NULL::{IDENTITY_MAP_TYPE} AS im, NULL::TIMESTAMP AS validUntil, NULL AS payload) p"
                )
            ttl = int(ttl_days) * DAY_MS
            out_file = sql_str(out_path)
            is_current = f"c.profile_id IS NOT NULL AND c.ms + {ttl} > $now"
            now = {"now": int(evaluation_ms)}
            # Identity maps: a pinned run writes them for exits only (current members read theirs from the pin).
            # ``pr``: the current profiles of every current row (unpinned), or of the rows whose TTL passed
            # (pinned; none: no join); ``p.im``: the previous row's own; ``pp``: from the previous file's pin, for
            # its current members that leave now.
            pr_join, pr_map = f"LEFT JOIN ({profiles}) pr ON pr.profile_id = c.profile_id", "pr.identityMap"
            if pin is not None:
                expired = f"SELECT profile_id FROM cur WHERE ms + {ttl} <= $now"
                if con.execute(f"SELECT count(*) FROM ({expired})", now).fetchone()[0]:
                    pinned = pinned_profiles_sql(con, Path(memberships_root) / pin)
                    pr_join = f"LEFT JOIN ({pinned} SEMI JOIN ({expired}) USING (profile_id)) pr ON pr.profile_id = c.profile_id"
                else:
                    pr_join, pr_map = "", "NULL"
            pp_join, pp_map = "", "NULL"
            if prev_pin is not None:
                con.execute(
                    f"""CREATE OR REPLACE TEMP TABLE leaving AS
                        SELECT p.profile_id::VARCHAR AS profile_id FROM read_parquet({sql_str(previous_membership)}) p
                        ANTI JOIN (SELECT profile_id FROM cur WHERE ms + {ttl} > $now) c
                            ON c.profile_id = p.profile_id::VARCHAR
                        WHERE p.status <> 'exited'""",
                    now,
                )
                if con.execute("SELECT count(*) FROM leaving").fetchone()[0]:
                    pp_join = (
                        f"LEFT JOIN ({pinned_profiles_sql(con, prev_pin)} SEMI JOIN leaving USING (profile_id)) pp "
                        "ON pp.profile_id = p.profile_id"
                    )
                    pp_map = "pp.identityMap"
            identity_map = f"coalesce({pr_map}, p.im, {pp_map})"
            if pin is not None:
                identity_map = f"CASE WHEN {is_current} THEN NULL ELSE {identity_map} END"
            kv = f", KV_METADATA {{profiles: {sql_str(pin)}}}" if pin is not None else ""
            # Parquet V2 (as the pidx membership files): its encodings write the 32-character profile ids and the
            # timestamps about a third faster than V1's.
            con.execute(
                f"""COPY (
                    SELECT * FROM (
                      SELECT coalesce(c.profile_id, p.profile_id) AS profile_id,
                             CASE WHEN c.profile_id IS NOT NULL AND c.ms + {ttl} > $now THEN 'realized' ELSE 'exited' END
                                 AS status,
                             CASE WHEN c.profile_id IS NOT NULL AND c.ms + {ttl} > $now THEN make_timestamp(c.ms * 1000)
                                  WHEN p.status = 'exited' THEN p.lqt
                                  WHEN c.profile_id IS NOT NULL THEN least(make_timestamp((c.ms + {ttl}) * 1000), $t)
                                  ELSE $t END AS lastQualificationTime,
                             {identity_map}::{IDENTITY_MAP_TYPE} AS identityMap,
                             CASE WHEN c.profile_id IS NOT NULL THEN make_timestamp((c.ms + {ttl}) * 1000)
                                  ELSE p.validUntil END AS validUntil,
                             CASE WHEN c.profile_id IS NOT NULL THEN c.payload
                                  ELSE TRY_CAST(p.payload AS {payload_type}) END AS payload,
                             p.status IS DISTINCT FROM 'exited' AS was_current
                      FROM cur c
                      {prev_join}
                      {pr_join}
                      {pp_join})
                    WHERE status = 'realized' OR lastQualificationTime >= $cutoff
                ) TO {out_file} (FORMAT parquet, PARQUET_VERSION V2{kv})""",
                {"now": int(evaluation_ms), "t": t, "cutoff": cutoff},
            )
            if previous is None:  # the file's rows are ``cur``'s (the statement above): count them there
                realized, exited, exited_now, next_expiry = con.execute(
                    f"""SELECT count(*) FILTER (WHERE ms + {ttl} > $now), count(*) FILTER (WHERE gone),
                               count(*) FILTER (WHERE gone),
                               make_timestamp(min(ms) FILTER (WHERE ms + {ttl} > $now) * 1000 + {ttl * 1000})
                        FROM (SELECT ms, ms + {ttl} <= $now
                                     AND least(make_timestamp((ms + {ttl}) * 1000), $t) >= $cutoff AS gone
                              FROM cur)""",
                    {"now": int(evaluation_ms), "t": t, "cutoff": cutoff},
                ).fetchone()
            else:
                realized, exited, exited_now, next_expiry = con.execute(
                    f"""SELECT count(*) FILTER (WHERE status = 'realized'),
                               count(*) FILTER (WHERE status = 'exited'),
                               count(*) FILTER (WHERE status = 'exited' AND was_current),
                               min(validUntil) FILTER (WHERE status = 'realized')
                        FROM read_parquet({out_file})"""
                ).fetchone()
            # Namespaces of the current members, counted per distinct list of namespaces (few), then per namespace
            by_namespace: dict[str, int] = {}
            # (the namespaces of the identities that matched each member: no second read of the identity maps).
            if namespaces:
                sums = ", ".join(f"count(*) FILTER (WHERE ns_{k})" for k in range(len(namespaces)))
                row = con.execute(
                    f"SELECT {sums} FROM cur WHERE ms + {ttl} > $now", {"now": int(evaluation_ms)}
                ).fetchone()
                by_namespace = {ns: int(n) for ns, n in zip(namespaces, row, strict=True) if n}
            counts = {
                "members": int(realized),
                "realized": int(realized),
                "existing": 0,
                "exited": int(exited_now),
                "exitedRetained": int(exited),
                "by_namespace": dict(sorted(by_namespace.items())),
                "pending": int(pending),
            }
            next_ms = None
            if next_expiry is not None:
                next_ms = int(next_expiry.replace(tzinfo=dt.UTC).timestamp() * 1000)
            return MembershipResult(out_path, counts, int(pending), next_ms)
        finally:
            for name in ("cur", "data"):
                con.execute(f"DROP VIEW IF EXISTS {name}")
            con.execute("DROP TABLE IF EXISTS cur_all")
            con.execute("DROP TABLE IF EXISTS leaving")


def ingest_rows(*, out_path: Path, memory_limit: str = "2GB", **kwargs: Any) -> RowsResult:
    """Stage 1 in a connection of its own (:meth:`Ingestion.ingest_rows`)."""
    with Ingestion(out_path.parent, memory_limit) as run:
        return run.ingest_rows(out_path=out_path, **kwargs)


def build_membership(*, out_path: Path, memory_limit: str = "2GB", **kwargs: Any) -> MembershipResult:
    """Stage 2 in a connection of its own, from the snapshot file (:meth:`Ingestion.build_membership`)."""
    with Ingestion(out_path.parent, memory_limit) as run:
        return run.build_membership(out_path=out_path, **kwargs)


def restamp(data_path: Path, ingestion_ms: int, out_path: Path) -> Path:
    """The data snapshot re-ingested at ``ingestion_ms`` (extend TTL: the last data, valid again for the TTL)."""
    con = connect()
    try:
        con.execute(
            f"""COPY (SELECT row_hash, ids, payload, $t::BIGINT AS ingested_ms FROM read_parquet({sql_str(data_path)}))
                TO {sql_str(out_path)} (FORMAT parquet)""",
            {"t": int(ingestion_ms)},
        )
    finally:
        con.close()
    return out_path
