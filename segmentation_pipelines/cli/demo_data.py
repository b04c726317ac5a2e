"""Demo data for the profile store: ``segmentation-pipelines demo-data`` and :func:`build_demo`.

:func:`build_demo` generates the seeded demo files, creates the three demo datasets (CRM profiles, loyalty
profiles, web/app events) in the catalog, ingests the files, makes sure of the default merge policy plus a
``CRM first`` dataset-precedence policy, and materializes the profile assets through Dagster (an instance under
``settings.dagster_home``), returning a summary. The ``demo`` command calls it; ``demo-data`` is the same from the
command line, or only the files with ``--files-only``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import click

from segmentation_pipelines.settings import Settings

DEMO_DATASETS = {
    "crm": ("Demo CRM profiles", "_xdm.context.profile"),
    "loyalty": ("Demo loyalty profiles", "_xdm.context.profile"),
    "events": ("Demo web and app events", "_xdm.context.experienceevent"),
}
CRM_FIRST_POLICY = "CRM first (dataset precedence)"
DEFAULT_PROFILES = 20_000
DEFAULT_EVENTS = 400_000


def _dataset(services, name: str, xdm_class: str) -> dict:
    found = services.datasets.list(name=name)
    if found:
        return next(iter(found.values()))
    return services.datasets.create({"name": name, "xdmClass": xdm_class, "tags": {"demo": ["true"]}})


def _policy(services, name: str, order: list[str]) -> dict:
    for p in services.merge_policies.list(limit="1000")["children"]:
        if p["name"] == name:
            return p
    return services.merge_policies.create(
        {"name": name, "attributeMerge": {"type": "dataSetPrecedence", "order": order}}
    )


def store_materializations(settings: Settings, org_id: str | None, sandbox: str) -> dict[str, Any]:
    """The latest Dagster materialization of each profile asset of a sandbox: ``{asset key: metadata}``."""
    # Imported when the command runs: keeps the CLI's start fast.
    import dagster as dg

    from segmentation_pipelines.dagster_launcher import instance_for
    from segmentation_pipelines.launcher import EVENTS_ASSET, IDENTITY_GRAPH_ASSET, merged_profiles_asset_key
    from segmentation_pipelines.service.context import ServiceContext
    from segmentation_pipelines.service.services import Services

    services = Services(ServiceContext.create(settings, org_id=org_id, sandbox=sandbox))
    policies = services.merge_policies.list(limit="1000")["children"]
    keys = [IDENTITY_GRAPH_ASSET, EVENTS_ASSET, *(merged_profiles_asset_key(p["id"]) for p in policies)]
    out: dict[str, Any] = {}
    for parts in keys:
        event = instance_for(settings).get_latest_materialization_event(dg.AssetKey(parts))
        if event is not None and event.asset_materialization is not None:
            meta = event.asset_materialization.metadata
            out["/".join(parts)] = {k: v.value for k, v in meta.items()} | {"run_id": event.run_id}
    return out


def build_demo(
    settings: Settings,
    sandbox: str = "prod",
    profiles: int = DEFAULT_PROFILES,
    events: int = DEFAULT_EVENTS,
    seed: int = 42,
    as_of: dt.datetime | None = None,
    org_id: str | None = None,
) -> dict[str, Any]:
    """Generate, ingest and build the demo profile store; returns a summary (datasets, batches, assets, timings)."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.profiles.demo import generate_demo
    from segmentation_pipelines.service.context import ServiceContext
    from segmentation_pipelines.service.services import Services

    started = time.perf_counter()
    ctx = ServiceContext.create(settings, org_id=org_id, sandbox=sandbox)
    services = Services(ctx)
    files = generate_demo(
        settings.home / "demo-data" / sandbox, profiles=profiles, events=events, seed=seed, as_of=as_of
    )
    generated_s = time.perf_counter() - started

    datasets, batches = {}, {}
    for kind, (name, xdm_class) in DEMO_DATASETS.items():
        datasets[kind] = _dataset(services, name, xdm_class)["id"]
    default_policy = services.merge_policies.ensure_default()
    crm_first = _policy(services, CRM_FIRST_POLICY, [datasets["crm"], datasets["loyalty"]])
    for kind in DEMO_DATASETS:
        ds = {"id": datasets[kind]}
        # Each ingestion brings the profile store current (Dagster runs materializing the profile assets).
        batch = services.datasets.ingest(ds["id"], [str(p) for p in getattr(files, kind)])
        # A demo built again with other data (another day, size or seed) replaces the earlier demo batches.
        for other in services.datasets.batches(ds["id"]):
            if other != batch["id"]:
                services.datasets.delete_batch(other)
        batches[kind] = {
            k: batch.get(k) for k in ("id", "status", "rowCount", "rejectedRowCount", "duplicate")
        }
    store = services.profile_store.refresh(reason="demo")  # current already, unless a demo batch was replaced
    ingested_s = time.perf_counter() - started - generated_s
    built = {"store": store, "assets": store_materializations(settings, org_id, sandbox)}
    return {
        "sandbox": sandbox,
        "org_id": ctx.org_id,
        "sandbox_root": str(ctx.sandbox_root),
        "generated": {k: v for k, v in files.as_dict().items() if k != "files"},
        "datasets": datasets,
        "batches": batches,
        "merge_policies": {"default": default_policy["id"], "crm_first": crm_first["id"]},
        "dagster": built,
        "seconds": {
            "generate": round(generated_s, 2),
            "ingest": round(ingested_s, 2),
            "total": round(time.perf_counter() - started, 2),
        },
    }


def format_summary(summary: dict[str, Any]) -> list[str]:
    """Human-readable lines of a :func:`build_demo` summary."""
    g = summary["generated"]
    lines = [
        f"generated        {g['profiles']:,} people: {g['crm_rows']:,} CRM + {g['loyalty_rows']:,} loyalty fragments, "
        f"{g['event_rows']:,} events (as of {g['as_of']})",
    ]
    for kind, b in summary["batches"].items():
        dup = " (already ingested)" if b.get("duplicate") else ""
        lines.append(
            f"dataset {kind:<8} {summary['datasets'][kind]}: batch {b['id']} {b['status']}, "
            f"{b['rowCount']:,} rows, {b['rejectedRowCount']:,} rejected{dup}"
        )
    assets = summary["dagster"]["assets"]
    graph = assets.get("profiles/identity_graph", {})
    lines.append(
        f"identity graph   {graph.get('identities', 0):,} identities -> {graph.get('profiles', 0):,} profiles; "
        f"{graph.get('excluded_components', 0)} identity graph(s) over 50 identities excluded "
        f"(largest: {graph.get('largest_component', 0)} identities)"
    )
    ev = assets.get("profiles/experience_events", {})
    lines.append(
        f"events           {ev.get('events', 0):,} keyed to merged profiles "
        f"({ev.get('events_excluded', 0):,} of excluded identity graphs left out)"
    )
    for key, meta in assets.items():
        if key.startswith("profiles/merged_profiles/"):
            lines.append(
                f"merged profiles  {meta.get('profiles', 0):,} under policy {meta.get('merge_policy_id')} "
                f"({meta.get('attribute_merge')}) in {meta.get('duration_s')} s"
            )
    s = summary["seconds"]
    lines.append(f"time             generate {s['generate']} s, ingest and store {s['ingest']} s")
    lines.append(
        f"profile store    {summary['dagster']['store']['status']}: the asset group 'profiles' in the Dagster UI "
        "shows each refresh"
    )
    return lines


@click.command("demo-data")
@click.option(
    "--home", type=click.Path(path_type=Path), default=None, help="Home folder (default: SEGMENTATION_HOME)"
)
@click.option("--sandbox", default="prod", show_default=True)
@click.option("--profiles", type=int, default=DEFAULT_PROFILES, show_default=True, help="People")
@click.option(
    "--events", type=int, default=DEFAULT_EVENTS, show_default=True, help="Experience events (about)"
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="End of the 13-month event window (default: today 00:00 UTC)",
)
@click.option(
    "--files-only",
    type=click.Path(path_type=Path),
    default=None,
    help="Only write the Parquet files into this folder (no catalog, no Dagster)",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON")
def demo_data(home, sandbox, profiles, events, seed, as_of, files_only, as_json) -> None:
    """Generate the seeded demo data, ingest it and build the profile store through Dagster."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.settings import get_settings

    if files_only:
        from segmentation_pipelines.profiles.demo import generate_demo

        files = generate_demo(files_only, profiles=profiles, events=events, seed=seed, as_of=as_of)
        click.echo(json.dumps(files.as_dict(), indent=2))
        return
    summary = build_demo(
        get_settings(home=home), sandbox=sandbox, profiles=profiles, events=events, seed=seed, as_of=as_of
    )
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    for line in format_summary(summary):
        click.echo(line)
