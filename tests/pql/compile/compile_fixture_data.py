"""A small hand-written profile store (5 profiles, 16 events) in the on-disk layout of docs/data-model.md, with the
schema the compilers resolve against. The expected members of the semantic tests are computed by hand from it.

Evaluation time: 2026-11-29 15:00 UTC (a Sunday); today = 2026-11-29; last week = 16-22 Nov (ISO, Monday start).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from segmentation_pipelines.pql.schema import Schema

NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)

PROFILE_FIELDS = {
    "person": "object",
    "person.name.firstName": "string",
    "person.birthYear": "integer",
    "person.birthMonth": "integer",
    "person.birthDate": "date",
    "person.gender": "string",
    "person.favoriteColors[]": "string",
    "person.scores[]": "number",
    "homeAddress.country": "string",
    "homeAddress.countryCode": "string",
    "homeAddress.stateProvince": "string",
    "homeAddress.city": "string",
    "workAddress.countryCode": "string",
    "workAddress.stateProvince": "string",
    "workEmail.address": "string",
    "loyalty.tier": "string",
    "loyalty.points": "integer",
    "loyalty.vip": "boolean",
    "orders[].price": "number",
    "orders[].storeId": "string",
    "_repo.modifyDate": "date-time",
}
EVENT_FIELDS = {
    "timestamp": "date-time",
    "eventType": "string",
    "commerce.order.priceTotal": "number",
    "commerce.order.currencyCode": "string",
    "commerce.checkouts.value": "number",
    "productListItems[].SKU": "string",
    "productListItems[].quantity": "integer",
    "web.webPageDetails.name": "string",
}
SCHEMA = Schema.from_dicts(profile=PROFILE_FIELDS, event=EVENT_FIELDS)

PROFILE_TYPE = pa.struct([])  # built below


def _d(s: str | None):
    return None if s is None else datetime.fromisoformat(s)


def profiles_table() -> pa.Table:
    person = pa.struct(
        [
            ("name", pa.struct([("firstName", pa.string())])),
            ("birthYear", pa.int64()),
            ("birthMonth", pa.int64()),
            ("birthDate", pa.date32()),
            ("gender", pa.string()),
            ("favoriteColors", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float64())),
        ]
    )
    addr = pa.struct(
        [
            ("country", pa.string()),
            ("countryCode", pa.string()),
            ("stateProvince", pa.string()),
            ("city", pa.string()),
        ]
    )
    waddr = pa.struct([("countryCode", pa.string()), ("stateProvince", pa.string())])
    email = pa.struct([("address", pa.string())])
    loyalty = pa.struct([("tier", pa.string()), ("points", pa.int64()), ("vip", pa.bool_())])
    orders = pa.list_(pa.struct([("price", pa.float64()), ("storeId", pa.string())]))
    repo = pa.struct([("modifyDate", pa.timestamp("us"))])
    ident = pa.list_(
        pa.struct(
            [
                ("key", pa.string()),
                ("value", pa.list_(pa.struct([("id", pa.string()), ("primary", pa.bool_())]))),
            ]
        )
    )
    from datetime import date

    rows = [
        dict(
            profile_id="p1",
            identityMap=[{"key": "email", "value": [{"id": "john@yahoo.com", "primary": True}]}],
            person={
                "name": {"firstName": "John"},
                "birthYear": 1980,
                "birthMonth": 3,
                "birthDate": date(1980, 3, 29),
                "gender": "m",
                "favoriteColors": ["red", "blue"],
                "scores": [1.0, 5.0, 3.0],
            },
            homeAddress={"country": "US", "countryCode": "US", "stateProvince": "CA", "city": "SF"},
            workAddress={"countryCode": "US", "stateProvince": "CA"},
            workEmail={"address": "john@yahoo.com"},
            loyalty={"tier": "gold", "points": 100, "vip": True},
            orders=[{"price": 10.0, "storeId": "s1"}, {"price": 50.0, "storeId": "s2"}],
            _repo={"modifyDate": _d("2026-11-28 10:00:00")},
        ),
        dict(
            profile_id="p2",
            identityMap=[],
            person={
                "name": {"firstName": "johnny"},
                "birthYear": 1990,
                "birthMonth": 6,
                "birthDate": None,
                "gender": "f",
                "favoriteColors": ["green"],
                "scores": [],
            },
            homeAddress={"country": "Canada", "countryCode": "CA", "stateProvince": "ON", "city": "Toronto"},
            workAddress={"countryCode": "US", "stateProvince": "NY"},
            workEmail={"address": "JANE@UNI.EDU"},
            loyalty={"tier": "silver", "points": 0, "vip": False},
            orders=[],
            _repo={"modifyDate": _d("2019-03-31 23:59:59")},
        ),
        dict(
            profile_id="p3",
            identityMap=None,
            person={
                "name": {"firstName": "UpJohn"},
                "birthYear": None,
                "birthMonth": 9,
                "birthDate": date(2000, 11, 29),
                "gender": None,
                "favoriteColors": None,
                "scores": None,
            },
            homeAddress=None,
            workAddress=None,
            workEmail={"address": "x@corp.edu"},
            loyalty={"tier": None, "points": None, "vip": None},
            orders=[{"price": 5.0, "storeId": "s1"}],
            _repo=None,
        ),
        dict(
            profile_id="p4",
            identityMap=None,
            person={
                "name": {"firstName": None},
                "birthYear": 1985,
                "birthMonth": 12,
                "birthDate": None,
                "gender": "m",
                "favoriteColors": ["red", "green"],
                "scores": [2.0, 2.0],
            },
            homeAddress={"country": "US", "countryCode": "US", "stateProvince": "OR", "city": None},
            workAddress={"countryCode": "MX", "stateProvince": None},
            workEmail=None,
            loyalty={"tier": "gold", "points": 7, "vip": None},
            orders=[{"price": 70.0, "storeId": "s3"}],
            _repo={"modifyDate": _d("2019-04-01 00:00:00")},
        ),
        dict(
            profile_id="p5",
            identityMap=None,
            person=None,
            homeAddress=None,
            workAddress=None,
            workEmail=None,
            loyalty=None,
            orders=None,
            _repo=None,
        ),
    ]
    schema = pa.schema(
        [
            ("profile_id", pa.string()),
            ("identityMap", ident),
            ("person", person),
            ("homeAddress", addr),
            ("workAddress", waddr),
            ("workEmail", email),
            ("loyalty", loyalty),
            ("orders", orders),
            ("_repo", repo),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def events_table() -> pa.Table:
    item = pa.struct([("SKU", pa.string()), ("quantity", pa.int64())])
    commerce = pa.struct(
        [
            ("order", pa.struct([("priceTotal", pa.float64()), ("currencyCode", pa.string())])),
            ("checkouts", pa.struct([("value", pa.float64())])),
        ]
    )
    web = pa.struct([("webPageDetails", pa.struct([("name", pa.string())]))])

    def ev(i, pid, ts, et, price=None, cur=None, items=None, checkouts=None, page=None):
        return dict(
            profile_id=pid,
            _id=f"e{i}",
            timestamp=_d(ts),
            eventType=et,
            commerce={"order": {"priceTotal": price, "currencyCode": cur}, "checkouts": {"value": checkouts}},
            productListItems=items,
            web={"webPageDetails": {"name": page}},
        )

    rows = [
        ev(1, "p1", "2026-11-29 10:00:00", "homePageView", page="Home"),
        ev(
            2,
            "p1",
            "2026-11-29 12:00:00",
            "addToCart",
            20.0,
            "USD",
            [{"SKU": "PS", "quantity": 1}],
            checkouts=1.0,
        ),
        ev(
            3,
            "p1",
            "2026-11-28 09:00:00",
            "checkout",
            100.0,
            "USD",
            [{"SKU": "PS", "quantity": 2}, {"SKU": "LR", "quantity": 1}],
        ),
        ev(4, "p1", "2026-11-26 09:00:00", "homePageView"),
        ev(5, "p2", "2026-11-29 14:00:00", "addToCart", 5.0, "EUR", [{"SKU": "LR", "quantity": 3}]),
        ev(6, "p2", "2026-11-29 13:00:00", "homePageView"),
        ev(7, "p2", "2026-10-31 12:00:00", "purchase", 300.0, "USD"),
        ev(8, "p3", "2026-10-29 00:00:00", "homePageView"),
        ev(9, "p3", "2026-11-28 23:59:59", "homePageView"),
        *[ev(10 + k, "p3", f"2026-11-29 0{k + 1}:00:00", "homePageView") for k in range(5)],
        ev(15, "p4", "2026-11-23 00:00:00", "login"),
        ev(16, "p4", None, "login"),
    ]
    schema = pa.schema(
        [
            ("profile_id", pa.string()),
            ("_id", pa.string()),
            ("timestamp", pa.timestamp("us")),
            ("eventType", pa.string()),
            ("commerce", commerce),
            ("productListItems", pa.list_(item)),
            ("web", web),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def write_store(root: Path) -> tuple[Path, Path]:
    """Write profiles.parquet and events/part-0.parquet under ``root``; returns (profiles path, events folder)."""
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(profiles_table(), root / "profiles.parquet")
    (root / "events").mkdir(exist_ok=True)
    pq.write_table(events_table(), root / "events" / "part-0.parquet")
    return root / "profiles.parquet", root / "events"
