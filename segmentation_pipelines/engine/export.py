"""Export writer: audience members joined with their merged profiles, streamed to Parquet (or CSV) by DuckDB COPY.

One statement per output batch: the selected rows of the membership files (status and qualification-time
filters), grouped per profile into the platform's ``segmentMembership`` map
``{"ups": {<segmentId>: {status, lastQualificationTime}}}``, joined to ``profiles.parquet`` for the profile fields,
written with ``COPY ... TO`` (streamed: DuckDB never collects the result, memory is bounded by ``memory_limit`` and
spills to ``temp_directory``). A single-segment batch needs no grouping (each member is one row).

Nothing here touches the catalog or publishes anything: the caller writes into a staging folder and renames it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from segmentation_pipelines.duck import connect, sql_str
from segmentation_pipelines.engine.interrupt import run_interruptible
from segmentation_pipelines.engine.memberships import IDENTITY_MAP_TYPE, members_sql
from segmentation_pipelines.engine.model import EvaluationCancelled

MEMBERSHIP_VALUE = "STRUCT(status VARCHAR, lastQualificationTime TIMESTAMP)"
ALWAYS = ("identityMap", "segmentMembership")  # exported whatever ``fields`` says
INTERNAL = ("profile_id",)


class ExportCancelled(Exception):
    """The caller asked to stop; the staging output is incomplete and must be discarded."""


class FieldError(ValueError):
    """A requested field path does not exist in the profiles."""


@dataclass(frozen=True)
class SegmentSource:
    """One segment's published membership file and which of its rows to export."""

    segment_id: str
    path: Path
    statuses: tuple[str, ...] = ("realized", "existing")
    namespace: str = "ups"


@dataclass
class ExportResult:
    rows: int = 0
    by_namespace: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, PostgreSQL type) for a table load


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- field selection -------------------------------------------------------------------------------------------


def profile_columns(con: duckdb.DuckDBPyConnection, profiles_path: Path) -> dict[str, str]:
    """Top-level columns of ``profiles.parquet`` and their DuckDB types."""
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_str(profiles_path)})").fetchall()
    return {r[0]: r[1] for r in rows}


def _struct_fields(con: duckdb.DuckDBPyConnection, sql_type: str) -> dict[str, str] | None:
    """The fields of a STRUCT type (None for any other type), asked of DuckDB itself rather than parsed."""
    if not sql_type.upper().startswith("STRUCT"):
        return None
    rows = con.execute(f"DESCRIBE SELECT s.* FROM (SELECT NULL::{sql_type} AS s)").fetchall()
    return {r[0]: r[1] for r in rows}


def selected(
    con: duckdb.DuckDBPyConnection,
    columns: dict[str, str],
    fields: Sequence[str] | None,
    alias: str = "p",
    skip: Sequence[str] = (*ALWAYS, *INTERNAL),
    what: str = "profile",
) -> list[tuple[str, str]]:
    """``(name, expression)`` over ``alias`` for the requested dot paths: the nested structs rebuilt with only the
    requested leaves, so ``person.name.firstName`` gives ``person: {name: {firstName}}``. All columns if None."""
    attrs = [c for c in columns if c not in skip]
    if fields is None:
        return [(c, f"{alias}.{quote(c)}") for c in attrs]
    tree: dict = {}
    for path in fields:
        parts = [s for s in path.strip().split(".")]
        if not path.strip() or any(not s for s in parts):
            raise FieldError(f"'{path}' is not a dot path such as person.name.firstName")
        if parts[0] in skip:
            continue  # always exported (or never)
        node = tree
        for part in parts[:-1]:
            if node.get(part) is True:
                break
            node = node.setdefault(part, {})
        else:
            node[parts[-1]] = True

    def build(node: dict, sql_type: str, expr: str, where: str) -> str:
        if node is True:
            return expr
        inner = _struct_fields(con, sql_type)
        if inner is None:
            raise FieldError(f"'{where}' is not an object, so it has no field '{next(iter(node))}'")
        parts = []
        for name, child in node.items():
            if name not in inner:
                raise FieldError(
                    f"'{where}.{name}' is not a {what} field (known under {where}: {', '.join(inner)})"
                )
            inner_expr = f"struct_extract({expr}, {sql_str(name)})"
            parts.append(f"{quote(name)} := {build(child, inner[name], inner_expr, f'{where}.{name}')}")
        return f"struct_pack({', '.join(parts)})"

    out = []
    for name, child in tree.items():
        if name not in columns or name in skip:
            known = ", ".join(attrs) or "none"
            raise FieldError(f"'{name}' is not a {what} field (top-level fields: {known})")
        out.append((name, build(child, columns[name], f"{alias}.{quote(name)}", name)))
    return out


def projection(con: duckdb.DuckDBPyConnection, columns: dict[str, str], fields: Sequence[str] | None) -> str:
    """SELECT list over ``p`` (the profiles) for the requested dot paths (see :func:`selected`)."""
    return "".join(f"{expr} AS {quote(name)}, " for name, expr in selected(con, columns, fields))


@dataclass(frozen=True)
class EventsSpec:
    """``additionalFields.eventList``: each exported profile's events (selected fields) in an ``events`` column."""

    relation: (
        str  # SQL relation with profile_id + the event columns (the store's events, or ingested batches)
    )
    fields: tuple[str, ...] | None = None


def events_sql(con: duckdb.DuckDBPyConnection, spec: EventsSpec) -> str:
    """``(profile_id, events)``: the events of each profile as a list of structs, oldest first."""
    described = con.execute(f"DESCRIBE SELECT * FROM {spec.relation}").fetchall()
    columns = {r[0]: r[1] for r in described}
    pairs = selected(con, columns, spec.fields, alias="e", skip=("profile_id",), what="event")
    struct = "struct_pack(" + ", ".join(f"{quote(n)} := {x}" for n, x in pairs) + ")"
    order = " ORDER BY e.timestamp" if "timestamp" in columns else ""
    return (
        f"SELECT e.profile_id, list({struct}{order}) AS events FROM {spec.relation} e GROUP BY e.profile_id"
    )


# --- the statement ---------------------------------------------------------------------------------------------


def _members_sql(
    con: duckdb.DuckDBPyConnection,
    sources: Sequence[SegmentSource],
    window: tuple[dt.datetime | None, dt.datetime | None],
) -> str:
    """Union of the selected rows of every source: (profile_id, segment_id, namespace, status, lqt, identityMap).
    A source's file may be of either membership format (engine/memberships.py: ``members_sql``)."""
    start, end = window
    selects = []
    for s in sources:
        conds = [f"status IN ({', '.join(sql_str(x) for x in s.statuses)})"]
        if start is not None:
            conds.append(f"lastQualificationTime >= {sql_str(start.isoformat(sep=' '))}::TIMESTAMP")
        if end is not None:
            conds.append(f"lastQualificationTime <= {sql_str(end.isoformat(sep=' '))}::TIMESTAMP")
        selects.append(
            f"SELECT profile_id::VARCHAR AS profile_id, {sql_str(s.segment_id)} AS segment_id, "
            f"{sql_str(s.namespace)} AS ns, status, lastQualificationTime AS lqt, "
            f"identityMap::{IDENTITY_MAP_TYPE} AS identityMap "
            f"FROM ({members_sql(con, Path(s.path), extra=False)}) WHERE {' AND '.join(conds)}"
        )
    return " UNION ALL ".join(selects)


def _constant_keys_map(tree: dict) -> str:
    """``segmentMembership`` when its keys are known in advance (the namespace, and the segment for a one-segment
    batch): a STRUCT literal, ``{ns: {segment: entry}}`` or ``{ns: <map expression>}``, cast to the MAP type.
    The cast relabels the struct's fields as map entries; the ``MAP {...}`` constructor builds and checks every
    row's entries and costs about twice the CPU (docs/decisions/exports.md, item 19)."""

    def struct(node) -> str:
        if isinstance(node, str):
            return node
        return "{" + ", ".join(f"{sql_str(k)}: {struct(v)}" for k, v in node.items()) + "}"

    return f"{struct(tree)}::MAP(VARCHAR, MAP(VARCHAR, {MEMBERSHIP_VALUE}))"


def _record_data(columns: dict[str, str]) -> str:
    """True for a profile with record (profile-fragment) attributes; false for one known only from events."""
    attrs = [c for c in columns if c not in (*ALWAYS, *INTERNAL)]
    return "(" + " OR ".join(f"p.{quote(c)} IS NOT NULL" for c in attrs) + ")" if attrs else "false"


def export_sql(
    con: duckdb.DuckDBPyConnection,
    *,
    profiles_path: Path,
    sources: Sequence[SegmentSource],
    fields: Sequence[str] | None = None,
    window: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
    empty_profiles: bool = False,
    profile_ids_path: Path | None = None,
    all_profiles: bool = False,
    events: EventsSpec | None = None,
) -> str:
    """The SELECT whose rows are the batch (with an ``events`` column when ``events`` is given). ``all_profiles``: every profile (no segment filter), with the
    memberships of ``sources`` where it has some. ``profile_ids_path``: Parquet of ``profile_id`` to keep
    (``fromIngestTimestamp``)."""
    query = _export_sql(
        con, profiles_path, sources, fields, window, empty_profiles, profile_ids_path, all_profiles
    )
    if events is None:
        return query
    return (
        f"SELECT x.*, ev.events FROM ({query}) x LEFT JOIN ({events_sql(con, events)}) ev USING (profile_id)"
    )


def _export_sql(
    con, profiles_path, sources, fields, window, empty_profiles, profile_ids_path, all_profiles
) -> str:
    columns = profile_columns(con, profiles_path)
    select = projection(con, columns, fields)
    profiles = f"read_parquet({sql_str(profiles_path)})"
    conds = []
    if not empty_profiles:
        conds.append(_record_data(columns))
    if profile_ids_path is not None:
        conds.append(f"p.profile_id IN (SELECT profile_id FROM read_parquet({sql_str(profile_ids_path)}))")
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    entry = f"{{'status': m.status, 'lastQualificationTime': m.lqt}}::{MEMBERSHIP_VALUE}"
    if not sources:
        memberships = f"NULL::MAP(VARCHAR, MAP(VARCHAR, {MEMBERSHIP_VALUE}))"
        return f"SELECT p.profile_id, {select}p.identityMap, {memberships} AS segmentMembership FROM {profiles} p {where}"
    namespaces = {s.namespace for s in sources}
    if len(sources) == 1 and not all_profiles:
        # One segment: one row per member, the map built in place (no GROUP BY).
        (s,) = sources
        membership = _constant_keys_map({s.namespace: {s.segment_id: entry}})
        return (
            f"SELECT m.profile_id, {select}m.identityMap, {membership} AS segmentMembership "
            f"FROM ({_members_sql(con, sources, window)}) m JOIN {profiles} p ON p.profile_id = m.profile_id {where}"
        )
    # Several segments: one row per profile; segmentMembership groups its entries by namespace, then segment.
    grouped = (
        f"SELECT profile_id, any_value(identityMap) AS identityMap, "
        f"map_from_entries(list({{'key': ns, 'value': seg}})) AS segmentMembership FROM ("
        f"SELECT profile_id, ns, any_value(identityMap) AS identityMap, "
        f"map_from_entries(list({{'key': segment_id, 'value': {entry}}})) AS seg "
        f"FROM ({_members_sql(con, sources, window)}) m GROUP BY profile_id, ns) GROUP BY profile_id"
    )
    if len(namespaces) == 1:
        (ns,) = namespaces
        segments = f"map_from_entries(list({{'key': segment_id, 'value': {entry}}}))"
        grouped = (
            f"SELECT profile_id, any_value(identityMap) AS identityMap, {_constant_keys_map({ns: segments})} "
            f"AS segmentMembership FROM ({_members_sql(con, sources, window)}) m GROUP BY profile_id"
        )
    if all_profiles:
        return (
            f"SELECT p.profile_id, {select}p.identityMap, g.segmentMembership "
            f"FROM {profiles} p LEFT JOIN ({grouped}) g ON g.profile_id = p.profile_id {where}"
        )
    return (
        f"SELECT g.profile_id, {select}g.identityMap, g.segmentMembership "
        f"FROM ({grouped}) g JOIN {profiles} p ON p.profile_id = g.profile_id {where}"
    )


def write_export(
    *,
    profiles_path: Path,
    sources: Sequence[SegmentSource],
    out_dir: Path,
    fields: Sequence[str] | None = None,
    window: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
    empty_profiles: bool = False,
    profile_ids_path: Path | None = None,
    all_profiles: bool = False,
    events: EventsSpec | None = None,
    fmt: str = "parquet",
    memory_limit: str = "2GB",
    temp_directory: Path | None = None,
    should_cancel: Callable[[], bool] | None = None,
    threads: int | None = None,
) -> ExportResult:
    """Write one batch (``part-00000.parquet`` or ``.csv``) under ``out_dir``; its row and namespace counts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"part-00000.{fmt}"
    con = connect(temp_directory, memory_limit, threads)
    cancelled = should_cancel or (lambda: False)

    def run(sql: str):
        if cancelled():
            raise ExportCancelled()
        try:
            return run_interruptible(lambda: con.execute(sql).fetchall(), con.interrupt, cancelled)
        except EvaluationCancelled:
            raise ExportCancelled() from None

    try:
        query = export_sql(
            con,
            profiles_path=profiles_path,
            sources=sources,
            fields=fields,
            window=window,
            empty_profiles=empty_profiles,
            profile_ids_path=profile_ids_path,
            all_profiles=all_profiles,
            events=events,
        )
        parquet = target.with_suffix(".parquet")
        options = "FORMAT parquet, COMPRESSION zstd"
        ((rows,),) = run(f"COPY ({query}) TO {sql_str(parquet)} ({options})")
        by_namespace: dict[str, int] = {}
        if rows:
            for ns, n in run(
                # identityMap has each namespace once per profile: counting its entries counts profiles.
                f"SELECT e.key, count(*) FROM (SELECT unnest(identityMap) AS e FROM read_parquet({sql_str(parquet)})) "
                "GROUP BY ALL"
            ):
                by_namespace[str(ns)] = int(n)
        columns: list[tuple[str, str]] = []
        if fmt == "csv":
            # CSV has no nested types: structs, maps and lists become JSON text.
            described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_str(parquet)})").fetchall()
            from segmentation_pipelines.engine.export_postgres import TYPES

            columns = [(c, TYPES.get(t, "jsonb")) for c, t, *_ in described]
            nested = ("STRUCT", "MAP", "[]")
            select_list = ", ".join(
                f"to_json({quote(c)})::VARCHAR AS {quote(c)}" if any(k in t for k in nested) else quote(c)
                for c, t, *_ in described
            )
            run(
                f"COPY (SELECT {select_list} FROM read_parquet({sql_str(parquet)})) TO {sql_str(target)} "
                "(FORMAT csv, HEADER true)"
            )
            parquet.unlink()
        return ExportResult(rows=int(rows), by_namespace=by_namespace, files=[target], columns=columns)
    finally:
        con.close()
