"""Dagster definitions of the profiles domain."""

import dagster as dg


def defs() -> dg.Definitions:
    return dg.Definitions()
