"""Shared by the incremental-store and crash tests: randomized batches and "equals a full rebuild" checks."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb

from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.profiles.store import (
    build_events_store,
    build_identity_graph_store,
    build_merged_profiles,
)
from segmentation_pipelines.profiles.xdm import EVENT_CLASS, PROFILE_CLASS

from .helpers import ingest, write_jsonl

TS = {"id": "ts", "attributeMerge": {"type": "timestampOrdered"}}
DP = {"id": "dp", "attributeMerge": {"type": "dataSetPrecedence", "order": ["loy", "crm"]}}
POLICIES = [TS, DP]
STAT_KEYS_IGNORED = {"mode", "version", "seconds", "rounds"}


def build_all(layout: StoreLayout, profiles, events, policies=POLICIES) -> dict:
    return {
        "identity_graph": build_identity_graph_store(layout, profiles, events),
        "events": build_events_store(layout, events),
        **{f"merged/{p['id']}": build_merged_profiles(layout, profiles, p) for p in policies},
    }


def stats_of(results: dict) -> dict:
    return {k: {s: v for s, v in r.items() if s not in STAT_KEYS_IGNORED} for k, r in results.items()}


def snapshot(layout: StoreLayout, policies=POLICIES) -> dict:
    """Everything a reader sees, in a comparable form (events as a sorted multiset)."""

    def rows(sql: str) -> list:
        return duckdb.sql(sql).fetchall()

    out = {
        "identities": rows(
            f"SELECT * FROM read_parquet('{layout.identities_path()}') ORDER BY namespace, id"
        ),
        "events": rows(
            f"SELECT * FROM read_parquet('{layout.events_path()}', union_by_name=true) ORDER BY profile_id, _id"
        ),
        "event_columns": rows(
            f"DESCRIBE SELECT * FROM read_parquet('{layout.events_path()}', union_by_name=true)"
        ),
    }
    for p in policies:
        path = layout.profiles_path(p["id"])
        out[f"merged/{p['id']}"] = rows(f"SELECT * FROM read_parquet('{path}') ORDER BY profile_id")
        out[f"columns/{p['id']}"] = rows(f"DESCRIBE SELECT * FROM read_parquet('{path}')")
    return out


def full_rebuild(tmp: Path, source: StoreLayout, profiles, events, policies=POLICIES):
    """A fresh store over the same batch files (the datasets folder is shared through a symbolic link)."""
    layout = StoreLayout(tmp)
    layout.sandbox_root.mkdir(parents=True, exist_ok=True)
    (layout.sandbox_root / "datasets").symlink_to(source.sandbox_root / "datasets")
    results = build_all(layout, profiles, events, policies)
    assert all(r["mode"] == "full" for r in results.values()), results
    return layout, results


class World:
    """Seeded random batches: new people, updates of known people, links that merge two people, events of known
    and unknown identities, and a kiosk device that grows past the 50-identity guardrail."""

    def __init__(self, seed: int, tmp: Path, layout: StoreLayout):
        self.rnd = random.Random(seed)
        self.tmp, self.layout = tmp, layout
        self.people = 0
        self.n = 0
        self.clock = 1_700_000_000_000
        self.kiosk = 0
        self.profiles: list = []
        self.events: list = []

    def _identity(self, k: int) -> dict:
        kind = self.rnd.choice(["Email", "CRMID", "ECID"])
        return {kind: [{"id": f"{kind.lower()}{k}", "primary": kind == "Email"}]}

    def _file(self, rows: list) -> Path:
        self.n += 1
        return write_jsonl(self.tmp / f"in-{self.n}.jsonl", [json.dumps(r) for r in rows])

    def _ingest(self, dataset: str, cls: str, rows: list):
        self.clock += 1000
        ref = ingest(self.layout, dataset, cls, self._file(rows), ingested_ms=self.clock)[0]
        (self.events if cls == EVENT_CLASS else self.profiles).append(ref)
        return ref

    def profile_batch(self, new: int, updates: int, links: int):
        rnd, rows = self.rnd, []
        for _ in range(new):
            self.people += 1
            k = self.people
            ids = {
                "Email": [{"id": f"email{k}", "primary": True}],
                "CRMID": [{"id": f"crmid{k}", "primary": False}],
            }
            if rnd.random() < 0.5:
                ids["ECID"] = [{"id": f"ecid{k}", "primary": False}]
            rows.append(self._fragment(ids))
        for _ in range(min(updates, self.people)):
            rows.append(self._fragment(self._identity(rnd.randint(1, self.people))))
        for _ in range(links if self.people > 1 else 0):
            a, b = rnd.sample(range(1, self.people + 1), 2)
            rows.append(
                self._fragment({**self._identity(a), "loyaltyId": [{"id": f"loy{b}", "primary": False}]})
            )
            rows.append(
                self._fragment({"loyaltyId": [{"id": f"loy{b}", "primary": False}], **self._identity(b)})
            )
        if rows:
            self._ingest(rnd.choice(["crm", "loy"]), PROFILE_CLASS, rows)

    def _fragment(self, ids: dict) -> dict:
        rnd = self.rnd
        row: dict = {"identityMap": ids}
        if rnd.random() < 0.8:
            row["person"] = {"name": {"firstName": rnd.choice(["Ann", "Bob", "Cy", None])}}
        if rnd.random() < 0.6:
            row["loyalty"] = {"points": rnd.randint(0, 500), "tier": rnd.choice(["gold", "silver"])}
        if rnd.random() < 0.5:
            day = rnd.randint(1, 28)
            row["extSourceSystemAudit"] = {"lastUpdatedDate": f"2024-02-{day:02d}T00:00:00Z"}
        return row

    def event_batch(self, known: int, unknown: int, linked: int, kiosk: int = 0, commerce: bool = True):
        rnd, rows = self.rnd, []

        def event(ids: dict) -> dict:
            e = {
                "_id": f"ev{len(rows)}-{self.n}",
                "timestamp": f"2024-03-{rnd.randint(1, 28):02d}T10:00:00Z",
                "eventType": rnd.choice(["commerce.purchases", "web.webpagedetails.pageViews"]),
                "identityMap": ids,
            }
            if commerce and rnd.random() < 0.5:
                e["commerce"] = {"order": {"priceTotal": rnd.randint(1, 99)}}
            return e

        for _ in range(known if self.people else 0):
            rows.append(event(self._identity(rnd.randint(1, self.people))))
        for i in range(unknown):
            rows.append(event({"ECID": [{"id": f"anon{self.n}-{i}", "primary": False}]}))
        for _ in range(linked if self.people else 0):  # an anonymous visitor logs in: ECID + known email
            k = rnd.randint(1, self.people)
            rows.append(event({"ECID": [{"id": f"web{self.n}-{k}"}], "Email": [{"id": f"email{k}"}]}))
        for _ in range(kiosk):  # one device every visitor logs in on: a graph that outgrows the guardrail
            self.kiosk += 1
            rows.append(event({"Phone": [{"id": "kiosk"}], "ECID": [{"id": f"kiosk-visitor{self.kiosk}"}]}))
        if rows:
            self._ingest("web", EVENT_CLASS, rows)
