"""What an external audience is: its creation request's validation, its source files in the landing area, and the
errors of ``/external-audience...`` with the contract's codes (aep-api.md §11)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segmentation_pipelines.catalog import models
from segmentation_pipelines.engine import external_ingest as ingest
from segmentation_pipelines.errors import ApiError
from segmentation_pipelines.landing import files_under, resolve_path
from segmentation_pipelines.service.context import ServiceContext

# The contract's error codes (aep-api.md §11).
BAD_REQUEST, NOT_FOUND, DUPLICATE, UNPROCESSABLE = "100910-400", "100940-404", "100950-409", "100960-422"
INTERNAL_ERROR = "100970-500"

MAX_FIELDS = 41
TTL_MIN, TTL_MAX, TTL_DEFAULT = 1, 90, 30
SOURCE_SUFFIXES = {".csv": "csv", ".parquet": "parquet"}
CLOUD_TYPES = ("S3", "DLZ", "GCS", "Azure", "SFTP")
NEEDS_CONNECTION = ("S3", "GCS", "SFTP")
PATCHABLE = ("description", "labels", "fields", "ttlInDays")
NAMESPACE_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def bad(message: str) -> ApiError:
    return ApiError(400, message, code=BAD_REQUEST, title="BAD_REQUEST")


def unprocessable(message: str) -> ApiError:
    return ApiError(422, message, code=UNPROCESSABLE, title="UNPROCESSABLE_ENTITY")


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(
        404, f"{what} '{ident}' was not found in this sandbox.", code=NOT_FOUND, title="NOT_FOUND"
    )


def audience_row(ctx: ServiceContext, session, ident: str, lock: bool = False) -> models.ExternalAudience:
    """The external audience ``ident`` of ``ctx``'s sandbox (404 with the contract's code otherwise)."""
    row = ctx.repo(session, models.ExternalAudience).get(ident, for_update=lock)
    if row is None:
        raise not_found("External audience", ident)
    return row


def epoch_ms(value: Any, where: str) -> int:
    """Epoch seconds (the contract's unit) or milliseconds (values above 10^11) as milliseconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        else:
            raise bad(f"{where}: expected epoch seconds (an integer), got {value!r}.")
    value = int(value)
    return value if abs(value) > 10**11 else value * 1000


def labels(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f'{where}: expected a list of strings (e.g. ["C1"]).')
    return list(value)


def ttl(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not TTL_MIN <= value <= TTL_MAX:
        raise bad(f"ttlInDays: expected an integer from {TTL_MIN} to {TTL_MAX} (got {value!r}).")
    return value


def fingerprint(files: list[Path]) -> str:
    """What identifies a source's content cheaply: each file's path, size and modification time."""
    h = hashlib.sha256()
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def source_files(
    ctx: ServiceContext, doc: Mapping[str, Any], *, confined: bool, required: bool = False
) -> tuple[str, list[Path]]:
    """``(format, files)`` of the audience's source in the landing area (the landing rule of ``landing.py``)."""
    params = doc["sourceSpec"]["params"]
    kind = params.get("type") or "file"
    try:
        path = resolve_path(
            params["path"],
            ctx.landing_dir,
            confined=confined,
            kind=kind,
            what="sourceSpec.params.path",
        )
    except ApiError as exc:  # the landing rule's message, with this API's code
        raise bad(exc.message) from None
    if kind == "file":
        files = [path]
    else:
        files = files_under(path, tuple(SOURCE_SUFFIXES), ctx.landing_dir, confined=confined)
    formats = {SOURCE_SUFFIXES.get(f.suffix.lower()) for f in files}
    if None in formats:
        raise bad(f"sourceSpec.params.path: '{path.name}' is neither a .csv nor a .parquet file.")
    if len(formats) > 1:
        raise bad(
            "sourceSpec.params.path: the folder mixes CSV and Parquet files; use one format per audience."
        )
    if required and not files:
        raise unprocessable(
            f"sourceSpec.params.path: the folder '{params['path']}' has no .csv or .parquet file yet."
        )
    return (formats.pop() if formats else "csv"), files


def validated(body: Any) -> dict:
    """The document of an external-audience creation request (400 naming the field otherwise)."""
    if not isinstance(body, Mapping):
        raise bad("body: expected an external audience object.")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad("name: required (a non-empty string).")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise bad("description: expected a string.")
    custom = body.get("customAudienceId")
    if custom is not None and (not isinstance(custom, str) or not custom.strip()):
        raise bad("customAudienceId: expected a non-empty string.")
    fields = body.get("fields")
    if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_FIELDS:
        raise bad(
            f"fields: expected a list of 1 to {MAX_FIELDS} fields (got {len(fields) if isinstance(fields, list) else type(fields).__name__})."
        )
    clean, names = [], set()
    for i, f in enumerate(fields):
        where = f"fields[{i}]"
        if not isinstance(f, Mapping):
            raise bad(f"{where}: expected {{name, type, identityNs?, labels?}}.")
        fname = f.get("name")
        if not isinstance(fname, str) or not fname.strip():
            raise bad(f"{where}.name: required (a non-empty string).")
        if fname in names:
            raise bad(f"{where}.name: '{fname}' is declared twice.")
        names.add(fname)
        ftype = f.get("type")
        if ftype not in ingest.FIELD_TYPES:
            raise bad(f"{where}.type: '{ftype}' is not one of {', '.join(ingest.FIELD_TYPES)}.")
        item: dict[str, Any] = {
            "name": fname,
            "type": ftype,
            "labels": labels(f.get("labels", []), f"{where}.labels"),
        }
        ns = f.get("identityNs")
        if ns is not None:
            if not isinstance(ns, str) or not NAMESPACE_CODE.match(ns):
                raise bad(f"{where}.identityNs: '{ns}' is not a namespace code (e.g. ECID, Email).")
            item["identityNs"] = ns
        extra = [k for k in f if k not in ("name", "type", "identityNs", "labels")]
        if extra:
            raise bad(f"{where}.{extra[0]}: unknown property.")
        clean.append(item)
    if not any("identityNs" in f for f in clean):
        raise bad('fields: at least one field must be an identity field (with identityNs, e.g. "Email").')
    spec = body.get("sourceSpec")
    params = spec.get("params") if isinstance(spec, Mapping) else None
    if not isinstance(params, Mapping):
        raise bad("sourceSpec.params: required ({path, type: file|folder, ...}).")
    path = params.get("path")
    if not isinstance(path, str) or not path.strip():
        raise bad("sourceSpec.params.path: required.")
    if " " in path:
        raise bad("sourceSpec.params.path: must not contain spaces.")
    kind = params.get("type", "file")
    if kind not in ("file", "folder"):
        raise bad(f"sourceSpec.params.type: '{kind}' is not one of file, folder.")
    cloud = params.get("cloudType", "DLZ")
    if cloud not in CLOUD_TYPES:
        raise bad(f"sourceSpec.params.cloudType: '{cloud}' is not one of {', '.join(CLOUD_TYPES)}.")
    if cloud in NEEDS_CONNECTION and not params.get("baseConnectionId"):
        raise bad(f"sourceSpec.params.baseConnectionId: required for cloudType {cloud}.")
    audience_type = body.get("audienceType", "people")
    if audience_type != "people":
        raise bad(f"audienceType: '{audience_type}' is not supported; only 'people'.")
    origin = body.get("originName")
    if origin != "CUSTOM_UPLOAD":
        raise bad(f"originName: required, and must be 'CUSTOM_UPLOAD' (got {origin!r}).")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad("tags: expected a list of tag ids.")
    doc = {
        "name": name.strip(),
        "description": description,
        "fields": clean,
        "sourceSpec": {"params": {**dict(params), "type": kind, "cloudType": cloud}},
        "ttlInDays": ttl(body.get("ttlInDays", TTL_DEFAULT)),
        "audienceType": audience_type,
        "originName": origin,
        "namespace": body.get("namespace") or "CustomerAudienceUpload",
        "labels": labels(body.get("labels", []), "labels"),
        "tags": list(tags),
    }
    if custom:
        doc["customAudienceId"] = custom.strip()
    known = {
        "name",
        "description",
        "customAudienceId",
        "fields",
        "sourceSpec",
        "ttlInDays",
        "audienceType",
    }
    known |= {"originName", "namespace", "labels", "tags"}
    extra = [k for k in body if k not in known]
    if extra:
        raise bad(f"{extra[0]}: unknown property of an external audience.")
    return doc
