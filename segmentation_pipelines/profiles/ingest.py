"""Reading a batch of Parquet / JSON Lines files in XDM shape into a dataset: typing, validation, rejects.

Every input row either lands in the batch's ``part-*.parquet`` files, typed with the dataset's column types, or
in ``rejects.jsonl`` with the reasons it was refused (not a JSON object, bad type at a named field, missing
``identityMap``, event without a readable ``timestamp``). Nothing is dropped silently. The work is SQL in DuckDB:
JSON lines are read as text, parsed, cast field by field (``TRY_CAST``), and every field path whose value was
present but did not survive the cast becomes a reason.

Event ``timestamp``: an ISO 8601 string (with or without an offset) or epoch milliseconds, stored as a naive UTC
``TIMESTAMP``. Identity maps are stored as ``LIST(STRUCT(key, value))`` (``docs/data-model.md``).
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from segmentation_pipelines import duck
from segmentation_pipelines.duck import sql_str
from segmentation_pipelines.errors import BadRequest
from segmentation_pipelines.profiles.schema import (
    IDENTITY_MAP,
    Tree,
    apply_known_types,
    dotted,
    duck_type,
    from_arrow,
    from_json_structure,
    merge_columns,
    quote,
)
from segmentation_pipelines.profiles.xdm import EVENT_CLASS, IDENTITY_MAP_TYPE

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass
class IngestResult:
    rows: int = 0
    rejected: int = 0
    columns: dict[str, Tree] = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)


def file_format(path: Path, shown: str | None = None) -> str:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSON_SUFFIXES):
        return "jsonl"
    raise BadRequest(
        f"File '{shown or path.name}': unsupported format; expected Parquet (.parquet) or JSON Lines (.json, .jsonl)."
    )


# ---------------------------------------------------------------- lines DuckDB cannot read


def _bad_key(value) -> bool:
    """A field name a JSON path cannot name (a quote, a backslash or a control character in it)."""
    if isinstance(value, dict):
        return any(
            any(c in k for c in '"\\') or any(ord(c) < 32 for c in k) or _bad_key(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_bad_key(v) for v in value)
    return False


def _line_problem(line: bytes) -> tuple[str | None, str]:
    """Why DuckDB could not take this JSON line (None when it can), and the line as text for the rejects file."""
    if b"\x00" in line:
        return "line contains a NUL byte", line.replace(b"\x00", b"").decode("utf-8", "replace")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"line is not valid UTF-8 (byte {err.start + 1})", line.decode("utf-8", "replace")
    if "\\" in text:  # only such lines can hold a key with a quote or a control character: parse just these
        try:
            if _bad_key(json.loads(text)):
                return "a field name contains a quote, a backslash or a control character", text
        except ValueError:
            pass  # not JSON: DuckDB rejects it as 'not a JSON object'
    return None, text


def screen_jsonl(path: Path, work_dir: Path) -> tuple[Path, list[dict]]:
    """The JSON Lines file DuckDB should read, and the rejects of the lines it could not (with their line
    numbers). A file without such lines is read as it is; otherwise a copy is, with each bad line blanked so that
    the line numbers stay the same (blank lines are skipped)."""
    rejects: list[dict] = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            problem, text = _line_problem(line.rstrip(b"\r\n"))
            if problem:
                rejects.append(
                    {"file": path.name, "line": number, "reasons": [problem], "record": text[:10000]}
                )
    if not rejects:
        return path, []
    copy_dir = work_dir / f"screened-{uuid.uuid4().hex}"
    copy_dir.mkdir(parents=True)
    clean = copy_dir / path.name
    bad = {r["line"] for r in rejects}
    with open(path, "rb") as src, open(clean, "wb") as out:
        for number, line in enumerate(src, start=1):
            out.write(b"\n" if number in bad else line)
    return clean, rejects


def _merge_rejects(engine_rejects: Path, screened: list[dict]) -> int:
    """Merge the screened lines' rejects into the engine's rejects file of the same input, in line order."""
    if not screened:
        return 0
    rows = []
    if engine_rejects.exists():
        with open(engine_rejects) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    rows = sorted(rows + screened, key=lambda r: r["line"])
    with open(engine_rejects, "w") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(screened)


# ---------------------------------------------------------------- inferring column types


def _jsonl_source(path: Path) -> str:
    """Lines of a JSON Lines file as text with their line number (a NUL delimiter keeps each line whole)."""
    return (
        f"(SELECT row_number() OVER () AS _line, line FROM read_csv({sql_str(str(path))}, "
        "columns={'line': 'VARCHAR'}, delim=chr(0), quote='', escape='', header=false, auto_detect=false))"
    )


def _resolve_conflicts(con, source: str, tree: Tree, path: tuple[str, ...]) -> Tree:
    """A field whose rows disagree on the JSON type takes the most common type; the other rows are rejected."""
    if isinstance(tree, dict):
        return {k: _resolve_conflicts(con, source, v, (*path, k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_resolve_conflicts(con, source, tree[0], (*path, "[]"))] if "[]" not in path else tree
    if tree != "JSON":
        return tree
    if "[]" in path:
        return "VARCHAR"
    jpath = "$." + ".".join(f'"{p}"' for p in path)
    row = con.execute(
        f"SELECT json_type(line::JSON, {sql_str(jpath)}) AS t, count(*) AS n FROM {source} "
        f"WHERE json_valid(line) AND json_type(line::JSON, {sql_str(jpath)}) NOT IN ('NULL', 'OBJECT', 'ARRAY') "
        "GROUP BY t ORDER BY n DESC, t LIMIT 1"
    ).fetchone()
    return from_json_structure(row[0]) if row else "VARCHAR"


def infer_columns(con, path: Path) -> dict[str, Tree]:
    """Column type trees of one input file."""
    if file_format(path) == "parquet":
        schema = pq.read_schema(path)
        return {f.name: from_arrow(f.type, f.name) for f in schema}
    source = _jsonl_source(path)
    row = con.execute(
        f"SELECT json_group_structure(line::JSON) FROM {source} "
        "WHERE json_valid(line) AND json_type(line::JSON) = 'OBJECT'"
    ).fetchone()
    structure = json.loads(row[0]) if row and row[0] else {}
    columns = {k: from_json_structure(v, (k,)) for k, v in structure.items()}
    return {k: _resolve_conflicts(con, source, v, (k,)) for k, v in columns.items()}


def target_columns(
    existing: dict[str, Tree], inferred: list[dict[str, Tree]], xdm_class: str
) -> dict[str, Tree]:
    """Dataset types win over what a new batch suggests; well-known XDM fields keep their XDM type."""
    columns = apply_known_types(merge_columns(existing, *inferred))
    columns["identityMap"] = IDENTITY_MAP
    columns["_id"] = "VARCHAR"
    if xdm_class == EVENT_CLASS:
        columns["timestamp"] = "TIMESTAMP"
    return columns


# ---------------------------------------------------------------- per-file conversion


def _field(expr: str, path: tuple[str, ...]) -> str:
    for part in path:
        expr = f"struct_extract({expr}, {sql_str(part)})"
    return expr


def _json_path(path: tuple[str, ...]) -> str:
    out = "$"
    for part in path:
        out += "[*]" if part == "[]" else f'."{part}"'
    return out


def _count_present(json_expr: str, jpath: str) -> str:
    return f"len(list_filter(json_extract({json_expr}, {sql_str(jpath)}), lambda x: json_type(x) <> 'NULL'))"


def _intersect(target: Tree, source: Tree) -> Tree:
    """The paths of ``target`` that a (Parquet) ``source`` has; a shape mismatch becomes a ``("LEAF", type)``."""
    if isinstance(target, dict) and isinstance(source, dict):
        return {k: _intersect(v, source[k]) for k, v in target.items() if k in source}
    if isinstance(target, list) and isinstance(source, list):
        return [_intersect(target[0], source[0])]
    if isinstance(target, dict | list) or isinstance(source, dict | list):
        return ("LEAF", target)
    return target


def _type_checks(name: str, tree: Tree, src: str, dst: str, json_src: bool) -> list[str]:
    """CASE expressions giving a reason for every field path of column ``name`` whose value did not cast."""
    checks: list[str] = []

    def present(path: tuple[str, ...]) -> str:
        if json_src:
            return f"coalesce(json_type({src}, {sql_str(_json_path(path))}) <> 'NULL', false)"
        return f"({_field(src, path)} IS NOT NULL)"

    def walk(t: Tree, path: tuple[str, ...]) -> None:
        label = dotted((name, *path))
        if isinstance(t, tuple):  # the source has another shape here: the whole value must survive the cast
            t = t[1]
            if "[]" not in path:
                checks.append(
                    f"CASE WHEN {present(path)} AND {_field(dst, path)} IS NULL "
                    f"THEN {sql_str(f'{label}: expected {type_name(t)}')} END"
                )
                return
        if "[]" in path:
            if isinstance(t, dict | list):
                for k, v in t.items() if isinstance(t, dict) else [("[]", t[0])]:
                    walk(v, (*path, k))
                return
            src_json = src if json_src else f"to_json({src})"
            jp = _json_path(path)
            checks.append(
                f"CASE WHEN {_count_present(src_json, jp)} <> {_count_present(f'to_json({dst})', jp)} "
                f"THEN {sql_str(f'{label}: expected {type_name(t)}')} END"
            )
            return
        if isinstance(t, dict):
            if json_src and path:
                checks.append(
                    f"CASE WHEN json_type({src}, {sql_str(_json_path(path))}) NOT IN ('OBJECT', 'NULL') "
                    f"THEN {sql_str(f'{label}: expected object')} END"
                )
            for k, v in t.items():
                walk(v, (*path, k))
            return
        if isinstance(t, list):
            if json_src:
                checks.append(
                    f"CASE WHEN json_type({src}, {sql_str(_json_path(path))}) NOT IN ('ARRAY', 'NULL') "
                    f"THEN {sql_str(f'{label}: expected array')} END"
                )
            walk(t[0], (*path, "[]"))
            return
        checks.append(
            f"CASE WHEN {present(path)} AND {_field(dst, path)} IS NULL "
            f"THEN {sql_str(f'{label}: expected {type_name(t)}')} END"
        )

    if json_src:
        top = f"coalesce(json_type({src}) <> 'NULL', false)"
        checks.append(
            f"CASE WHEN {top} AND {dst} IS NULL THEN {sql_str(f'{name}: expected {type_name(tree)}')} END"
        )
    walk(tree, ())
    return checks


def type_name(tree: Tree) -> str:
    if isinstance(tree, dict):
        return "object"
    if isinstance(tree, list):
        return "array"
    return {
        "VARCHAR": "string",
        "BIGINT": "integer",
        "DOUBLE": "number",
        "BOOLEAN": "boolean",
        "DATE": "date (YYYY-MM-DD)",
        "TIMESTAMP": "date-time (ISO 8601)",
    }.get(tree, tree)


def _normalize_identity_map(expr: str) -> str:
    """Drop identities without an id and namespaces without identities."""
    return (
        f"list_filter(list_transform(CAST({expr} AS {IDENTITY_MAP_TYPE}), lambda e: {{'key': e.key, 'value': "
        "list_filter(e.value, lambda v: v.id IS NOT NULL AND v.id <> '')}), lambda e: len(e.value) > 0)"
    )


def _timestamp_from_json(src: str) -> str:
    return (
        f"CASE WHEN json_type({src}) IN ('UBIGINT', 'BIGINT', 'DOUBLE') "
        f"THEN TRY(make_timestamp(CAST(CAST({src} AS DOUBLE) * 1000 AS BIGINT))) "
        f"WHEN json_type({src}) = 'VARCHAR' THEN CAST(TRY_CAST({src} ->> '$' AS TIMESTAMPTZ) AS TIMESTAMP) END"
    )


def _timestamp_from_arrow(src: str, t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return f"TRY(make_timestamp(CAST({src} * 1000 AS BIGINT)))"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return f"CAST(TRY_CAST({src} AS TIMESTAMPTZ) AS TIMESTAMP)"
    return f"TRY_CAST({src} AS TIMESTAMP)"


def _identity_map_from_arrow(src: str, t: pa.DataType) -> str:
    if pa.types.is_map(t):
        return _normalize_identity_map(f"map_entries({src})")
    if pa.types.is_struct(t):
        entries = ", ".join(
            f"{{'key': {sql_str(t.field(i).name)}, 'value': {_field(src, (t.field(i).name,))}}}"
            for i in range(t.num_fields)
        )
        return _normalize_identity_map(f"list_filter([{entries}], lambda e: e.value IS NOT NULL)")
    return _normalize_identity_map(f"TRY_CAST({src} AS {IDENTITY_MAP_TYPE})")


def _cast(src: str, tree: Tree, json_src: bool = False) -> str:
    if json_src and tree == "VARCHAR":
        return f"({src} ->> '$')"  # a JSON string cast to VARCHAR would keep its quotes
    tz_type, plain = duck_type(tree, tz=True), duck_type(tree)
    expr = f"TRY_CAST({src} AS {tz_type})"
    return expr if tz_type == plain else f"CAST({expr} AS {plain})"


def _convert_file(con, path: Path, columns: dict[str, Tree], xdm_class: str, out: Path, rejects: Path):
    """Write the accepted rows of one file to ``out`` and its rejects to ``rejects``; return the counts."""
    is_event = xdm_class == EVENT_CLASS
    json_src = file_format(path) == "jsonl"
    file_label = sql_str(path.name)
    if json_src:
        source = f"(SELECT _line, line, CASE WHEN json_valid(line) THEN line::JSON END AS j FROM {_jsonl_source(path)})"
        present = None
    else:
        source = f"(SELECT * FROM read_parquet({sql_str(str(path))}, file_row_number=true))"
        present = {f.name: f.type for f in pq.read_schema(path)}

    src_cols, dst_cols, reasons = [], [], []
    # A line that is not a JSON object gets that one reason, not one per missing field.
    not_object = (
        "CASE WHEN j IS NULL OR json_type(j) <> 'OBJECT' THEN ['not a JSON object'] ELSE" if json_src else ""
    )
    for i, (name, tree) in enumerate(columns.items()):
        s, d = f"s{i}", quote(name)
        if json_src:
            src_cols.append(f"json_extract(j, {sql_str(_json_path((name,)))}) AS {s}")
        elif name in present:
            src_cols.append(f"{quote(name)} AS {s}")
        else:
            src_cols.append(f"NULL AS {s}")
        if name == "identityMap":
            conv = (
                _normalize_identity_map(
                    f'map_entries(TRY_CAST({s} AS MAP(VARCHAR, STRUCT(id VARCHAR, "primary" BOOLEAN)[])))'
                )
                if json_src
                else (_identity_map_from_arrow(s, present[name]) if name in present else "NULL")
            )
            dst_cols.append(f"{conv} AS {d}")
            reasons.append(
                f"CASE WHEN coalesce(len({d}), 0) = 0 THEN 'identityMap: missing or without any identity' END"
            )
        elif name == "timestamp" and is_event:
            if json_src:
                conv = _timestamp_from_json(s)
            else:
                conv = _timestamp_from_arrow(s, present[name]) if name in present else "NULL::TIMESTAMP"
            dst_cols.append(f"{conv} AS {d}")
            missing = f"{s} IS NULL OR json_type({s}) = 'NULL'" if json_src else f"{s} IS NULL"
            reasons.append(
                f"CASE WHEN {missing} THEN 'timestamp: missing' "
                f"WHEN {d} IS NULL THEN 'timestamp: not an ISO 8601 date-time or epoch milliseconds' END"
            )
        elif name == "_id":
            row_id = f"md5({file_label} || ':' || {'_line' if json_src else 'file_row_number'})"
            base = f"{s} ->> '$'" if json_src else f"CAST({s} AS VARCHAR)"
            dst_cols.append(f"coalesce({base}, {row_id}) AS {d}")
        else:
            if not json_src and name not in present:
                continue
            passthrough = not json_src and from_arrow(present[name], name) == tree
            dst_cols.append(f"{s if passthrough else _cast(s, tree, json_src)} AS {d}")
            if not passthrough:
                checked = tree if json_src else _intersect(tree, from_arrow(present[name], name))
                reasons.extend(_type_checks(name, checked, s, d, json_src))
    keep = "_line" if json_src else "file_row_number"
    staged = (
        f"SELECT *, {not_object} list_filter([{', '.join(reasons) or 'NULL'}]::VARCHAR[], lambda r: r IS NOT NULL) "
        f"{'END' if json_src else ''} AS _reasons FROM "
        f"(SELECT {keep}, {'line, j, ' if json_src else ''}{', '.join(src_cols)}, {', '.join(dst_cols)} FROM {source})"
    )
    if json_src:
        staged = f"SELECT * FROM ({staged}) WHERE line IS NOT NULL AND trim(line) <> ''"
    out_names = ", ".join(
        quote(n)
        for n in columns
        if not (not json_src and n not in present and n not in ("identityMap", "_id", "timestamp"))
    )
    accepted = con.execute(
        f"COPY (SELECT {out_names} FROM ({staged}) WHERE len(_reasons) = 0) TO {sql_str(str(out))} "
        "(FORMAT PARQUET, COMPRESSION ZSTD)"
    ).fetchone()[0]
    if json_src:
        record = "line"
    else:
        record = (
            "to_json({"
            + ", ".join(f"{sql_str(n)}: s{i}" for i, n in enumerate(columns) if n in present)
            + "})"
        )
    rejected = con.execute(
        f"COPY (SELECT {file_label} AS file, {keep} + {0 if json_src else 1} AS line, _reasons AS reasons, "
        f"{record} AS record FROM ({staged}) WHERE len(_reasons) > 0 ORDER BY line) TO {sql_str(str(rejects))} "
        "(FORMAT JSON)"
    ).fetchone()[0]
    return int(accepted), int(rejected)


def ingest_files(
    paths: list[Path],
    xdm_class: str,
    batch_dir: Path,
    existing: dict[str, Tree],
    temp_dir: Path | None = None,
) -> IngestResult:
    """Ingest ``paths`` into the (not yet published) folder ``batch_dir``."""
    batch_dir.mkdir(parents=True, exist_ok=True)
    con = duck.connect(temp_dir)
    work = Path(temp_dir or batch_dir.parent) / f"ingest-{uuid.uuid4().hex}"
    try:
        screened = [screen_jsonl(p, work) if file_format(p) == "jsonl" else (p, []) for p in paths]
        originals, paths = paths, [read for read, _ in screened]
        inferred = [infer_columns(con, p) for p in paths]
        columns = target_columns(existing, inferred, xdm_class)
        result = IngestResult()
        for i, path in enumerate(paths):
            # Each file writes only the columns it has; readers union the parts by name.
            file_columns = {
                k: v
                for k, v in columns.items()
                if k in inferred[i] or k in ("identityMap", "_id", "timestamp")
            }
            if xdm_class != EVENT_CLASS and "timestamp" not in inferred[i]:
                file_columns.pop("timestamp", None)
            part = batch_dir / f"part-{i:05d}.parquet"
            rejects = batch_dir / f".rejects-{i:05d}.jsonl"
            accepted, rejected = _convert_file(con, path, file_columns, xdm_class, part, rejects)
            rejected += _merge_rejects(rejects, screened[i][1])
            if accepted == 0:
                part.unlink(missing_ok=True)
            result.rows += accepted
            result.rejected += rejected
            result.files.append({"path": str(originals[i]), "rows": accepted, "rejected": rejected})
        with open(batch_dir / "rejects.jsonl", "wb") as out:
            for i in range(len(paths)):
                part = batch_dir / f".rejects-{i:05d}.jsonl"
                if part.exists():
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out)
                    part.unlink()
        used = set()
        for cols in inferred:
            used.update(cols)
        used.update({"identityMap", "_id"} | ({"timestamp"} if xdm_class == EVENT_CLASS else set()))
        result.columns = {k: v for k, v in columns.items() if k in used}
        return result
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)
