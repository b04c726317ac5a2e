"""The one home of time: what users send (ISO 8601, epoch milliseconds, datetimes) and what the contract writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from segmentation_pipelines.errors import BadRequest
from segmentation_pipelines.timeutil import iso, iso_ms, naive_utc, parse_optional_time, parse_time, to_ms

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05z",
        "2026-01-02T04:04:05+01:00",
        "2026-01-02T03:04:05",
        datetime(2026, 1, 2, 3, 4, 5),
        datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
        1767323045000,
        "1767323045000",
    ],
)
def test_every_accepted_form_is_the_same_utc_moment(value):
    assert parse_time(value) == T
    assert parse_time(value).tzinfo == UTC


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "", True, [2026], "9" * 30])
def test_bad_times_name_the_field(value):
    with pytest.raises(BadRequest) as err:
        parse_time(value, "query parameter 'evaluationTime'")
    assert err.value.message.startswith("query parameter 'evaluationTime': ")


def test_optional_time_and_formats():
    assert parse_optional_time(None) is None and parse_optional_time("") is None
    assert to_ms(T) == 1767323045000 == to_ms(naive_utc(T))
    assert iso(T) == iso_ms(1767323045000) == "2026-01-02T03:04:05.000Z"
    assert iso(None) is None
    assert naive_utc(datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))) == datetime(
        2026, 1, 2, 3, 4, 5
    )
