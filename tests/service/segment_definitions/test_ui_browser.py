"""The Dagster UI as a person reads it, in a real headless Chromium against a real ``segmentation-pipelines dev``
(API, webserver and daemon on free ports), with a small store and definitions created through the public client
over HTTP (issue 17, part 3):

* no first-visit pop-up covers the asset catalog (a fresh browser profile: every such prompt would show);
* the catalog's search box finds an audience by its name as typed, and after a rename by its new name (the
  ``audience`` tag the search box suggests); the key itself is kept across the rename;
* the asset page shows the name, the members (Dagster's "Row count") and the change since the previous
  evaluation (``members_delta``); the lineage shows the asset by name with its member counts per evaluation day;
* the schedule and the sensors are listed under names that say what they are.

Screenshots of each step go to ``$SEGMENTATION_UI_SCREENSHOTS`` (default: the test's tmp folder).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from running import graphql, serving, wait_for

from segmentation_pipelines import SegmentationClient

from .browser import browser_page, screenshot_dir

BUY = "commerce.purchases"
RECENT_PQL = f'chain(xEvent, timestamp, [A: WHAT(eventType = "{BUY}") WHEN(< 7 days before now)])'
# who -> days before now of their purchase: Ann is a recent buyer ten days ago only, Bob and Cat now.
PURCHASES = {"ann": 12, "bob": 2, "cat": 1}
POINTS = {"ann": 10, "bob": 10, "cat": 10, "dan": 900}

SEGMENT_NODES = """{ assetNodes(group: {groupName: "segments", repositoryName: "__repository__",
  repositoryLocationName: "segmentation_pipelines"}) { assetKey { path } description } }"""
# What the UI's search box, lineage and asset pages are built from, besides the key.
NO_DIALOG = '[role="dialog"], .bp5-overlay-open, .bp6-overlay-open'


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _identity(who: str) -> dict:
    return {"Email": [{"id": f"{who}@example.com", "primary": True}]}


def _load(client: SegmentationClient, folder: Path, now: datetime) -> None:
    people = client.datasets.create({"name": "crm", "schema": {"name": "_xdm.context.profile"}})
    events = client.datasets.create({"name": "web", "schema": {"name": "_xdm.context.experienceevent"}})
    rows = [{"identityMap": _identity(who), "loyalty": {"points": p}} for who, p in POINTS.items()]
    bought = [
        {
            "_id": f"{who}-buy",
            "timestamp": (now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventType": BUY,
            "identityMap": _identity(who),
        }
        for who, days in PURCHASES.items()
    ]
    client.datasets.upload(people["id"], [_write(folder / "crm.jsonl", rows)])
    client.datasets.upload(events["id"], [_write(folder / "web.jsonl", bought)])


def _definition(client: SegmentationClient, name: str, pql: str) -> dict:
    return client.segment_definitions.create(
        {"name": name, "expression": {"type": "PQL", "format": "pql/text", "value": pql}}
    )


def _search(page, text: str) -> None:
    """Type into the asset catalog's search box (a CodeMirror editor) as a person does."""
    box = page.locator(".CodeMirror").first
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    page.keyboard.type(text, delay=30)


def _asset_link(page, key: str):
    return page.locator(f'a[href="/assets/{key}"]')


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(900)
def test_the_dagster_ui_reads_by_name_in_a_real_browser(tmp_path):
    shots = screenshot_dir(tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    with browser_page() as page:  # before the servers: no chromium -> skip (a failure in CI) at once
        with (
            serving(tmp_path / "home", "dev", startup_s=240) as (url, dagster_url),
            SegmentationClient(base_url=url, timeout=300) as client,
        ):
            _load(client, tmp_path, now)
            recent = _definition(client, "Recent buyers", RECENT_PQL)
            vip = _definition(client, "VIP", "loyalty.points >= 500")
            recent_key = recent["dagster"]["assetKey"]
            vip_key = vip["dagster"]["assetKey"]
            assert recent_key == f"segment/Recent_buyers__{recent['id'].replace('-', '')[:8]}"
            # Two evaluations: ten days ago (Ann), then now (Bob, Cat): 2 members, +1 since the previous one.
            for when, ids in ((now - timedelta(days=10), [recent]), (None, [recent, vip])):
                job = client.segment_jobs.create(
                    [{"segmentId": d["id"]} for d in ids], evaluation_time=when, wait=True, poll=0.5
                )
                assert job["status"] == "SUCCEEDED", job.get("errors")
            schedule = client.schedules.create(
                {
                    "name": "Nightly recent buyers",
                    "type": "batch_segmentation",
                    "properties": {"segments": [recent["id"]]},
                    "schedule": "0 0 1 * * ?",
                }
            )
            # A rename keeps the key; the name shown (description, audience tag) follows it.
            renamed = client.segment_definitions.update(vip["id"], {**vip, "name": "Big spenders"})
            assert renamed["dagster"]["assetKey"] == vip_key

            def reloaded():
                nodes = {
                    "/".join(n["assetKey"]["path"]): n["description"]
                    for n in graphql(dagster_url, SEGMENT_NODES)["assetNodes"]
                }
                return set(nodes) == {recent_key, vip_key} and nodes[vip_key].startswith("Big spenders")

            wait_for(reloaded, 180, "the webserver to load both segments, the rename included")

            # The catalog, first visit of a fresh profile: nothing covers it.
            page.goto(f"{dagster_url}/assets")
            _asset_link(page, recent_key).first.wait_for()
            page.wait_for_timeout(1500)  # a first-visit prompt opens once the page has loaded
            page.screenshot(path=str(shots / "1-catalog.png"))
            assert page.locator(NO_DIALOG).count() == 0, "a pop-up covers the asset catalog"

            # The search box finds an audience by its name as written.
            _search(page, "Recent buyers")
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(r"asset-selection="))
            _asset_link(page, recent_key).first.wait_for()
            page.screenshot(path=str(shots / "2-search-by-name.png"))
            assert _asset_link(page, vip_key).count() == 0

            # ... and a renamed audience by its new name: the search box suggests its audience tag.
            _search(page, "Big spenders")
            suggestion = page.get_by_text("audience=Big_spenders", exact=True)
            suggestion.first.wait_for()
            page.screenshot(path=str(shots / "3-search-suggests-the-new-name.png"))
            suggestion.first.click()  # the last word becomes tag:"audience"="Big_spenders"
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(r"asset-selection=.*tag%3A%22audience%22%3D%22Big_spenders%22"))
            _asset_link(page, vip_key).first.wait_for()
            assert _asset_link(page, recent_key).count() == 0
            page.screenshot(path=str(shots / "4-search-by-new-name.png"))

            # The asset page: the name, the members (Row count) and the change since the last evaluation.
            page.goto(f"{dagster_url}/assets/{recent_key}")
            page.get_by_text("Recent buyers", exact=True).first.wait_for()
            row_count = page.get_by_text("Row count", exact=True).first.locator("xpath=..")
            assert row_count.inner_text().split() == ["Row", "count", "2"]
            delta = page.locator("tr", has=page.get_by_text("members_delta", exact=True)).first
            assert delta.inner_text().split()[-1] == "1"
            page.screenshot(path=str(shots / "5-asset-page.png"), full_page=True)
            page.goto(f"{dagster_url}/assets/{vip_key}")
            page.get_by_text("Big spenders", exact=True).first.wait_for()
            page.screenshot(path=str(shots / "6-renamed-asset-page.png"))

            # The lineage: the node by name, and (selected) its member counts per evaluation day.
            group = quote('group:"segments"')
            page.goto(f"{dagster_url}/asset-groups~{group}/{quote(recent_key, safe='')}")
            page.get_by_text(recent_key.split("/")[1], exact=True).first.wait_for()
            page.get_by_text("Metadata plots", exact=True).first.wait_for()
            for plot in ("dagster/row_count", "members", "members_delta"):
                page.get_by_text(plot, exact=True).first.wait_for()
            page.screenshot(path=str(shots / "7-lineage.png"))

            # Automation: the schedule and the sensors by what they do.
            page.goto(f"{dagster_url}/automation")
            page.get_by_text(schedule["dagster"]["scheduleName"], exact=True).first.wait_for()
            assert schedule["dagster"]["scheduleName"].startswith("Nightly_recent_buyers__")
            for sensor in ("segment_job_launcher", "schedule_state_writeback", "profile_store_refresher"):
                page.get_by_text(sensor, exact=True).first.wait_for()
            page.screenshot(path=str(shots / "8-automation.png"), full_page=True)
