"""The Dagster entry point (``workspace.yaml`` points here): merges the definitions of every domain in ``defs/``."""

from __future__ import annotations

import importlib

import dagster as dg

from segmentation_pipelines.defs import DOMAINS


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        *(importlib.import_module(f"segmentation_pipelines.defs.{domain}").defs() for domain in DOMAINS)
    )
