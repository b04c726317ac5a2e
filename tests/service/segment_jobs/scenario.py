"""A small world whose audiences are computed by hand: six people, their events, seven definitions.

Evaluation times: ``T`` and ``T1 = T + 1 day``; between them, ``add_day_two_events`` ingests two purchases.
``EXPECTED_T`` / ``EXPECTED_T1`` give, per definition name, each member's status (``realized``/``existing``/
``exited``); the reasoning is next to each person. Everything goes through the public client (datasets, ingestion,
definitions, jobs, audiences), in-process or over HTTP: ingestion brings the profile store current.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

T = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
T1 = T + timedelta(days=1)


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ids(email: str, crm: str | None) -> dict:
    ids = {"Email": [{"id": email, "primary": True}]}
    if crm:
        ids["CRMID"] = [{"id": crm, "primary": False}]
    return ids


# name -> (country, loyalty points, CRM id)
PEOPLE = {
    "ann": ("US", 500, "c-ann"),
    "bob": ("US", 50, "c-bob"),
    "cat": ("FR", 900, "c-cat"),
    "dan": ("FR", 10, None),
    "eve": ("US", 300, "c-eve"),
    "fay": ("DE", 700, "c-fay"),
}


def _event(who: str, kind: str, at: datetime, price: float | None = None) -> dict:
    event = {
        "_id": f"{who}-{kind}-{_ts(at)}",
        "timestamp": _ts(at),
        "eventType": kind,
        "identityMap": {"Email": [{"id": f"{who}@example.com", "primary": True}]},
    }
    if price is not None:
        event["commerce"] = {"order": {"priceTotal": price, "currencyCode": "USD"}}
    return event


VIEW, BUY, PAGE = "commerce.productViews", "commerce.purchases", "web.webpagedetails.pageViews"
DAY_ONE_EVENTS = [
    _event("ann", VIEW, T - timedelta(days=8)),  # ann: viewed, then bought 6.5 days before T (120)
    _event("ann", BUY, T - timedelta(days=6, hours=12), 120.0),
    _event("bob", VIEW, T - timedelta(days=3)),  # bob: viewed, then bought yesterday (30)
    _event("bob", BUY, T - timedelta(days=1), 30.0),
    _event("cat", BUY, T - timedelta(days=20), 200.0),  # cat: one old big purchase
    _event("eve", PAGE, T - timedelta(days=1)),  # eve: three page views
    _event("eve", PAGE, T - timedelta(days=2)),
    _event("eve", PAGE, T - timedelta(days=3)),
    _event("fay", BUY, T - timedelta(days=4), 80.0),  # fay: two purchases this week (130), no view
    _event("fay", BUY, T - timedelta(days=3), 50.0),
]
DAY_TWO_EVENTS = [
    _event("dan", BUY, T + timedelta(hours=12), 150.0),  # dan: first purchase, a big one
    _event("eve", BUY, T + timedelta(hours=12), 10.0),  # eve: a small purchase
]

# name -> PQL; "{us}" / "{recent}" are replaced by those definitions' ids.
DEFINITIONS = {
    "us": 'homeAddress.countryCode = "US"',
    "loyal": "loyalty.points >= 500",
    "recent": f'chain(xEvent, timestamp, [A: WHAT(eventType = "{BUY}") WHEN(< 7 days before now)])',
    "big": f'(sum X.commerce.order.priceTotal over X from xEvent where X.eventType = "{BUY}") > 100',
    "frequent": f'xEvent[eventType = "{PAGE}"].count() >= 3',
    "view_then_buy": f'chain(xEvent, timestamp, [A: WHAT(eventType = "{VIEW}"), B: WHAT(eventType = "{BUY}")])',
    "us_and_recent": 'inSegment("{us}") and inSegment("{recent}")',
}

R, E, X = "realized", "existing", "exited"
EXPECTED_T = {
    "us": {"ann": R, "bob": R, "eve": R},
    "loyal": {"ann": R, "cat": R, "fay": R},
    "recent": {"ann": R, "bob": R, "fay": R},  # ann's purchase is 6.5 days old; cat's 20
    "big": {"ann": R, "cat": R, "fay": R},  # 120, 200, 130 (bob 30)
    "frequent": {"eve": R},
    "view_then_buy": {"ann": R, "bob": R},  # fay bought without viewing
    "us_and_recent": {"ann": R, "bob": R},
}
EXPECTED_T1 = {
    "us": {"ann": E, "bob": E, "eve": E},
    "loyal": {"ann": E, "cat": E, "fay": E},
    "recent": {"ann": X, "bob": E, "fay": E, "dan": R, "eve": R},  # ann's purchase is now 7.5 days old
    "big": {"ann": E, "cat": E, "fay": E, "dan": R},  # dan 150; eve 10
    "frequent": {"eve": E},
    "view_then_buy": {"ann": E, "bob": E},
    "us_and_recent": {"ann": X, "bob": E, "eve": R},
}


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


class Scenario:
    """The world above, loaded through ``client`` into the client's sandbox (``folder`` holds the JSONL files)."""

    def __init__(self, client, folder: Path):
        self.client, self.folder = client, folder
        self.ids: dict[str, str] = {}
        self.batches: list[dict] = []

    def load(self) -> Scenario:
        profiles = self.client.datasets.create({"name": "crm", "schema": {"name": "_xdm.context.profile"}})
        self.events = self.client.datasets.create(
            {"name": "web", "schema": {"name": "_xdm.context.experienceevent"}}
        )
        rows = [
            {
                "identityMap": _ids(f"{who}@example.com", crm),
                "person": {"name": {"firstName": who.title()}},
                "homeAddress": {"countryCode": country},
                "loyalty": {"points": points},
            }
            for who, (country, points, crm) in PEOPLE.items()
        ]
        self.batches.append(
            self.client.datasets.upload(profiles["id"], [_write(self.folder / "crm.jsonl", rows)])
        )
        self.batches.append(
            self.client.datasets.upload(
                self.events["id"], [_write(self.folder / "web1.jsonl", DAY_ONE_EVENTS)]
            )
        )
        default = [p for p in self.client.merge_policies.list()["children"] if p["default"]]
        self.merge_policy_id = default[0]["id"]
        for name, pql in DEFINITIONS.items():
            text = pql.replace("{us}", self.ids.get("us", "")).replace("{recent}", self.ids.get("recent", ""))
            created = self.client.segment_definitions.create(
                {
                    "name": name,
                    "schema": {"name": "_xdm.context.profile"},
                    "expression": {"type": "PQL", "format": "pql/text", "value": text},
                }
            )
            self.ids[name] = created["id"]
        return self

    def add_day_two_events(self) -> dict:
        batch = self.client.datasets.upload(
            self.events["id"], [_write(self.folder / "web2.jsonl", DAY_TWO_EVENTS)]
        )
        self.batches.append(batch)
        return batch

    def members(self, name: str) -> dict[str, tuple[str, str]]:
        """``{person: (status, lastQualificationTime)}`` of the audience's latest evaluation (exited included)."""
        page = self.client.audiences.members(self.ids[name], limit=1000)
        out = {}
        for row in page["children"]:
            email = row["identityMap"]["Email"][0]["id"]
            out[email.split("@")[0]] = (row["status"], row["lastQualificationTime"])
        return out

    def statuses(self) -> dict[str, dict[str, str]]:
        return {name: {who: s for who, (s, _) in self.members(name).items()} for name in self.ids}
