"""The query-parameter grammar of every list route, and the body of every bulk-get: parsed one way by all services.

* integers (``start``, ``limit``, ``page``): a value that is not an integer, or lies outside the allowed range, is a
  ``400`` naming the parameter and the range, never a crash further down (an unbounded ``start`` would overflow SQL
  ``OFFSET``, a signed 64-bit integer in SQLite, PostgreSQL and DuckDB, hence the default upper bound);
* ``sort=<attribute>:asc|desc[,<attribute>:asc|desc...]`` over the attributes a route allows (:func:`parse_sort`);
* ``property=<jsonPath>==<value>``, ``<jsonPath>!=<value>`` or ``<arrayAttribute>~<key>==<value>`` (some element of
  the array has ``key == value``), repeatable, all must hold (:func:`property_filter`), as the contract writes them;
* booleans (``true``/``false``) and repeatable parameters (:func:`values_of`);
* bulk-get bodies ``{"ids": [{"id": ...}, ...]}``, 1 to 100 ids (:func:`parse_bulk_ids`), answered by
  :func:`bulk_results`.

Query values arrive as strings from a URL (or as Python values from the in-process client).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from segmentation_pipelines.errors import ApiError, BadRequest, error_body

# The largest offset or count a service accepts: fits a SQL BIGINT and is exact as a JSON number.
MAX_INT = 2**53


def parse_int(value: Any, name: str, default: int, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """``value`` (one query parameter's value) as an integer in ``[minimum, maximum]``; ``default`` when absent."""
    if isinstance(value, list | tuple):
        if len(value) > 1:
            raise BadRequest(f"query parameter '{name}': given {len(value)} times; give it once.")
        value = value[0] if value else None
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise BadRequest(f"query parameter '{name}': {value!r} is not an integer.")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BadRequest(f"query parameter '{name}': {str(value)[:40]!r} is not an integer.") from None
    if not minimum <= number <= maximum:
        raise BadRequest(
            f"query parameter '{name}': {_short(number)} is out of range; allowed: {minimum} to {maximum}."
        )
    return number


def int_param(
    query: Mapping[str, Any], name: str, default: int, minimum: int = 0, maximum: int = MAX_INT
) -> int:
    """The integer query parameter ``name`` of ``query`` (see :func:`parse_int`)."""
    return parse_int(query.get(name), name, default, minimum, maximum)


def _short(number: int) -> str:
    text = str(number)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"


def values_of(value: Any) -> list[str]:
    """A query parameter that may repeat (``property=a==1&property=b==2``) as a list."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BadRequest(f"query parameter '{name}': '{value}' is not true or false.")


def status_filter(value: Any, statuses: tuple[str, ...]) -> list[str]:
    """``status=A,B`` (case-insensitive) as the statuses it names; a ``400`` naming an unknown one."""
    wanted = [s.strip().upper() for s in str(value).split(",") if s.strip()]
    unknown = [s for s in wanted if s not in statuses]
    if unknown:
        raise BadRequest(f"status: '{unknown[0]}' is not one of {', '.join(statuses)}.")
    return wanted


# --- sort --------------------------------------------------------------------------------------------------------


def parse_sort(
    text: Any, fields: Mapping[str, str] | frozenset[str] | set[str], default: str = "creationTime:desc"
) -> list[tuple[str, bool]]:
    """``sort=name:asc,updateTime:desc`` -> ``[(field, descending)]``; ``fields`` names the sortable attributes
    (a mapping renames an attribute to the document field it sorts by)."""
    names = fields if isinstance(fields, Mapping) else {f: f for f in fields}
    out: list[tuple[str, bool]] = []
    for item in str(text if isinstance(text, str) and text else default).split(","):
        item = item.strip()
        if not item:
            continue
        name, _, direction = item.partition(":")
        if name not in names:
            raise BadRequest(
                f"query parameter 'sort': cannot sort by '{name}'; use one of {', '.join(sorted(names))} "
                "with ':asc' or ':desc'."
            )
        direction = (direction or "asc").lower()
        if direction not in ("asc", "desc"):
            raise BadRequest(f"query parameter 'sort': direction '{direction}' must be 'asc' or 'desc'.")
        out.append((names[name], direction == "desc"))
    return out or parse_sort(default, names)


def sort_text(order: list[tuple[str, bool]]) -> str:
    """The ``sort`` parameter that gives ``order`` (for next-page links)."""
    return ",".join(f"{name}:{'desc' if descending else 'asc'}" for name, descending in order)


def sort_docs(docs: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """Stable multi-key sort, ties broken by id; absent values first, text case-insensitively."""
    docs = sorted(docs, key=lambda d: str(d.get("id")))
    for name, descending in reversed(order):
        docs.sort(key=lambda d, f=name: _sort_key(d.get(f)), reverse=descending)
    return docs


def _sort_key(value: Any) -> tuple[int, Any]:
    # Absent values first; numbers and text never compare with each other.
    if value is None:
        return (0, "")
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value).lower())


def page_info(total: int, page_size: int, limit: int, order: list[tuple[str, bool]]) -> dict[str, Any]:
    """The paging block of a sorted list response (``totalCount`` ... ``limit``), sorted by ``order[0]``."""
    name, descending = order[0]
    return {
        "totalCount": total,
        "totalPages": math.ceil(total / limit) if total else 0,
        "sortField": name,
        "sort": "desc" if descending else "asc",
        "pageSize": page_size,
        "limit": limit,
    }


# --- property filters --------------------------------------------------------------------------------------------

_PROPERTY = re.compile(r"^(?P<path>[^=!~]+?)(?:~(?P<key>[^=!~]+?))?(?P<op>==|!=)(?P<value>.*)$", re.S)


def json_path_get(doc: Any, path: str) -> Any:
    """``a.b.c`` of a document (``None`` where any part is missing)."""
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return None
        doc = doc[part]
    return doc


def property_filter(expression: str) -> Callable[[Mapping[str, Any]], bool]:
    """The test of one ``property`` parameter: ``<jsonPath>==<value>`` (or ``!=``), or ``<arrayAttribute>~<key>==
    <value>`` (or ``!=``: no element has it). Values compare as text; booleans as ``true``/``false``; objects and
    arrays as their JSON."""
    match = _PROPERTY.match(str(expression))
    if match is None:
        raise BadRequest(
            f"query parameter 'property': '{expression}' must read '<jsonPath>==<value>' (or '!='), or "
            "'<arrayAttribute>~<key>==<value>'."
        )
    path, key, expected = match["path"].strip(), match["key"], match["value"].strip()
    negate = match["op"] == "!="

    def equal(value: Any) -> bool:
        if value is None:
            return False
        if isinstance(value, bool):
            return ("true" if value else "false") == expected.lower()
        if isinstance(value, dict | list):
            return json.dumps(value) == expected
        return str(value) == expected

    if key is None:
        return lambda doc: equal(json_path_get(doc, path)) != negate
    key = key.strip()

    def some_element(doc: Mapping[str, Any]) -> bool:
        items = json_path_get(doc, path)
        items = items if isinstance(items, list) else []
        return any(isinstance(i, Mapping) and equal(json_path_get(i, key)) for i in items) != negate

    return some_element


def property_filters(value: Any) -> list[Callable[[Mapping[str, Any]], bool]]:
    """Every ``property`` parameter's test (the parameter may repeat: all must hold)."""
    return [property_filter(e) for e in values_of(value)]


# --- bulk get ----------------------------------------------------------------------------------------------------

MAX_BULK_IDS = 100
BULK_IDS_CODE = "UPAPI-113015-400"  # the contract's: bulk-get id count invalid
BULK_NONE_FOUND_CODE = "UPAPI-113000-404"  # the contract's: entities not found


def parse_bulk_ids(body: Any) -> list[str]:
    """The ids of a bulk-get body ``{"ids": [{"id": "..."}, ...]}``: 1 to ``MAX_BULK_IDS`` of them (the contract's
    ``UPAPI-113015-400`` otherwise)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("ids"), list):
        raise BadRequest('body: expected {"ids": [{"id": "..."}, ...]}.')
    ids: list[str] = []
    for i, item in enumerate(body["ids"]):
        ident = item.get("id") if isinstance(item, Mapping) else item
        if not isinstance(ident, str) or not ident:
            raise BadRequest(f"field 'ids[{i}].id': expected a non-empty string.")
        ids.append(ident)
    if not ids or len(ids) > MAX_BULK_IDS:
        raise ApiError(
            400,
            f"The number of requested IDs is invalid. Cannot be 0 or exceed {MAX_BULK_IDS} (got {len(ids)}).",
            code=BULK_IDS_CODE,
        )
    return ids


def bulk_results(
    ids: list[str], found: Mapping[str, Any], what: str, request_id: str | None = None
) -> dict[str, Any]:
    """A bulk-get's answer: each id's document, or the error its GET would answer (the AEP error body); a ``404``
    (``UPAPI-113000-404``) when none of the ids exists."""
    if not any(i in found for i in ids):
        raise ApiError(404, f"The entity {','.join(ids)} is not found.", code=BULK_NONE_FOUND_CODE)
    missing = {
        i: error_body(404, f"{what} '{i}' was not found.", title="Not Found", request_id=request_id)
        for i in ids
        if i not in found
    }
    return {"results": {i: found[i] if i in found else missing[i] for i in ids}}
