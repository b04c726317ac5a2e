"""The demo data generator: deterministic, overlapping identities, realistic funnels inside the time window."""

from __future__ import annotations

import datetime as dt
import hashlib

import duckdb

from segmentation_pipelines.profiles.demo import generate_demo

AS_OF = dt.datetime(2026, 1, 15)


def _digest(files) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in [*files.crm, *files.loyalty, *files.events]]


def test_demo_is_deterministic_and_realistic(tmp_path):
    a = generate_demo(tmp_path / "a", profiles=3000, events=30000, seed=7, as_of=AS_OF)
    b = generate_demo(tmp_path / "b", profiles=3000, events=30000, seed=7, as_of=AS_OF)
    assert _digest(a) == _digest(b)
    c = generate_demo(tmp_path / "c", profiles=3000, events=30000, seed=8, as_of=AS_OF)
    assert _digest(a) != _digest(c)
    assert 0.8 < a.crm_rows / 3000 < 0.9 and 0.3 < a.loyalty_rows / 3000 < 0.4
    assert abs(a.event_rows - 30000) < 1500

    root = tmp_path / "a"
    con = duckdb.connect()
    ids = """(SELECT e.key AS ns, v.id FROM (SELECT unnest(identityMap) AS e FROM read_parquet('{}/{}/*.parquet')),
              unnest(e.value) AS t(v))"""
    shared_emails = con.execute(
        f"SELECT count(*) FROM {ids.format(root, 'crm')} c JOIN {ids.format(root, 'loyalty')} l USING (ns, id) "
        "WHERE ns = 'Email'"
    ).fetchall()[0][0]
    assert shared_emails > 0.25 * a.loyalty_rows  # CRM and loyalty overlap through the email
    ev = f"read_parquet('{root}/events/*.parquet', union_by_name=true)"
    lo, hi = con.execute(f"SELECT min(timestamp), max(timestamp) FROM {ev}").fetchall()[0]
    assert AS_OF - dt.timedelta(days=396) <= lo and hi < AS_OF
    types = dict(con.execute(f"SELECT eventType, count(*) FROM {ev} GROUP BY ALL").fetchall())
    assert set(types) == {
        "web.webpagedetails.pageViews",
        "commerce.productViews",
        "commerce.productListAdds",
        "commerce.checkouts",
        "commerce.purchases",
        "directMarketing.emailOpened",
        "directMarketing.emailClicked",
    }
    assert (
        types["web.webpagedetails.pageViews"] > types["commerce.productViews"] > types["commerce.purchases"]
    )
    # Every purchase follows a view of the same product by the same browser.
    orphans = con.execute(
        f"""SELECT count(*) FROM {ev} p WHERE p.eventType = 'commerce.purchases' AND NOT EXISTS (
              SELECT 1 FROM {ev} v WHERE v.eventType = 'commerce.productViews'
              AND v.identityMap[1].value[1].id = p.identityMap[1].value[1].id
              AND v.productListItems[1].SKU = p.productListItems[1].SKU AND v.timestamp < p.timestamp)"""
    ).fetchall()[0][0]
    assert orphans == 0
    priced = con.execute(
        f"SELECT bool_and(commerce.order.priceTotal > 0 AND commerce.order.currencyCode IS NOT NULL) "
        f"FROM {ev} WHERE eventType = 'commerce.purchases'"
    ).fetchall()[0][0]
    assert priced
    # Skewed activity: the busiest 10% of browsers make far more than 10% of the events.
    share = con.execute(
        f"""WITH c AS (SELECT identityMap[1].value[1].id AS who, count(*) AS n FROM {ev} GROUP BY 1)
        SELECT sum(n) FILTER (WHERE r <= (SELECT count(*) FROM c) / 10) / sum(n)
        FROM (SELECT n, row_number() OVER (ORDER BY n DESC) AS r FROM c)"""
    ).fetchall()[0][0]
    assert share > 0.3


def test_build_demo_ingests_and_materializes_and_is_idempotent(settings):
    from segmentation_pipelines.cli.demo_data import build_demo, format_summary

    first = build_demo(settings, profiles=1500, events=15000, as_of=AS_OF)
    assert first["dagster"]["store"]["status"] == "current"
    assets = first["dagster"]["assets"]
    graph = assets["profiles/identity_graph"]
    assert graph["fragments"] == first["generated"]["crm_rows"] + first["generated"]["loyalty_rows"]
    assert (
        graph["events"]
        == first["generated"]["event_rows"]
        == assets["profiles/experience_events"]["events"]
        + assets["profiles/experience_events"]["events_excluded"]
    )
    # The kiosk browser joins 60 customers into one graph over the guardrail: excluded, with their events.
    assert graph["excluded_components"] == 1 and graph["largest_component"] > 50
    assert assets["profiles/experience_events"]["events_excluded"] >= 60
    # Fragments of one person in CRM and loyalty merge: fewer profiles than people + anonymous visitors.
    assert graph["profiles"] < 1500 + 300
    merged = [v for k, v in assets.items() if k.startswith("profiles/merged_profiles/")]
    assert len(merged) == 2 and {m["attribute_merge"] for m in merged} == {
        "timestampOrdered",
        "dataSetPrecedence",
    }
    assert any("identity graph" in line for line in format_summary(first))

    again = build_demo(settings, profiles=1500, events=15000, as_of=AS_OF)
    assert all(b["duplicate"] for b in again["batches"].values())
    assert again["datasets"] == first["datasets"]
    assert again["dagster"]["assets"]["profiles/identity_graph"]["events"] == graph["events"]

    other_day = build_demo(settings, profiles=1500, events=15000, as_of=AS_OF + dt.timedelta(days=1))
    assert not any(b.get("duplicate") for b in other_day["batches"].values())
    assert (
        other_day["dagster"]["assets"]["profiles/identity_graph"]["events"]
        == other_day["generated"]["event_rows"]
    )
