"""Column type trees and the union schema.

A *type tree* describes one column: a DuckDB scalar type name (``"VARCHAR"``, ``"BIGINT"``, ``"DOUBLE"``,
``"BOOLEAN"``, ``"DATE"``, ``"TIMESTAMP"``), a dict (a struct: field name -> tree), a one-element list (a list of
that element), or ``"IDENTITY_MAP"`` (XDM's identity map). A batch records ``{column: tree}``; the union of those
over every batch of a class is the schema the PQL checker validates field paths against (``docs/data-model.md``).
Trees are plain JSON, so they are kept in the catalog beside each batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from segmentation_pipelines.profiles.xdm import IDENTITY_MAP_TYPE, KNOWN_TYPES, MAP_FIELDS

Tree = Any  # str | dict[str, Tree] | list[Tree]
IDENTITY_MAP = "IDENTITY_MAP"

_SCHEMA_TYPES = {
    "VARCHAR": "string",
    "BIGINT": "integer",
    "DOUBLE": "number",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "date-time",
    IDENTITY_MAP: "map",
}


def quote(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def dotted(path: Iterable[str]) -> str:
    return ".".join(path).replace(".[]", "[]")


def from_arrow(t: pa.DataType, name: str = "") -> Tree:
    """Type tree of an Arrow (Parquet) type."""
    if name in MAP_FIELDS and (pa.types.is_map(t) or pa.types.is_list(t) or pa.types.is_struct(t)):
        return IDENTITY_MAP
    if pa.types.is_struct(t):
        return {t.field(i).name: from_arrow(t.field(i).type) for i in range(t.num_fields)}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return [from_arrow(t.value_type)]
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "DOUBLE"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    return "VARCHAR"


def from_json_structure(structure: Any, path: tuple[str, ...] = ()) -> Tree:
    """Type tree of a DuckDB ``json_group_structure`` result; ``"JSON"`` marks a type conflict between rows."""
    if path and path[0] in MAP_FIELDS and len(path) == 1:
        return IDENTITY_MAP
    if isinstance(structure, dict):
        return {k: from_json_structure(v, (*path, k)) for k, v in structure.items()}
    if isinstance(structure, list):
        return [from_json_structure(structure[0], (*path, "[]"))] if structure else ["VARCHAR"]
    return {
        "UBIGINT": "BIGINT",
        "BIGINT": "BIGINT",
        "DOUBLE": "DOUBLE",
        "BOOLEAN": "BOOLEAN",
        "VARCHAR": "VARCHAR",
        "NULL": "VARCHAR",
        "JSON": "JSON",
    }.get(str(structure), "VARCHAR")


def apply_known_types(columns: dict[str, Tree]) -> dict[str, Tree]:
    """Force the XDM types of well-known fields (dates, timestamps, amounts) onto inferred trees."""

    def walk(tree: Tree, path: tuple[str, ...]) -> Tree:
        known = KNOWN_TYPES.get(dotted(path))
        if known and not isinstance(tree, dict | list):
            return known
        if isinstance(tree, dict):
            return {k: walk(v, (*path, k)) for k, v in tree.items()}
        if isinstance(tree, list):
            return [walk(tree[0], (*path, "[]"))]
        return tree

    return {name: walk(tree, (name,)) for name, tree in columns.items()}


def merge(a: Tree, b: Tree) -> Tree:
    """Union of two trees; on a scalar conflict the first wins, except integer + number = number."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a.get(k), v)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return [merge(a[0], b[0])]
    if isinstance(a, str) and isinstance(b, str) and {a, b} == {"BIGINT", "DOUBLE"}:
        return "DOUBLE"
    if a == "JSON":
        return b
    return a


def merge_columns(*column_sets: Mapping[str, Tree]) -> dict[str, Tree]:
    out: dict[str, Tree] = {}
    for columns in column_sets:
        for name, tree in (columns or {}).items():
            out[name] = merge(out.get(name), tree)
    return out


def duck_type(tree: Tree, tz: bool = False) -> str:
    """DuckDB type of a tree; ``tz`` parses timestamps as TIMESTAMPTZ (ISO strings with offsets)."""
    if tree == IDENTITY_MAP:
        return IDENTITY_MAP_TYPE
    if isinstance(tree, dict):
        if not tree:
            return "JSON"
        return "STRUCT(" + ", ".join(f"{quote(k)} {duck_type(v, tz)}" for k, v in tree.items()) + ")"
    if isinstance(tree, list):
        return duck_type(tree[0], tz) + "[]"
    if tree == "TIMESTAMP" and tz:
        return "TIMESTAMPTZ"
    if tree == "JSON":
        return "VARCHAR"
    return tree


def schema_paths(columns: Mapping[str, Tree]) -> dict[str, str]:
    """The schema dict of ``docs/data-model.md``: every field path with its type name."""
    out: dict[str, str] = {}

    def walk(tree: Tree, path: tuple[str, ...]) -> None:
        key = dotted(path)
        if isinstance(tree, dict):
            out[key] = "object"
            for k, v in tree.items():
                walk(v, (*path, k))
        elif isinstance(tree, list):
            out[key] = "array"
            walk(tree[0], (*path, "[]"))
        else:
            out[key] = _SCHEMA_TYPES.get(tree, "string")

    for name, tree in columns.items():
        walk(tree, (name,))
    return dict(sorted(out.items()))


def leaves(columns: Mapping[str, Tree], skip: Iterable[str] = ()) -> list[tuple[tuple[str, ...], Tree]]:
    """Attribute leaves for merging: scalars and whole lists, addressed by their struct path."""
    skipped = set(skip)
    out: list[tuple[tuple[str, ...], Tree]] = []

    def walk(tree: Tree, path: tuple[str, ...]) -> None:
        if isinstance(tree, dict) and tree:
            for k, v in tree.items():
                walk(v, (*path, k))
        else:
            out.append((path, tree))

    for name, tree in columns.items():
        if name not in skipped:
            walk(tree, (name,))
    return out


def union_schema(profile_columns: Iterable[Mapping[str, Tree]], event_columns: Iterable[Mapping[str, Tree]]):
    """``{"profile": {...}, "experienceevent": {...}}`` from the column trees of every batch of each class."""
    return {
        "profile": schema_paths(merge_columns(*profile_columns)),
        "experienceevent": schema_paths(merge_columns(*event_columns)),
    }
