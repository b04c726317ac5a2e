"""The engines' representation of an event aggregate, as the lowering emits it.

An :class:`EventAggregate` is one aggregate over the event rows of a profile, described by what it computes (not
by how an engine writes it): ``fn`` of ``value`` over the events where ``cond`` holds, ordered by ``order``. The
lowering builds one for each event condition it reduces (``bool_or`` bits of exists-conditions, counts, sums,
min/max, ordered lists, the first event, chain step timestamps) and hands it to the backend
(``Backend.agg_ref``), which fills in ``expression`` (its own rendering of the whole aggregate) and registers it.
An engine with its own plan for an aggregate (DuckDB's bit masks and typed branches,
``engine/event_aggregates_sql.py``) reads the parts; any other engine computes ``expression``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

E = TypeVar("E")

# What ``fn`` may be, and what ``value`` and ``order`` then are.
AGGREGATE_FNS = {
    "bool_or": "some selected event (value: None)",
    "bool_and": "every selected event (value: None)",
    "count": "the number of selected events (value: None)",
    "sum": "the sum of value",
    "avg": "the average of value",
    "min": "the least value",
    "max": "the greatest value",
    "first": "value (the event row) of the earliest selected event by order",
    "list": "the values of the selected events as a list ordered by order (none: null)",
    "timestamps": "value (a timestamp) of the selected events as a list in ascending order (chain steps)",
}


@dataclass(eq=False)
class EventAggregate(Generic[E]):
    """``fn`` of ``value`` over the events where ``cond`` holds (None: every event), ordered by ``order``."""

    fn: str
    value: E | None = None
    cond: E | None = None
    order: E | None = None
    expression: E | None = None  # the backend's rendering of the whole aggregate (set when registered)

    def __post_init__(self) -> None:
        if self.fn not in AGGREGATE_FNS:
            raise ValueError(f"unknown event aggregate {self.fn!r}")


__all__ = ["AGGREGATE_FNS", "EventAggregate"]
