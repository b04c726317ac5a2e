"""Quartz -> Dagster cron conversion: a table of expressions with the expected cron (and first fire times, checked
with Dagster's own cron iterator) or the expected refusal (which field, and why)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string

from segmentation_pipelines.service.quartz import QuartzError, convert

START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)  # a Wednesday; Dagster's iterator includes it

# (Quartz, expected Dagster cron, first three fire times from START in UTC as "YYYY-MM-DD HH:MM")
CONVERTED = [
    # the contract's examples
    ("0 0 1 * * ?", "0 1 * * *", ["2025-01-01 01:00", "2025-01-02 01:00", "2025-01-03 01:00"]),
    ("0 30 13 * * ?", "30 13 * * *", ["2025-01-01 13:30", "2025-01-02 13:30", "2025-01-03 13:30"]),
    ("0 0 2 * * ?", "0 2 * * *", ["2025-01-01 02:00", "2025-01-02 02:00", "2025-01-03 02:00"]),
    # optional year '*', '00' seconds, '*' instead of '?' in the other day field
    ("0 0 1 * * ? *", "0 1 * * *", ["2025-01-01 01:00", "2025-01-02 01:00", "2025-01-03 01:00"]),
    ("00 5 23 * * ?", "5 23 * * *", ["2025-01-01 23:05", "2025-01-02 23:05", "2025-01-03 23:05"]),
    ("0 0 1 * * *", "0 1 * * *", ["2025-01-01 01:00", "2025-01-02 01:00", "2025-01-03 01:00"]),
    # day-of-week: names (any case), numbers shifted (Quartz 1=SUN), lists, ranges, steps, wrapping ranges
    ("0 30 6 ? * MON-FRI", "30 6 * * MON-FRI", ["2025-01-01 06:30", "2025-01-02 06:30", "2025-01-03 06:30"]),
    ("0 30 6 ? * mon-fri", "30 6 * * MON-FRI", ["2025-01-01 06:30", "2025-01-02 06:30", "2025-01-03 06:30"]),
    ("0 0 8 ? * 2,4,6", "0 8 * * 1,3,5", ["2025-01-01 08:00", "2025-01-03 08:00", "2025-01-06 08:00"]),
    ("0 0 8 ? * 1", "0 8 * * 0", ["2025-01-05 08:00", "2025-01-12 08:00", "2025-01-19 08:00"]),
    ("0 0 8 ? * 7", "0 8 * * 6", ["2025-01-04 08:00", "2025-01-11 08:00", "2025-01-18 08:00"]),
    ("0 0 8 ? * 2-6", "0 8 * * 1-5", ["2025-01-01 08:00", "2025-01-02 08:00", "2025-01-03 08:00"]),
    ("0 0 8 ? * 2/2", "0 8 * * 1-6/2", ["2025-01-01 08:00", "2025-01-03 08:00", "2025-01-06 08:00"]),
    ("0 0 8 ? * */3", "0 8 * * 0-6/3", ["2025-01-01 08:00", "2025-01-04 08:00", "2025-01-05 08:00"]),
    ("0 0 8 ? * FRI-MON", "0 8 * * 5,6,0,1", ["2025-01-03 08:00", "2025-01-04 08:00", "2025-01-05 08:00"]),
    ("0 0 8 ? * SAT,SUN", "0 8 * * SAT,SUN", ["2025-01-04 08:00", "2025-01-05 08:00", "2025-01-11 08:00"]),
    # 'L' and '#' in day-of-week
    ("0 0 22 ? * 6L", "0 22 * * L5", ["2025-01-31 22:00", "2025-02-28 22:00", "2025-03-28 22:00"]),
    ("0 0 22 ? * FRIL", "0 22 * * L5", ["2025-01-31 22:00", "2025-02-28 22:00", "2025-03-28 22:00"]),
    ("0 0 9 ? * L", "0 9 * * 6", ["2025-01-04 09:00", "2025-01-11 09:00", "2025-01-18 09:00"]),
    ("0 0 12 ? * 2#1", "0 12 * * 1#1", ["2025-01-06 12:00", "2025-02-03 12:00", "2025-03-03 12:00"]),
    ("0 0 12 ? * MON#2", "0 12 * * 1#2", ["2025-01-13 12:00", "2025-02-10 12:00", "2025-03-10 12:00"]),
    ("0 0 12 ? * 1#5", "0 12 * * 0#5", ["2025-03-30 12:00", "2025-06-29 12:00", "2025-08-31 12:00"]),
    # day-of-month: 'L', lists, ranges, steps ('a/n' = from a, every n)
    ("0 15 10 L * ?", "15 10 L * *", ["2025-01-31 10:15", "2025-02-28 10:15", "2025-03-31 10:15"]),
    ("0 0 0 1,15 * ?", "0 0 1,15 * *", ["2025-01-01 00:00", "2025-01-15 00:00", "2025-02-01 00:00"]),
    ("0 0 3 1/10 * ?", "0 3 1-31/10 * *", ["2025-01-01 03:00", "2025-01-11 03:00", "2025-01-21 03:00"]),
    ("0 0 3 10-12 * ?", "0 3 10-12 * *", ["2025-01-10 03:00", "2025-01-11 03:00", "2025-01-12 03:00"]),
    # month: names, ranges, steps
    ("0 0 4 1 JAN-MAR ?", "0 4 1 JAN-MAR *", ["2025-01-01 04:00", "2025-02-01 04:00", "2025-03-01 04:00"]),
    ("0 0 4 1 */3 ?", "0 4 1 1-12/3 *", ["2025-01-01 04:00", "2025-04-01 04:00", "2025-07-01 04:00"]),
    ("0 0 4 1 FEB/6 ?", "0 4 1 FEB-12/6 *", ["2025-02-01 04:00", "2025-08-01 04:00", "2026-02-01 04:00"]),
    ("0 0 0 29 FEB ?", "0 0 29 FEB *", ["2028-02-29 00:00", "2032-02-29 00:00", "2036-02-29 00:00"]),
    (
        "0 0 4 ? NOV-FEB SUN",
        "0 4 * 11,12,1,2 SUN",
        ["2025-01-05 04:00", "2025-01-12 04:00", "2025-01-19 04:00"],
    ),
]

# (Quartz, field named in the message (None: the expression as a whole), words the message must contain)
REFUSED = [
    ("30 0 1 * * ?", "seconds", "must be 0"),
    ("* 0 1 * * ?", "seconds", "must be 0"),
    ("0/30 0 1 * * ?", "seconds", "must be 0"),
    ("0 0 1 * * ? 2027", "year", "no year field"),
    ("0 0 1 * * ? 2020-2030", "year", "no year field"),
    ("0 0 12 15W * ?", "day-of-month", "'W'"),
    ("0 0 12 LW * ?", "day-of-month", "'W'"),
    ("0 0 12 L-3 * ?", "day-of-month", "offsets"),
    ("0 0 12 ? * 2#6", "day-of-week", "1 to 5"),
    ("0 0 12 ? * 2#1,3#1", "day-of-week", "stand alone"),
    ("0 0 12 ? * 8", "day-of-week", "out of range 1-7"),
    ("0 0 12 ? * FUN", "day-of-week", "not a valid value"),
    ("0 0 12 ? FOO *", "month", "not a valid value"),
    ("0 0 12 32 * ?", "day-of-month", "out of range 1-31"),
    ("0 60 12 * * ?", "minutes", "out of range 0-59"),
    ("0 0 24 * * ?", "hours", "out of range 0-23"),
    ("0 0 1 ? * MON/0", "day-of-week", "step 0"),
    ("0 0 1 ? * ?", None, "only one of day-of-month and day-of-week"),
    ("0 0 1 5 * 2", None, "both restricted"),
    ("0 0 1 ? 2 *?", "day-of-week", "not a value"),
    ("0 0 1 * *", None, "6 or 7 fields"),
    ("0 0 1 * * ? * *", None, "6 or 7 fields"),
    ("", None, "empty"),
    ("0 0 0 30 2 ?", None, "never fires"),
    ("0 0 0 31 APR ?", None, "never fires"),
    # more often than once per 24 hours
    ("0 0 * * * ?", "hours", "at most once per 24 hours"),
    ("0 0/30 1 * * ?", "minutes", "at most once per 24 hours"),
    ("0 * 1 * * ?", "minutes", "at most once per 24 hours"),
    ("0 0 1,13 * * ?", "hours", "at most once per 24 hours"),
    ("0 0 22-2 * * ?", "hours", "at most once per 24 hours"),
    ("0 0 0/12 ? * MON", "hours", "at most once per 24 hours"),
    ("0 5,10 3 ? * SUN", "minutes", "at most once per 24 hours"),
]


def _fires(cron: str, timezone: str, count: int) -> list[str]:
    it = cron_string_iterator(START.timestamp(), cron, timezone)
    return [next(it).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") for _ in range(count)]


@pytest.mark.parametrize(("quartz", "expected", "fires"), CONVERTED, ids=[c[0] for c in CONVERTED])
def test_converts_to_the_cron_dagster_runs(quartz, expected, fires):
    converted = convert(quartz)
    assert converted.cron == expected
    assert converted.quartz == quartz  # the user's string is kept as written
    assert converted.timezone == "UTC"
    assert is_valid_cron_string(converted.cron)
    assert _fires(converted.cron, "UTC", len(fires)) == fires


@pytest.mark.parametrize(("quartz", "field", "words"), REFUSED, ids=[r[0] or "empty" for r in REFUSED])
def test_refuses_what_dagster_cannot_run_faithfully(quartz, field, words):
    with pytest.raises(QuartzError) as raised:
        convert(quartz)
    assert raised.value.field == field
    if field is not None:
        assert str(raised.value).startswith(f"{field} field '")
    assert words in str(raised.value)


def test_timezone_is_validated_and_applied():
    converted = convert("0 0 1 * * ?", "Europe/Berlin")
    assert converted.timezone == "Europe/Berlin"
    assert converted.cron == "0 1 * * *"
    it = cron_string_iterator(START.timestamp(), converted.cron, converted.timezone)
    first = next(it)
    assert first.astimezone(zoneinfo.ZoneInfo("Europe/Berlin")).hour == 1
    assert first.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") == "2025-01-01 00:00"  # CET = UTC+1 in winter
    with pytest.raises(QuartzError, match="unknown time zone 'Mars/Olympus'"):
        convert("0 0 1 * * ?", "Mars/Olympus")


def test_a_daily_schedule_stays_valid_across_dst_in_its_time_zone():
    # 01:00 Berlin is 23 real hours after the previous fire on the spring-forward day: still once a day.
    assert convert("0 0 1 * * ?", "Europe/Berlin").cron == "0 1 * * *"
    assert convert("0 30 2 * * ?", "America/New_York").cron == "30 2 * * *"
