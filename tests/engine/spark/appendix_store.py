"""A seeded random profile store of the appendix schema (tests/pql/pql_front_schema.py), so that every appendix
segment definition selects someone on some engine: string values come from the string literals of the
definitions themselves, numbers and times from small pools around the evaluation time, with nulls and empty
arrays mixed in."""

from __future__ import annotations

import random
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from segmentation_pipelines.pql.schema import Schema

# Map values: identities for identityMap, objects with a string property for the others (the appendix reads
# externalSegmentMapProperty.values().exists(stringProperty = "active")).
IDENTITY = pa.list_(pa.struct([("id", pa.string()), ("primary", pa.bool_())]))
PROPERTY = pa.struct([("stringProperty", pa.string()), ("status", pa.string())])


def _leaf(kind: str) -> pa.DataType:
    return {
        "string": pa.string(),
        "integer": pa.int64(),
        "number": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "date-time": pa.timestamp("us"),
    }.get(kind, pa.string())


def _tree(fields: dict[str, str]) -> dict[str, Any]:
    """Dotted paths (``a.b[].c``) as a nested dict: ``{"a": {"b[]": {"c": "string"}}}``; ``x[]`` leaves are lists
    of that kind; an ``object``/``array`` entry whose fields are listed too is left to them."""
    root: dict[str, Any] = {}
    for path, kind in sorted(fields.items()):
        if any(p != path and (p.startswith(path + ".") or p.startswith(path + "[]")) for p in fields):
            continue
        parts = path.replace("[].", "[]\0").replace(".", "\0").split("\0")
        node = root
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = kind
    return root


def _type(name: str, node: Any) -> pa.DataType:
    if isinstance(node, str):
        if node == "map":
            value = IDENTITY if name == "identityMap" else PROPERTY
            return pa.list_(pa.struct([("key", pa.string()), ("value", value)]))
        t = _leaf(node)
        return pa.list_(t) if name.endswith("[]") else t
    inner = pa.struct([(k.removesuffix("[]"), _type(k, v)) for k, v in node.items()])
    return pa.list_(inner) if name.endswith("[]") else inner


def arrow_schema(fields: dict[str, str], extra: list[tuple[str, pa.DataType]]) -> pa.Schema:
    tree = _tree(fields)
    return pa.schema(extra + [(k.removesuffix("[]"), _type(k, v)) for k, v in tree.items()])


class _Values:
    def __init__(self, rng: random.Random, strings: list[str], now: datetime):
        self.rng, self.strings, self.now = rng, strings, now

    def of(self, t: pa.DataType, top: bool = False) -> Any:
        r = self.rng
        if r.random() < 0.15 and not top:
            return None
        if pa.types.is_struct(t):
            return {f.name: self.of(f.type) for f in t}
        if pa.types.is_list(t):
            return [self.of(t.value_type) for _ in range(r.randint(0, 3))]
        if pa.types.is_string(t):
            return r.choice(self.strings)
        if pa.types.is_int64(t):
            return r.choice([0, 1, 2, 3, 5, 10, 25, 35, 100, 500, 1980, 1990, 2000, 2020])
        if pa.types.is_float64(t):
            return r.choice([0.0, 1.0, 5.5, 10.0, 50.0, 99.99, 100.0, 250.0])
        if pa.types.is_boolean(t):
            return r.random() < 0.5
        if pa.types.is_date32(t):
            return date(2026, 11, 29) - timedelta(days=r.choice([0, 1, 3, 10, 40, 400, 9000]))
        if pa.types.is_timestamp(t):
            back = r.choice([0, 1, 5, 23, 30, 49, 24 * 3, 24 * 8, 24 * 40, 24 * 400, -2])
            return self.now - timedelta(hours=back, minutes=r.choice([0, 17]))
        raise TypeError(t)


def string_pool(texts: list[str]) -> list[str]:
    found = {m for t in texts for m in re.findall(r'"([^"\\]{0,40})"', t)}
    return sorted(found | {"", "US", "x"})


def write_store(
    root: Path, schema: Schema, fields: tuple[dict[str, str], dict[str, str]], texts: list[str], now: datetime
) -> tuple[Path, Path]:
    """Profiles and events of the appendix schema under ``root``; returns (profiles file, events folder)."""
    rng = random.Random(19)
    values = _Values(rng, string_pool(texts), now.replace(tzinfo=None))
    p_schema = arrow_schema(fields[0], [("profile_id", pa.string())])
    e_schema = arrow_schema(fields[1], [("profile_id", pa.string()), ("_id", pa.string())])
    profiles = []
    for i in range(40):
        row = {f.name: values.of(f.type) for f in p_schema if f.name != "profile_id"}
        profiles.append({"profile_id": f"p{i}", **row})
    events = []
    for i in range(400):
        row = {f.name: values.of(f.type) for f in e_schema if f.name not in ("profile_id", "_id")}
        events.append({"profile_id": f"p{rng.randrange(40)}", "_id": f"e{i}", **row})
    root.mkdir(parents=True, exist_ok=True)
    (root / "events").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(profiles, schema=p_schema), root / "profiles.parquet")
    pq.write_table(pa.Table.from_pylist(events, schema=e_schema), root / "events" / "part-0.parquet")
    return root / "profiles.parquet", root / "events"
