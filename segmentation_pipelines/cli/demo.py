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

from segmentation_pipelines.cli import main
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
    from segmentation_pipelines.service.context import ServiceContext

    ctx = ServiceContext.create(run.settings, run.org_id, run.sandbox)
    run.results["context"] = ctx
    run.say(f"catalog          {_hide_password(run.settings.resolved_catalog_url)} (schema up to date)")
    run.say(f"scope            org {ctx.org_id}, sandbox {ctx.sandbox} -> {ctx.sandbox_root}")


def prepare_dagster(run: DemoRun) -> None:
    from segmentation_pipelines.dagster_home import prepare_dagster_home, selected_config

    dagster_home = prepare_dagster_home(run.settings)
    run.results["dagster_home"] = dagster_home
    run.say(f"DAGSTER_HOME     {dagster_home} (dagster.yaml from {selected_config()})")


# The demo, in order. Later issues append: generate demo data, ingest it, create definitions, run the main job.
STEPS: list[Callable[[DemoRun], None]] = [prepare_home, prepare_catalog, prepare_dagster]


def run_demo(settings: Settings, org_id: str | None = None, sandbox: str = "prod", **options: Any) -> DemoRun:
    """Run every demo step against ``settings``' home folder; returns what was done."""
    run = DemoRun(settings=settings, org_id=org_id or settings.default_org, sandbox=sandbox, options=options)
    for step in STEPS:
        step(run)
    return run


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.command()
@click.option(
    "--home", type=click.Path(path_type=Path), default=None, help="Home folder (default: SEGMENTATION_HOME)"
)
@click.option("--sandbox", default="prod", show_default=True, help="Sandbox to run the demo in")
def demo(home: Path | None, sandbox: str) -> None:
    """Prepare the home folder and run the demo end to end, printing what it did."""
    from segmentation_pipelines.settings import get_settings

    run = run_demo(get_settings(home=home), sandbox=sandbox)
    click.echo("segmentation-pipelines demo")
    for line in run.report:
        click.echo(f"  {line}")
    click.echo("done. Open the Dagster UI with: segmentation-pipelines dev")
