"""Quartz cron (the contract's schedule format) -> the 5-field cron Dagster runs.

Quartz: ``sec min hour day-of-month month day-of-week [year]`` with day-of-week ``1=SUN..7=SAT``, ``?``, ``L``,
``W``, ``#`` and names. Dagster (croniter underneath): ``min hour day-of-month month day-of-week`` with
day-of-week ``0=SUN..6=SAT``, ``L`` in day-of-month, ``L<d>`` (last weekday d of the month) and ``d#n``.

Every expression is either converted to one Dagster runs with the same fire times, or refused with a
:class:`QuartzError` naming the field and the reason; nothing is silently changed. The contract's rule that a
schedule fires at most once per 24 hours is checked on the converted cron with croniter, in the schedule's own
wall-clock time (so a daily schedule stays valid across DST changes).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

from croniter import CroniterBadDateError, croniter

FIELD_NAMES = ("seconds", "minutes", "hours", "day-of-month", "month", "day-of-week", "year")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # Quartz numbers them 1..7

# Quartz bounds and the names each field accepts (name -> Quartz number).
BOUNDS = {
    "minutes": (0, 59),
    "hours": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (1, 7),
}
NAMES = {
    "month": {name: i + 1 for i, name in enumerate(MONTHS)},
    "day-of-week": {name: i + 1 for i, name in enumerate(DAYS)},
}

DEFAULT_TIMEZONE = "UTC"
MIN_GAP = dt.timedelta(hours=24)
# Fixed start for the frequency check (a leap year, so "29 FEB" fires), horizon a little over a year.
CHECK_START = dt.datetime(2024, 1, 1)
CHECK_HORIZON = dt.timedelta(days=400)

_ITEM = re.compile(r"^(?P<range>\*|[A-Z0-9]+(?:-[A-Z0-9]+)?)(?:/(?P<step>[0-9]+))?$")


class QuartzError(ValueError):
    """A Quartz expression that is malformed or cannot be run faithfully by Dagster."""

    def __init__(self, message: str, field: str | None = None, value: str | None = None):
        self.field = field
        self.value = value
        self.reason = message
        where = f"{field} field '{value}': " if field else ""
        super().__init__(f"{where}{message}")


@dataclass(frozen=True)
class ConvertedCron:
    """A schedule's cron as the user wrote it and as Dagster runs it."""

    quartz: str
    cron: str
    timezone: str


def validate_timezone(name: str | None) -> str:
    """The IANA time zone name, checked; ``UTC`` when none is given."""
    if name is None or name == "":
        return DEFAULT_TIMEZONE
    if not isinstance(name, str):
        raise QuartzError(f"time zone must be a string such as 'Europe/Berlin' (got {name!r}).")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise QuartzError(
            f"unknown time zone '{name}': use an IANA name such as 'UTC' or 'Europe/Berlin'."
        ) from None
    return name


def convert(expression: str, timezone: str | None = None) -> ConvertedCron:
    """Convert a Quartz expression to Dagster's 5-field cron, or raise :class:`QuartzError`."""
    if not isinstance(expression, str) or not expression.strip():
        raise QuartzError(
            "a schedule is a Quartz cron expression such as '0 0 1 * * ?' (got an empty value)."
        )
    tz = validate_timezone(timezone)
    parts = expression.split()
    if len(parts) not in (6, 7):
        raise QuartzError(
            f"a Quartz cron expression has 6 or 7 fields (seconds minutes hours day-of-month month day-of-week "
            f"[year]); '{expression}' has {len(parts)}."
        )
    fields = dict(zip(FIELD_NAMES, (p.upper() for p in parts), strict=False))
    _check_seconds(fields["seconds"])
    if "year" in fields:
        _check_year(fields["year"])
    dom, dow = fields["day-of-month"], fields["day-of-week"]
    _check_day_pair(dom, dow)
    cron = " ".join(
        (
            _convert_plain("minutes", fields["minutes"]),
            _convert_plain("hours", fields["hours"]),
            _convert_day_of_month(dom),
            _convert_plain("month", fields["month"]),
            _convert_day_of_week(dow),
        )
    )
    if not croniter.is_valid(cron):  # a guard: the rules above should only produce valid crons
        raise QuartzError(f"converts to '{cron}', which the cron library does not accept.")
    check_at_most_daily(cron, originals={"minutes": fields["minutes"], "hours": fields["hours"]})
    return ConvertedCron(quartz=expression, cron=cron, timezone=tz)


def check_at_most_daily(cron: str, originals: dict[str, str] | None = None) -> None:
    """Refuse a 5-field cron that fires more than once per 24 hours (or never), naming the offending field.

    ``originals`` maps a field name to the value the user wrote, for the message.
    """
    minutes, hours = croniter(cron).expanded[:2]
    for name, values in (("minutes", minutes), ("hours", hours)):
        if values == ["*"] or len(values) > 1:
            raise QuartzError(
                f"this field selects several {name}, so the schedule would fire more than once a day; a schedule "
                "fires at most once per 24 hours (give a single value).",
                field=name,
                value=(originals or {}).get(name) or cron.split()[("minutes", "hours").index(name)],
            )
    # The analytic check above is exact for wall-clock time; croniter confirms it over a year of fires and finds
    # expressions that never fire (e.g. 30 FEB).
    it = croniter(cron, CHECK_START)
    try:
        previous = it.get_next(dt.datetime)
    except CroniterBadDateError:
        raise QuartzError(f"'{cron}' never fires (no date matches the day and month fields).") from None
    while previous < CHECK_START + CHECK_HORIZON:
        current = it.get_next(dt.datetime)
        if current - previous < MIN_GAP:
            raise QuartzError(
                f"fires more than once per 24 hours ({previous:%Y-%m-%d %H:%M} and {current:%Y-%m-%d %H:%M}); "
                "a schedule fires at most once per 24 hours."
            )
        previous = current


def _check_seconds(value: str) -> None:
    if not value.isdigit() or int(value) != 0:
        raise QuartzError(
            "Dagster schedules fire on whole minutes, so the seconds field must be 0.",
            field="seconds",
            value=value,
        )


def _check_year(value: str) -> None:
    if value != "*":
        raise QuartzError(
            "Dagster schedules have no year field; only '*' (or leaving the year out) can be run faithfully.",
            field="year",
            value=value,
        )


def _check_day_pair(dom: str, dow: str) -> None:
    """Quartz needs '?' in one of the two day fields; both restricted would be OR-ed by Dagster."""
    if dom == "?" and dow == "?":
        raise QuartzError(
            "'?' may be used in only one of day-of-month and day-of-week; give a value in the other."
        )
    unrestricted = ("?", "*")
    if dom not in unrestricted and dow not in unrestricted:
        raise QuartzError(
            f"day-of-month '{dom}' and day-of-week '{dow}' are both restricted: Quartz does not support that "
            "(use '?' in one of them), and Dagster would fire on either day instead of both."
        )


def _number(field: str, token: str, value: str) -> int:
    """A Quartz number or name of ``field``, bounds-checked."""
    low, high = BOUNDS[field]
    if token.isdigit():
        number = int(token)
    elif token in NAMES.get(field, {}):
        number = NAMES[field][token]
    else:
        allowed = f"{low}-{high}" + (f" or {MONTHS[0]}-{MONTHS[-1]}" if field == "month" else "")
        allowed += f" or {DAYS[0]}-{DAYS[-1]}" if field == "day-of-week" else ""
        raise QuartzError(f"'{token}' is not a valid value (allowed: {allowed}).", field=field, value=value)
    if not low <= number <= high:
        raise QuartzError(f"{number} is out of range {low}-{high}.", field=field, value=value)
    return number


def _convert_plain(field: str, value: str, shift: int = 0) -> str:
    """Lists, ranges, steps and names: the syntax Quartz and Dagster share (day-of-week numbers shifted by -1)."""
    if value == "?":
        if field not in ("day-of-month", "day-of-week"):
            raise QuartzError(
                "'?' is allowed only in day-of-month and day-of-week.", field=field, value=value
            )
        return "*"
    low, high = BOUNDS[field]
    items = []
    for item in value.split(","):
        match = _ITEM.match(item)
        if not match:
            raise QuartzError(f"'{item}' is not a value, range, list or step.", field=field, value=value)
        step = match.group("step")
        if step is not None and not 1 <= int(step) <= high - low + 1:
            raise QuartzError(
                f"step {step} must be between 1 and {high - low + 1}.", field=field, value=value
            )
        rng = match.group("range")
        if rng == "*":
            items.append("*" if step is None else f"{low + shift}-{high + shift}/{step}")
            continue
        start_token, _, end_token = rng.partition("-")
        start = _number(field, start_token, value)
        end = _number(field, end_token, value) if end_token else None
        if end is None and step is not None:  # Quartz 'a/n' = from a to the field's end, every n
            end = high
        if end is not None and end < start:  # Quartz wraps ranges like FRI-MON or 22-2: expand to a list
            values = [*range(start, high + 1), *range(low, end + 1)][:: int(step or 1)]
            items.append(",".join(str(v + shift) for v in values))
            continue
        if end is None:
            items.append(_token(field, start_token, start, shift))
        else:
            text = f"{_token(field, start_token, start, shift)}-{_token(field, end_token, end, shift)}"
            items.append(text if step is None else f"{text}/{step}")
    return ",".join(items)


def _token(field: str, token: str, number: int, shift: int) -> str:
    """Keep names as written (upper case), shift numbers."""
    return token if token and not token.isdigit() else str(number + shift)


def _convert_day_of_month(value: str) -> str:
    if "W" in value:
        raise QuartzError(
            "'W' (nearest weekday) has no equivalent in Dagster's cron, so the schedule cannot run faithfully.",
            field="day-of-month",
            value=value,
        )
    if value == "L":
        return "L"
    if "L" in value:
        raise QuartzError(
            "only a plain 'L' (last day of the month) can be run by Dagster; offsets like 'L-3' cannot.",
            field="day-of-month",
            value=value,
        )
    return _convert_plain("day-of-month", value)


def _convert_day_of_week(value: str) -> str:
    if value == "L":  # Quartz: 'L' alone in day-of-week is the last day of the week, Saturday
        return "6"
    if "L" in value or "#" in value:
        if "," in value or "-" in value or "/" in value:
            raise QuartzError(
                "'L' and '#' must stand alone (Quartz does not combine them with lists or ranges).",
                field="day-of-week",
                value=value,
            )
        if value.endswith("L"):  # '6L' / 'FRIL': last Friday of the month -> 'L5'
            day = _number("day-of-week", value[:-1], value)
            return f"L{day - 1}"
        day_token, _, nth = value.partition("#")  # '2#1' / 'MON#1': first Monday -> '1#1'
        day = _number("day-of-week", day_token, value)
        if not nth.isdigit() or not 1 <= int(nth) <= 5:
            raise QuartzError("the n in 'day#n' must be 1 to 5.", field="day-of-week", value=value)
        return f"{day - 1}#{int(nth)}"
    return _convert_plain("day-of-week", value, shift=-1)
