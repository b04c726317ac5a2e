"""The ``segmentation-pipelines`` command line.

Subcommands live in the modules of this package (``serve``, ``dev``, ``demo``, ``pql``, ...); each module registers
its commands on :data:`main` when imported, and every module here is imported when the CLI starts.
"""

from __future__ import annotations

import importlib
import pkgutil

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segmentation-pipelines")
def main() -> None:
    """Audience segmentation with the Adobe Experience Platform Segmentation API, as a Dagster code location."""


def _load_commands() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_load_commands()
