"""Appending a benchmark's table to its results file under ``benchmarks/results/`` (``--record``)."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def append_result(file_name: str, title: str, table: str) -> Path:
    """Append ``table`` to ``results/<file_name>``, starting a new file with the heading ``title``."""
    out = RESULTS / file_name
    out.parent.mkdir(exist_ok=True)
    head = "" if out.exists() else f"# {title}\n\n"
    with out.open("a") as f:
        f.write(head + table + "\n\n")
    return out
