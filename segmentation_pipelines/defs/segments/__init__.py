"""Dagster definitions of the segments domain."""

import dagster as dg


def defs() -> dg.Definitions:
    return dg.Definitions()
