"""Merged profiles of one merge policy (``store/merged/<policyId>/<version>/profiles.parquet``): the full merge and
the incremental one, which merges again only the profiles a step touches and copies every other row."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from segmentation_pipelines.duck import sql_str
from segmentation_pipelines.profiles.batches import BatchRef, batch_files, batch_relation
from segmentation_pipelines.profiles.merge import merged_attributes_sql
from segmentation_pipelines.profiles.schema import merge_columns

# Snappy: an incremental step rewrites the whole file (1.2M profiles at the benchmark's size), and the engine reads
# every row of it on each evaluation; ZSTD is slower on both sides for a file this size.
PARQUET = "FORMAT PARQUET, COMPRESSION SNAPPY"


def _people_sql(ids: str, where: str = "") -> str:
    """One row per non-excluded profile of the identity relation ``ids``: its identityMap."""
    return f"""SELECT profile_id, list({{'key': namespace, 'value': ids}} ORDER BY namespace) AS identityMap FROM (
        SELECT profile_id, namespace, list({{'id': id, 'primary': "primary"}} ORDER BY id) AS ids
        FROM {ids} WHERE NOT excluded {where} GROUP BY profile_id, namespace)
        GROUP BY profile_id"""


def merge_schema(con, layout, profile_batches: list[BatchRef]) -> tuple[str | None, dict]:
    """The fragments view over every profile batch and the attribute columns merged (the union schema)."""
    fragments = batch_relation(con, "raw_fragments", batch_files(layout, profile_batches))
    if fragments is None:
        return None, {}
    columns = merge_columns(*(dict(b.columns or {}) for b in profile_batches))
    described = {r[0] for r in con.execute("DESCRIBE SELECT * FROM raw_fragments").fetchall()}
    return fragments, {k: v for k, v in columns.items() if k in described}


def _updated_sql(columns: Mapping) -> str:
    """The timestamp-ordered key: the fragment's own update time when it has one, else its batch's."""
    audit = columns.get("extSourceSystemAudit")
    if isinstance(audit, dict) and audit.get("lastUpdatedDate") == "TIMESTAMP":
        return "coalesce(struct_extract(f.extSourceSystemAudit, 'lastUpdatedDate'), f._ingested)"
    return "f._ingested"


def _write(
    con, out: Path, people: str, columns: Mapping | None, attribute_merge: Mapping, order: bool
) -> int:
    """Write ``people`` (profile_id, identityMap) with the merged attributes of the ``fragments`` view
    (``columns`` None: there are no fragments at all)."""
    sort = "ORDER BY p.profile_id" if order else ""
    if columns is None:
        sql = f"SELECT p.* FROM ({people}) p {sort}"
    else:
        attrs = merged_attributes_sql("fragments", columns, attribute_merge)
        sql = f"""SELECT p.profile_id, p.identityMap, a.* EXCLUDE (profile_id)
            FROM ({people}) p LEFT JOIN ({attrs}) a USING (profile_id) {sort}"""
    return int(con.execute(f"COPY ({sql}) TO {sql_str(str(out))} ({PARQUET})").fetchone()[0])


def full_merge(
    con, layout, ids_path: str, profile_batches: list[BatchRef], attribute_merge: Mapping, out: Path
):
    con.execute(f"CREATE OR REPLACE TEMP VIEW identities AS SELECT * FROM read_parquet({sql_str(ids_path)})")
    fragments, columns = merge_schema(con, layout, profile_batches)
    fragment_count = 0
    if fragments is not None:
        # Materialized once: counted, then merged (a view would read and join every batch file twice).
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE fragments AS
            SELECT i.profile_id, f.* EXCLUDE (_ingested), {_updated_sql(columns)} AS _updated
            FROM raw_fragments f JOIN identities i
              ON i.namespace = f.identityMap[1].key AND i.id = f.identityMap[1].value[1].id
            WHERE NOT i.excluded"""
        )
        fragment_count = con.execute("SELECT count(*) FROM fragments").fetchone()[0]
    columns = None if fragments is None else columns
    count = _write(con, out, _people_sql("identities"), columns, attribute_merge, order=True)
    return {"profiles": count, "fragments": int(fragment_count)}


def incremental_merge(
    con,
    layout,
    ids_path: str,
    affected_path: str | None,
    profile_batches: list[BatchRef],
    new_batches: list[BatchRef],
    attribute_merge: Mapping,
    previous: Path,
    stats: Mapping,
    out: Path,
):
    """Merge again the profiles of the re-stitched components (``affected_path``, the identity-graph step since
    the previous version) and those the fragments of ``new_batches`` belong to; copy every other row."""
    # Read once: the steps below scan it three times.
    con.execute(f"CREATE OR REPLACE TEMP TABLE identities AS SELECT * FROM read_parquet({sql_str(ids_path)})")
    restitched = (
        f"""SELECT namespace, id, profile_id, excluded, old_profile_id,
                   old_profile_id IS NOT NULL AND NOT old_excluded AS old_counted
            FROM read_parquet({sql_str(affected_path)})"""
        if affected_path
        else "SELECT NULL::VARCHAR AS namespace, NULL::VARCHAR AS id, NULL::VARCHAR AS profile_id, "
        "NULL::BOOLEAN AS excluded, NULL::VARCHAR AS old_profile_id, NULL::BOOLEAN AS old_counted WHERE false"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE restitched AS {restitched}")
    new_frag = batch_relation(con, "new_fragments", batch_files(layout, new_batches))
    touched = (
        """SELECT DISTINCT i.profile_id FROM new_fragments f JOIN identities i
           ON i.namespace = f.identityMap[1].key AND i.id = f.identityMap[1].value[1].id WHERE NOT i.excluded"""
        if new_frag
        else "SELECT NULL::VARCHAR AS profile_id WHERE false"
    )
    # Every identity whose fragments count: re-stitched ones (with their old status), and the identities of the
    # unchanged components that new fragments land in.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE scope_ids AS
        SELECT namespace, id, profile_id, excluded, old_counted FROM restitched
        UNION ALL
        SELECT i.namespace, i.id, i.profile_id, i.excluded, true FROM identities i
        SEMI JOIN ({touched}) t USING (profile_id)
        ANTI JOIN restitched r ON r.namespace = i.namespace AND r.id = i.id"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE redo AS SELECT DISTINCT profile_id FROM scope_ids WHERE NOT excluded"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE dropped AS
        SELECT profile_id FROM redo UNION SELECT old_profile_id FROM restitched WHERE old_profile_id IS NOT NULL"""
    )
    if not con.execute("SELECT count(*) FROM dropped").fetchone()[0]:
        os.link(previous / out.name, out)  # no profile changes: the same file, no rewrite
        return {"profiles": int(stats["profiles"]), "fragments": int(stats["fragments"])}
    fragments, columns = merge_schema(con, layout, profile_batches)
    removed = added = 0
    if fragments is not None:
        new_ids = {b.batch_id for b in new_batches}
        old_batches = sql_str_list(b.batch_id for b in profile_batches if b.batch_id not in new_ids)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE scoped_fragments AS
            SELECT i.profile_id, i.excluded AS _excluded, i.old_counted AND f._batch IN {old_batches} AS _was_counted,
                   f.* EXCLUDE (_ingested), {_updated_sql(columns)} AS _updated
            FROM raw_fragments f JOIN scope_ids i
              ON i.namespace = f.identityMap[1].key AND i.id = f.identityMap[1].value[1].id"""
        )
        removed, added = con.execute(
            "SELECT count(*) FILTER (WHERE _was_counted), count(*) FILTER (WHERE NOT _excluded) FROM scoped_fragments"
        ).fetchone()
        con.execute(
            """CREATE OR REPLACE TEMP VIEW fragments AS
            SELECT * EXCLUDE (_excluded, _was_counted) FROM scoped_fragments WHERE NOT _excluded"""
        )
    redone = out.with_name(".redone.parquet")
    people = _people_sql("(SELECT * FROM identities SEMI JOIN redo USING (profile_id))")
    _write(con, redone, people, None if fragments is None else columns, attribute_merge, order=False)
    old = sql_str(str(previous / "profiles.parquet"))
    count = con.execute(
        f"""COPY (SELECT * FROM read_parquet({old}) ANTI JOIN dropped USING (profile_id)
                  UNION ALL BY NAME SELECT * FROM read_parquet({sql_str(str(redone))}))
            TO {sql_str(str(out))} ({PARQUET})"""
    ).fetchone()[0]
    redone.unlink()
    return {"profiles": int(count), "fragments": int(stats["fragments"]) - int(removed) + int(added)}


def sql_str_list(values) -> str:
    items = [sql_str(v) for v in values]
    return "(" + ", ".join(items) + ")" if items else "(NULL)"
