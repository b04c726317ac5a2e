"""Time, in one place: parsing what users send, the UTC conventions of the store, and the contract's formats.

* Users send times as ISO 8601 text (``Z`` or an offset; naive means UTC), epoch milliseconds (a number, or digits
  in a query parameter), or a ``datetime`` (the Python client).
* Inside, times are aware UTC datetimes; the data files hold naive UTC (``naive_utc``).
* The contract writes epoch milliseconds (``to_ms``) and ISO 8601 UTC with milliseconds and a ``Z`` (``iso``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from segmentation_pipelines.errors import BadRequest


def from_ms(ms: int | float) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(t: datetime) -> int:
    """An aware or naive-UTC datetime as epoch milliseconds."""
    return int(round(utc(t).timestamp() * 1000))


def utc(t: datetime) -> datetime:
    """An aware UTC datetime (naive means UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def naive_utc(t: datetime) -> datetime:
    """A naive UTC datetime: the data files' convention."""
    return utc(t).replace(tzinfo=None)


def iso(t: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a ``Z`` (naive datetimes are UTC)."""
    return None if t is None else utc(t).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds and a ``Z``."""
    return iso(from_ms(ms))


def parse_time(value: Any, where: str = "evaluation_time") -> datetime:
    """A user's time as an aware UTC datetime: a datetime, epoch milliseconds (number or digits), or ISO 8601.

    ``where`` names the field or parameter in the error, e.g. ``"query parameter 'evaluationTime'"``.
    """
    if isinstance(value, datetime):
        return utc(value)
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return from_ms(value)
        if isinstance(value, str):
            text = value.strip()
            if text.lstrip("-").isdigit():
                return from_ms(int(text))
            return utc(datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text))
    except (ValueError, OverflowError, OSError):
        pass
    else:
        raise BadRequest(f"{where}: expected an ISO 8601 date-time string, got {type(value).__name__}.")
    raise BadRequest(
        f"{where}: '{str(value)[:60]}' is not an ISO 8601 date-time (e.g. 2026-01-31T12:00:00Z) "
        "or epoch milliseconds."
    )


def parse_optional_time(value: Any, where: str = "evaluation_time") -> datetime | None:
    """:func:`parse_time`, with ``None`` and ``""`` meaning no time given."""
    return None if value is None or value == "" else parse_time(value, where)
