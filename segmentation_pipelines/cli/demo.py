"""``segmentation-pipelines demo``: prepare a home folder and run the main job on demo data.

:func:`run_demo` is the demo; the CLI command only prints what it did. Each step is a small function appending
lines to the report; later steps (demo data, ingestion, segment definitions, the main job) are added to
:data:`STEPS` in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from segmentation_pipelines.settings import Settings


@dataclass
class DemoRun:
    """What the demo works on and what it did (shown to the user, returned to callers and tests)."""

    settings: Settings
    org_id: str
    sandbox: str
    options: dict[str, Any] = field(default_factory=dict)
    report: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def say(self, line: str) -> None:
        self.report.append(line)


def prepare_home(run: DemoRun) -> None:
    settings = run.settings
    settings.ensure_home()
    run.say(f"home folder      {settings.home}")
    run.say(f"data root        {settings.data_root}")


def prepare_catalog(run: DemoRun) -> None:
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.service.context import ServiceContext

    ctx = ServiceContext.create(run.settings, run.org_id, run.sandbox)
    run.results["context"] = ctx
    run.say(f"catalog          {_hide_password(run.settings.resolved_catalog_url)} (schema up to date)")
    run.say(f"scope            org {ctx.org_id}, sandbox {ctx.sandbox} -> {ctx.sandbox_root}")


def prepare_dagster(run: DemoRun) -> None:
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.dagster_home import prepare_dagster_home, selected_config

    dagster_home = prepare_dagster_home(run.settings)
    run.results["dagster_home"] = dagster_home
    run.say(f"DAGSTER_HOME     {dagster_home} (dagster.yaml from {selected_config()})")


def load_demo_data(run: DemoRun) -> None:
    """Generate the seeded demo data, ingest it and build the profile store (``cli/demo_data.py``)."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.cli.demo_data import (
        DEFAULT_EVENTS,
        DEFAULT_PROFILES,
        build_demo,
        format_summary,
    )

    summary = build_demo(
        run.settings,
        sandbox=run.sandbox,
        org_id=run.org_id,
        profiles=int(run.options.get("profiles") or DEFAULT_PROFILES),
        events=int(run.options.get("events") or DEFAULT_EVENTS),
    )
    run.results["demo_data"] = summary
    for line in format_summary(summary):
        run.say(line)


def create_definitions(run: DemoRun) -> None:
    """The demo segment definitions (``service/demo_definitions.py``): profile-only, windows, counts, sums, a
    chain, an absence, segments of segments."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.service.demo_definitions import DEMO_DEFINITIONS, create_demo_definitions
    from segmentation_pipelines.service.services import Services

    created = create_demo_definitions(Services(run.results["context"]).segment_definitions)
    run.results["definitions"] = created
    run.say(f"definitions      {len(created)} segment definitions:")
    for demo in DEMO_DEFINITIONS:
        doc = created[demo.key]
        run.say(f"  {doc['id']}  {demo.name}: {doc['expression']['value']}")


def run_segment_jobs(run: DemoRun) -> None:
    """The main job: two segment jobs through Dagster, a day apart (so members realize, stay and exit), each
    evaluating every definition at one evaluation time; prints every audience's counts."""
    # Imported when the command runs: keeps the CLI's start fast.
    import datetime as dt

    from segmentation_pipelines.service.services import Services

    jobs = Services(run.results["context"]).segment_jobs
    definitions = run.results["definitions"]
    as_of = dt.datetime.fromisoformat(run.results["demo_data"]["generated"]["as_of"]).replace(tzinfo=dt.UTC)
    body = [{"segmentId": d["id"]} for d in definitions.values()]
    run.results["jobs"] = []
    for when in (as_of - dt.timedelta(days=1), as_of):
        job = jobs.create(body, evaluation_time=when, wait=True)
        run.results["jobs"].append(job)
        seconds = job["metrics"]["totalTime"].get("totalTimeInMs", 0) / 1000
        run.say(
            f"segment job      {job['id']} at {job.get('evaluationTime')}: {job['status']} in {seconds:.1f} s "
            f"(Dagster run {job.get('computeGatewayJobId')})"
        )
        if job["status"] != "SUCCEEDED":
            for error in job.get("errors") or []:
                run.say(f"  error {error.get('code')}: {error.get('msg')}")
            continue
        metrics = job["metrics"]
        run.say(
            f"  {metrics.get('totalProfiles', 0):,} profiles scanned; "
            f"evaluation {metrics['profileSegmentationTime'].get('totalTimeInMs', 0) / 1000:.1f} s"
        )
        run.say(f"  {'audience':<40} {'members':>9} {'realized':>9} {'existing':>9} {'exited':>9}")
        for doc in definitions.values():
            counts = metrics.get("segmentedProfileByStatusCounter", {}).get(doc["id"], {})
            members = metrics.get("segmentedProfileCounter", {}).get(doc["id"], 0)
            run.say(
                f"  {doc['name'][:40]:<40} {members:>9,} {counts.get('realized', 0):>9,} "
                f"{counts.get('existing', 0):>9,} {counts.get('exited', 0):>9,}"
            )
    last = run.results["jobs"][-1]
    run.say(
        "Dagster UI       segmentation-pipelines dev, then: asset group 'segments' (one asset per definition, "
        "member counts plotted per evaluation), Runs -> "
        f"{last.get('computeGatewayJobId')}, Sensors -> segment_job_launcher"
    )
    run.say(
        f"members          client.audiences.members('<definition id>') or GET /data/core/ups/audiences/<id>/members; "
        f"job: client.segment_jobs.get('{last['id']}')"
    )


def activate_daily_schedule(run: DemoRun) -> None:
    """Switch on the sandbox's default daily batch schedule (every definition), so that the daemon of
    ``segmentation-pipelines dev`` evaluates the audiences every day."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.service.schedules import default_schedule_id
    from segmentation_pipelines.service.services import Services

    ctx = run.results["context"]
    schedules = Services(ctx).schedules
    schedule_id = default_schedule_id(ctx.org_id, ctx.sandbox)
    schedules.update(schedule_id, [{"op": "add", "path": "/state", "value": "active"}])
    doc = schedules.get(schedule_id)
    run.results["schedule"] = doc
    run.say(
        f"schedule         '{doc['name']}' {doc['state']}: {doc['schedule']} (Quartz) = "
        f"{doc['dagster']['cron']} {doc['dagster']['executionTimezone']} in Dagster "
        f"({doc['dagster']['scheduleName']}, runs under segmentation-pipelines dev)"
    )


# The demo, in order.
STEPS: list[Callable[[DemoRun], None]] = [
    prepare_home,
    prepare_catalog,
    prepare_dagster,
    load_demo_data,
    create_definitions,
    run_segment_jobs,
    activate_daily_schedule,
]


def run_demo(settings: Settings, org_id: str | None = None, sandbox: str = "prod", **options: Any) -> DemoRun:
    """Run every demo step against ``settings``' home folder; returns what was done."""
    run = DemoRun(settings=settings, org_id=org_id or settings.default_org, sandbox=sandbox, options=options)
    for step in STEPS:
        step(run)
    return run


def _hide_password(url: str) -> str:
    # Imported when the command runs: keeps the CLI's start fast.
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.command()
@click.option(
    "--home", type=click.Path(path_type=Path), default=None, help="Home folder (default: SEGMENTATION_HOME)"
)
@click.option("--sandbox", default="prod", show_default=True, help="Sandbox to run the demo in")
@click.option("--profiles", type=int, default=None, help="People in the demo data (default 20,000)")
@click.option("--events", type=int, default=None, help="Experience events in the demo data (default 400,000)")
def demo(home: Path | None, sandbox: str, profiles: int | None, events: int | None) -> None:
    """Prepare the home folder and run the demo end to end, printing what it did."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.settings import get_settings

    run = run_demo(get_settings(home=home), sandbox=sandbox, profiles=profiles, events=events)
    click.echo("segmentation-pipelines demo")
    for line in run.report:
        click.echo(f"  {line}")
    click.echo("done. Open the Dagster UI with: segmentation-pipelines dev")
