"""Dagster definitions of the external_audiences domain."""

import dagster as dg


def defs() -> dg.Definitions:
    return dg.Definitions()
