"""Realistic segment definitions over the demo data (``profiles/demo.py`` fields), for the demo and benchmarks.

Each covers one kind of rule: profile attributes only, an event window, a count, a sum, a sequence (``chain``),
an absence, and a segment of segments. ``{name}`` inside a PQL text stands for the id of the demo definition
``name`` (created earlier in the list); :func:`create_demo_definitions` resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PURCHASE = "commerce.purchases"


@dataclass(frozen=True)
class DemoDefinition:
    key: str
    name: str
    description: str
    pql: str


DEMO_DEFINITIONS: list[DemoDefinition] = [
    DemoDefinition(
        "us_residents",
        "US residents",
        "Profile attributes only: home address in the United States.",
        'homeAddress.countryCode = "US"',
    ),
    DemoDefinition(
        "gold_members",
        "Gold and platinum loyalty members",
        "Profile attributes only: loyalty tier gold or platinum.",
        'loyalty.tier in ["gold", "platinum"]',
    ),
    DemoDefinition(
        "recent_buyers",
        "Purchased in the last 30 days",
        "Event window: at least one purchase in the 30 days before the evaluation time.",
        f'chain(xEvent, timestamp, [P: WHAT(eventType = "{PURCHASE}") WHEN(< 30 days before now)])',
    ),
    DemoDefinition(
        "frequent_visitors",
        "Frequent visitors",
        "Count: at least 10 page views in the last 30 days.",
        'xEvent[eventType = "web.webpagedetails.pageViews" and (timestamp occurs < 30 days before now)].count() >= 10',
    ),
    DemoDefinition(
        "big_spenders",
        "Big spenders",
        "Sum: more than 500 spent on purchases in the last 90 days.",
        f'xEvent[eventType = "{PURCHASE}" and (timestamp occurs < 90 days before now)]'
        ".sum(commerce.order.priceTotal) > 500",
    ),
    DemoDefinition(
        "view_add_buy",
        "Viewed, added to cart, then bought",
        "Sequence: a product view, then an add to cart, then a purchase, in that order (chain), the purchase "
        "in the last 60 days.",
        'chain(xEvent, timestamp, [V: WHAT(eventType = "commerce.productViews"), '
        'A: WHAT(eventType = "commerce.productListAdds"), '
        f'P: WHAT(eventType = "{PURCHASE}") WHEN(< 60 days before now)])',
    ),
    DemoDefinition(
        "cart_abandoners",
        "Cart abandoners",
        "Absence: added to cart in the last 7 days and bought nothing in those 7 days.",
        'chain(xEvent, timestamp, [A: WHAT(eventType = "commerce.productListAdds") WHEN(< 7 days before now)]) '
        f'and not(chain(xEvent, timestamp, [P: WHAT(eventType = "{PURCHASE}") WHEN(< 7 days before now)]))',
    ),
    DemoDefinition(
        "us_recent_buyers",
        "US recent buyers",
        "Segment of segments: US residents who purchased in the last 30 days.",
        'inSegment("{us_residents}") and inSegment("{recent_buyers}")',
    ),
    DemoDefinition(
        "vip_at_risk",
        "Gold members without a recent purchase",
        "Segment of segments with a negation: gold/platinum members not in 'Purchased in the last 30 days'.",
        'inSegment("{gold_members}") and not(inSegment("{recent_buyers}"))',
    ),
]


def resolve(pql: str, ids: dict[str, str]) -> str:
    for key, ident in ids.items():
        pql = pql.replace("{" + key + "}", ident)
    return pql


def create_demo_definitions(segment_definitions: Any) -> dict[str, dict[str, Any]]:
    """Create (or reuse, by name) every demo definition through ``segment_definitions`` (a service or client
    resource); ``{key: definition document}`` in creation order."""
    existing = {d["name"]: d for d in segment_definitions.list(limit="1000").get("segments", [])}
    ids: dict[str, str] = {}
    out: dict[str, dict[str, Any]] = {}
    for demo in DEMO_DEFINITIONS:
        doc = existing.get(demo.name)
        if doc is None:
            doc = segment_definitions.create(
                {
                    "name": demo.name,
                    "description": demo.description,
                    "schema": {"name": "_xdm.context.profile"},
                    "expression": {"type": "PQL", "format": "pql/text", "value": resolve(demo.pql, ids)},
                    "evaluationInfo": {"batch": {"enabled": True}},
                }
            )
        ids[demo.key] = doc["id"]
        out[demo.key] = doc
    return out
