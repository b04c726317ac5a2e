"""A snapshot of what ``definitions.py`` builds from a fixed catalog: every asset spec (key, group, kinds, deps,
partitions, tags, metadata names), job, schedule and sensor. Any change to the code location shows here and must be
reviewed: run with ``SEGMENTATION_UPDATE_SNAPSHOT=1`` to rewrite ``snapshots/definitions.json``, then read the diff.

The catalog is made through the public client (the scenario's datasets and definitions, a schedule, an export job,
an external audience); ids are random, so each is written as the name it was given.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import dagster as dg
import pytest
from service.segment_jobs.scenario import Scenario

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.dagster_launcher import load_definitions
from segmentation_pipelines.landing import landing_dir
from segmentation_pipelines.launcher import id_suffix, key_part
from segmentation_pipelines.settings import get_settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


@pytest.fixture
def client(tmp_path, monkeypatch):
    home = tmp_path / "home"
    settings = get_settings(home=home)
    monkeypatch.setenv("SEGMENTATION_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    monkeypatch.delenv("SEGMENTATION_CATALOG_URL", raising=False)
    with SegmentationClient(home=home) as client:
        yield client


def fixed_catalog(client, tmp_path) -> dict[str, str]:
    """The catalog of the snapshot; returns id -> the name the snapshot writes for it."""
    scenario = Scenario(client, tmp_path).load()
    names = {ident: f"definition:{name}" for name, ident in scenario.ids.items()}
    names |= {ident: f"dataset:{d['name']}" for ident, d in client.datasets.list().items()}
    names |= {p["id"]: f"merge_policy:{p['name']}" for p in client.merge_policies.list()["children"]}
    schedule = client.schedules.create(
        {
            "name": "nightly loyal",
            "type": "batch_segmentation",
            "properties": {"segments": [scenario.ids["loyal"]]},
            "schedule": "0 30 2 * * ?",
            "state": "active",
        }
    )
    names[schedule["id"]] = "schedule:nightly loyal"
    outbox = client.datasets.create({"name": "outbox", "schema": {"name": "_xdm.context.profile"}})
    names[outbox["id"]] = "dataset:outbox"
    client.export_jobs.create(
        {
            "filter": {"segments": [{"segmentId": scenario.ids["us"]}]},
            "destination": {"datasetId": outbox["id"]},
            "schema": {"name": "_xdm.context.profile"},
        }
    )
    settings = get_settings(home=client.ctx.settings.home)
    (landing_dir(settings.landing, settings.default_org, "prod") / "drops").mkdir(parents=True)
    created = client.external_audiences.create(
        {
            "name": "uploaded",
            "fields": [{"name": "email", "type": "string", "identityNs": "Email"}],
            "sourceSpec": {"params": {"path": "drops", "type": "folder"}},
            "originName": "CUSTOM_UPLOAD",
        },
        wait=True,
    )
    names[client.external_audiences.operation(created["operationId"])["audienceId"]] = (
        "external_audience:uploaded"
    )
    return names


def normalizer(names: dict[str, str]):
    """Replaces every id (as itself, as a key part, and as the 8-character suffix of a readable key) by its name."""
    forms = {}
    for ident, name in names.items():
        forms[ident] = f"<{name}>"
        forms[key_part(ident)] = f"<{name}>"
        forms[id_suffix(ident)] = f"<{name}>"
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))

    def normal(value):
        if isinstance(value, str):
            return pattern.sub(lambda m: forms[m.group(0)], value)
        if isinstance(value, list | tuple):  # every list here is a set, written sorted
            return sorted(normal(v) for v in value)
        if isinstance(value, dict):
            return {normal(k): normal(v) for k, v in value.items()}
        return value

    return normal


def describe(definitions: dg.Definitions) -> dict:
    repo = definitions.get_repository_def()
    graph = repo.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        spec = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "tags": dict(sorted(node.tags.items())),
            "metadata": sorted(node.metadata),
            "description": node.description,
            "executable": node.is_executable,
        }
        assets[key.to_user_string()] = spec
    checks = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys)
    jobs = {
        job.name: {"partitioned": job.partitions_def is not None}
        for job in sorted(repo.get_all_jobs(), key=lambda j: j.name)
    }
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "job": s.job_name,
            "default_status": s.default_status.value,
        }
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        s.name: {
            "type": type(s).__name__,
            "minimum_interval_seconds": s.minimum_interval_seconds,
            "default_status": s.default_status.value,
            "jobs": sorted(t.job_name for t in s.targets),
        }
        for s in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    return {
        "assets": assets,
        "asset_checks": checks,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
    }


def test_definitions_match_the_reviewed_snapshot(client, tmp_path):
    names = fixed_catalog(client, tmp_path)
    definitions = load_definitions(get_settings(home=client.ctx.settings.home))
    built = json.loads(json.dumps(normalizer(names)(describe(definitions)), sort_keys=True, default=str))
    if os.environ.get("SEGMENTATION_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(built, indent=2, sort_keys=True) + "\n")
    reviewed = json.loads(SNAPSHOT.read_text())
    for part in ("assets", "asset_checks", "jobs", "schedules", "sensors"):
        assert built[part] == reviewed[part], (
            f"the code location's {part} changed: review the change, then rewrite {SNAPSHOT.name} with "
            "SEGMENTATION_UPDATE_SNAPSHOT=1"
        )
