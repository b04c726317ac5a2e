"""Profile lookup by identity: which merged profile holds ``namespace:id``, and its attributes as XDM JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any

from segmentation_pipelines import duck
from segmentation_pipelines.duck import sql_str
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.profiles.xdm import MAP_FIELDS


def to_json_value(value: Any) -> Any:
    """Python values from DuckDB as XDM JSON: times as ISO 8601 UTC, nulls dropped, key/value lists as maps."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    return value


def _as_map(entries: list[dict] | None) -> dict:
    return {e["key"]: to_json_value(e["value"]) for e in entries or []}


def find_identity(layout: StoreLayout, namespace: str, ident: str) -> dict | None:
    """``{profile_id, component_size, excluded}`` of the component holding the identity, or None."""
    if not layout.identities_dir().exists():
        return None
    path = layout.identities_path()
    con = duck.connect(memory_limit="1GB")
    try:
        row = con.execute(
            f"SELECT profile_id, component_size, excluded FROM read_parquet({sql_str(str(path))}) "
            "WHERE namespace = ? AND id = ? LIMIT 1",
            [namespace, ident],
        ).fetchone()
    finally:
        con.close()
    return (
        None
        if row is None
        else {"profile_id": row[0], "component_size": int(row[1]), "excluded": bool(row[2])}
    )


def read_profile(layout: StoreLayout, merge_policy_id: str, profile_id: str) -> dict | None:
    """The merged profile's XDM attributes (``identityMap`` as a map), or None."""
    if not layout.profiles_dir(merge_policy_id).exists():
        return None
    path = layout.profiles_path(merge_policy_id)
    con = duck.connect(memory_limit="1GB")
    try:
        cur = con.execute(
            f"SELECT * FROM read_parquet({sql_str(str(path))}) WHERE profile_id = ?", [profile_id]
        )
        row = cur.fetchone()
        names = [d[0] for d in cur.description]
    finally:
        con.close()
    if row is None:
        return None
    out: dict[str, Any] = {}
    for name, value in zip(names, row, strict=True):
        if name == "profile_id" or value is None:
            continue
        out[name] = _as_map(value) if name in MAP_FIELDS else to_json_value(value)
    return {k: v for k, v in out.items() if v not in ({}, [])}
