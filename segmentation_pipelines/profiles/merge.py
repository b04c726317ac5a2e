"""Merge policies: how the fragments of one person become one merged profile.

For every attribute leaf (a scalar, or a whole list) the winning fragment is the one with the greatest ordering
key among the fragments that have a value there:

* ``timestampOrdered``: the fragment's ``extSourceSystemAudit.lastUpdatedDate`` when present, else its batch's
  ingestion time (ties: the later batch, then the later row);
* ``dataSetPrecedence``: the position of the fragment's dataset in ``attributeMerge.order`` (first = highest;
  datasets not listed come last), then as ``timestampOrdered``.

One ``GROUP BY profile_id`` with one ``arg_max(...) FILTER (WHERE leaf IS NOT NULL)`` per leaf over the profiles
with several fragments (a profile with one fragment takes its leaves as they are), then the nested structs are
rebuilt from the leaves.
"""

from __future__ import annotations

from collections.abc import Mapping

from segmentation_pipelines.duck import sql_str
from segmentation_pipelines.errors import BadRequest
from segmentation_pipelines.profiles.schema import Tree, leaves, quote

TIMESTAMP_ORDERED = "timestampOrdered"
DATASET_PRECEDENCE = "dataSetPrecedence"
MERGE_TYPES = (TIMESTAMP_ORDERED, DATASET_PRECEDENCE)
NOT_MERGED = ("identityMap", "_id", "segmentMembership")


def validate_attribute_merge(attribute_merge: Mapping | None) -> dict:
    """The ``attributeMerge`` of a policy, checked and normalised."""
    merge = dict(attribute_merge or {"type": TIMESTAMP_ORDERED})
    kind = merge.get("type")
    if kind not in MERGE_TYPES:
        raise BadRequest(f"attributeMerge.type must be one of {', '.join(MERGE_TYPES)}, not {kind!r}.")
    if kind == DATASET_PRECEDENCE:
        order = merge.get("order")
        if not isinstance(order, list) or not order or not all(isinstance(d, str) for d in order):
            raise BadRequest("attributeMerge.order must list the dataset ids, highest precedence first.")
    else:
        merge.pop("order", None)
    return merge


def rank_sql(attribute_merge: Mapping, dataset_col: str = "_dataset") -> str:
    if attribute_merge.get("type") != DATASET_PRECEDENCE:
        return "0"
    order = list(attribute_merge.get("order") or [])
    whens = " ".join(f"WHEN {sql_str(d)} THEN {len(order) - i}" for i, d in enumerate(order))
    return f"CASE {dataset_col} {whens} ELSE 0 END" if whens else "0"


def _access(path: tuple[str, ...]) -> str:
    expr = quote(path[0])
    for part in path[1:]:
        expr = f"struct_extract({expr}, {sql_str(part)})"
    return expr


def _rebuild(tree: Tree, path: tuple[str, ...], names: dict[tuple[str, ...], str]) -> str:
    if isinstance(tree, dict) and tree:
        inner = ", ".join(f"{quote(k)} := {_rebuild(v, (*path, k), names)}" for k, v in tree.items())
        return f"struct_pack({inner})"
    return names[path]


def merged_attributes_sql(fragments: str, columns: Mapping[str, Tree], attribute_merge: Mapping) -> str:
    """SQL: one row per ``profile_id`` with the merged attribute columns, from the relation ``fragments``
    (``profile_id, _dataset, _updated, _seq`` + attribute columns)."""
    leaf_list = leaves(columns, skip=NOT_MERGED)
    if not leaf_list:
        return f"SELECT DISTINCT profile_id FROM {fragments}"
    key = f"struct_pack(r := {rank_sql(attribute_merge)}, u := _updated, s := _seq)"
    names = {path: f"l{i}" for i, (path, _) in enumerate(leaf_list)}
    aggs = ", ".join(
        f"arg_max({_access(path)}, _key) FILTER (WHERE {_access(path)} IS NOT NULL) AS {names[path]}"
        for path, _ in leaf_list
    )
    top = ", ".join(
        f"{_rebuild(tree, (name,), names)} AS {quote(name)}"
        for name, tree in columns.items()
        if name not in NOT_MERGED
    )
    # Most profiles have one fragment, whose leaves win as they are: only the others go through the aggregate
    # (arg_max with a struct key per leaf is the bulk of a full merge). Same leaves, same rebuild: same rows.
    plain = ", ".join(f"{_access(path)} AS {names[path]}" for path, _ in leaf_list)
    many = f"(SELECT profile_id FROM {fragments} GROUP BY profile_id HAVING count(*) > 1)"
    return (
        f"SELECT profile_id, {top} FROM ("
        f"SELECT profile_id, {aggs} FROM (SELECT *, {key} AS _key FROM {fragments} SEMI JOIN {many} m USING (profile_id))"
        f" GROUP BY profile_id"
        f" UNION ALL SELECT profile_id, {plain} FROM {fragments} ANTI JOIN {many} m USING (profile_id))"
    )
