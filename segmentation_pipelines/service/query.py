"""Integer query parameters (``start``, ``limit``, ``page``, ...), parsed one way by every service.

Query values arrive as strings from a URL (or as Python values from the in-process client). A value that is not an
integer, or lies outside the allowed range, is a ``400`` naming the parameter and the range, never a crash further
down: an unbounded ``start`` would overflow SQL ``OFFSET`` (a signed 64-bit integer in SQLite, PostgreSQL and
DuckDB), hence the default upper bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segmentation_pipelines.errors import BadRequest

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
