"""The ``segmentation-pipelines`` command line: one module per command (group), each added here by name."""

from __future__ import annotations

import click

from segmentation_pipelines.cli import catalog, demo, demo_data, dev, pql, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segmentation-pipelines")
def main() -> None:
    """Audience segmentation with the Adobe Experience Platform Segmentation API, as a Dagster code location."""


for command in (demo.demo, demo_data.demo_data, dev.dev, serve.serve, catalog.catalog, pql.pql_group):
    main.add_command(command)
