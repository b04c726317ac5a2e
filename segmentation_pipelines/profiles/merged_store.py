"""Merged profiles of one merge policy (``store/merged/<policyId>/<version>/part-*.parquet``, range files of
profile ids, :mod:`profiles.ranges`): the full merge, and the incremental one, which merges again only the profiles
a step touches, rewrites the files that held them and hard-links the others."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from segmentation_pipelines.duck import sql_str
from segmentation_pipelines.profiles import ranges
from segmentation_pipelines.profiles.batches import BatchRef, batch_files, batch_relation
from segmentation_pipelines.profiles.merge import merged_attributes_sql
from segmentation_pipelines.profiles.schema import merge_columns

# Rows per range file of the merged profiles (~40 files at 1.2M profiles).
PART_ROWS = 30720


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


def _merged_sql(people: str, columns: Mapping | None, attribute_merge: Mapping) -> str:
    """``people`` (profile_id, identityMap) with the merged attributes of the ``fragments`` view (``columns``
    None: there are no fragments at all)."""
    if columns is None:
        return f"SELECT p.* FROM ({people}) p"
    attrs = merged_attributes_sql("fragments", columns, attribute_merge)
    return f"""SELECT p.profile_id, p.identityMap, a.* EXCLUDE (profile_id)
        FROM ({people}) p LEFT JOIN ({attrs}) a USING (profile_id)"""


def full_merge(
    con, layout, ids_path: str, profile_batches: list[BatchRef], attribute_merge: Mapping, version: Path
) -> tuple[dict, list[dict]]:
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
    sql = _merged_sql(_people_sql("identities"), columns, attribute_merge)
    parts = ranges.write_base(con, version, sql, PART_ROWS)
    return {"profiles": sum(p["rows"] for p in parts), "fragments": int(fragment_count)}, parts


def incremental_merge(
    con,
    layout,
    ids_path: str,
    affected_path: str | None,
    profile_batches: list[BatchRef],
    new_batches: list[BatchRef],
    attribute_merge: Mapping,
    previous: Path,
    parts: list[dict],
    stats: Mapping,
    version: Path,
) -> tuple[dict, list[dict]]:
    """Merge again the profiles of the re-stitched components (``affected_path``, the identity-graph step since
    the previous version) and those the fragments of ``new_batches`` belong to; the range files of ``previous``
    (``parts``) that hold none of them are hard-linked, the others rewritten without them, and the profiles
    merged again are added as one delta file."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW identities AS SELECT * FROM read_parquet({sql_str(ids_path)})")
    restitched = (
        f"""SELECT namespace, id, "primary", profile_id, excluded, old_profile_id,
                   old_profile_id IS NOT NULL AND NOT old_excluded AS old_counted
            FROM read_parquet({sql_str(affected_path)})"""
        if affected_path
        else 'SELECT NULL::VARCHAR AS namespace, NULL::VARCHAR AS id, NULL::BOOLEAN AS "primary", '
        "NULL::VARCHAR AS profile_id, NULL::BOOLEAN AS excluded, NULL::VARCHAR AS old_profile_id, "
        "NULL::BOOLEAN AS old_counted WHERE false"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE restitched AS {restitched}")
    new_frag = batch_relation(con, "new_fragments", batch_files(layout, new_batches))
    # The unchanged components that new fragments land in: one scan of the graph's (namespace, id, profile_id).
    touched = (
        """SELECT DISTINCT i.profile_id FROM identities i
           SEMI JOIN (SELECT DISTINCT identityMap[1].key AS ns, identityMap[1].value[1].id AS id FROM new_fragments) f
             ON i.namespace = f.ns AND i.id = f.id
           WHERE NOT i.excluded"""
        if new_frag
        else "SELECT NULL::VARCHAR AS profile_id WHERE false"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE touched AS {touched}")
    # Every identity whose fragments count: re-stitched ones (with their old status), and the identities of the
    # unchanged components that new fragments land in (a second scan, of the profile ids only).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE scope_ids AS
        SELECT namespace, id, "primary", profile_id, excluded, old_counted FROM restitched
        UNION ALL
        SELECT i.namespace, i.id, i."primary", i.profile_id, i.excluded, true FROM identities i
        SEMI JOIN touched t USING (profile_id)
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
        # No profile changes: the same files, no rewrite.
        out = ranges.step(con, version, previous, parts, "dropped", None, PART_ROWS)
        return {"profiles": int(stats["profiles"]), "fragments": int(stats["fragments"])}, out
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
    people = _people_sql("(SELECT * FROM scope_ids SEMI JOIN redo USING (profile_id))")
    sql = _merged_sql(people, None if fragments is None else columns, attribute_merge)
    out = ranges.step(con, version, previous, parts, "dropped", sql, PART_ROWS)
    return {
        "profiles": sum(p["rows"] for p in out),
        "fragments": int(stats["fragments"]) - int(removed) + int(added),
    }, out


def sql_str_list(values) -> str:
    items = [sql_str(v) for v in values]
    return "(" + ", ".join(items) + ")" if items else "(NULL)"
