"""A seeded synthetic profile store (merged profiles and their events, in the store's Parquet layout) and random
definitions over it, for the estimate's coverage test."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
COUNTRIES = ["US", "CA", "MX", "FR", "DE", "GB", "ES", "IT", "JP", "BR"]
TIERS = ["bronze", "silver", "gold", "platinum"]
EVENT_TYPES = [
    "web.webpagedetails.pageViews",
    "commerce.productViews",
    "commerce.checkouts",
    "commerce.purchases",
]
PROFILE_SCHEMA = {
    "homeAddress.countryCode": "string",
    "loyalty.tier": "string",
    "loyalty.points": "integer",
    "person.birthYear": "integer",
}
EVENT_SCHEMA = {"timestamp": "date-time", "eventType": "string", "commerce.order.priceTotal": "number"}


def write_store(folder: Path, profiles: int, events: int, seed: int = 42) -> Path:
    """``folder/profiles.parquet`` and ``folder/events/part-0.parquet`` (events sorted by profile, as the store)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = pa.array([f"p{i:07d}" for i in range(profiles)])

    def pick(values, n):
        return pa.array(np.array(values, dtype=object)[rng.integers(0, len(values), n)])

    pq.write_table(
        pa.table(
            {
                "profile_id": ids,
                "homeAddress": pa.StructArray.from_arrays([pick(COUNTRIES, profiles)], ["countryCode"]),
                "loyalty": pa.StructArray.from_arrays(
                    [pick(TIERS, profiles), pa.array(rng.integers(0, 10_000, profiles))], ["tier", "points"]
                ),
                "person": pa.StructArray.from_arrays(
                    [pa.array(rng.integers(1940, 2008, profiles))], ["birthYear"]
                ),
            }
        ),
        folder / "profiles.parquet",
    )
    # Skewed activity: a few profiles have many events.
    owner = np.sort(np.minimum((rng.pareto(1.5, events) * profiles / 6).astype(np.int64), profiles - 1))
    owner = (owner * 7919) % profiles  # spread the busy profiles over the id range
    order = np.argsort(owner, kind="stable")
    owner = owner[order]
    now_us = int(NOW.timestamp() * 1_000_000)
    kind = rng.choice(len(EVENT_TYPES), events, p=[0.5, 0.3, 0.1, 0.1])
    bought = kind >= 2
    price = pa.array(np.round(rng.gamma(2.0, 60.0, events), 2), mask=~bought)
    (folder / "events").mkdir(exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "profile_id": ids.take(pa.array(owner)),
                "_id": pa.array([f"e{i}" for i in range(events)]),
                "timestamp": pa.array(
                    now_us - (rng.random(events) ** 2 * 200 * 86_400e6).astype(np.int64), pa.timestamp("us")
                ),
                "eventType": pa.array(np.array(EVENT_TYPES, dtype=object)[kind]),
                "commerce": pa.StructArray.from_arrays(
                    [pa.StructArray.from_arrays([price], ["priceTotal"])], ["order"]
                ),
            }
        ),
        folder / "events" / "part-0.parquet",
    )
    return folder


def definitions(n: int, seed: int = 11) -> list[tuple[str, str]]:
    """``n`` distinct random definitions (id, PQL): profile conditions, event counts in windows, sums, chains."""
    rnd = random.Random(seed)

    def et() -> str:
        return rnd.choice(EVENT_TYPES)

    templates = [
        lambda: (
            f'homeAddress.countryCode = "{rnd.choice(COUNTRIES)}" and person.birthYear > {rnd.randint(1940, 2007)}'
        ),
        lambda: (
            f'loyalty.tier in ["{rnd.choice(TIERS)}", "{rnd.choice(TIERS)}"] and loyalty.points >= {rnd.randint(0, 9900)}'
        ),
        lambda: (
            f'xEvent[eventType = "{et()}" and timestamp occurs <= {rnd.randint(1, 200)} days before today].count()'
            f" >= {rnd.randint(1, 4)}"
        ),
        lambda: (
            "(sum X.commerce.order.priceTotal over X from xEvent where X.eventType = "
            f'"commerce.purchases") > {rnd.randint(1, 600)}'
        ),
        lambda: (
            f'chain(xEvent, timestamp, [A: WHAT(eventType = "{et()}") WHEN(< {rnd.randint(1, 120)} days before now), '
            'B: WHAT(eventType = "commerce.purchases")])'
        ),
        lambda: (
            f'homeAddress.countryCode != "{rnd.choice(COUNTRIES)}" and not(chain(xEvent, timestamp, '
            f'[A: WHAT(eventType = "{et()}") WHEN(< {rnd.randint(1, 60)} days before now)]))'
        ),
        lambda: (
            f'xEvent[eventType = "{rnd.choice(EVENT_TYPES[2:])}"].max(commerce.order.priceTotal) > {rnd.randint(10, 600)}'
            f' or loyalty.tier = "{rnd.choice(TIERS)}"'
        ),
        lambda: (
            f'select X from xEvent where X.eventType = "{et()}" and X.timestamp occurs < {rnd.randint(1, 96)} hours before now'
        ),
    ]
    out: dict[str, str] = {}
    i = 0
    while len(out) < n:
        text = templates[i % len(templates)]()
        i += 1
        if text not in out.values():
            out[f"d{len(out):03d}"] = text
    return list(out.items())
