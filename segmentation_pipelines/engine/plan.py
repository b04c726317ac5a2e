"""Planning a run: the dependency stages of ``inSegment`` references, and the batches a stage is split into so
that one ``GROUP BY`` never carries more aggregate columns than memory allows."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from segmentation_pipelines.engine.model import EngineDefinition
from segmentation_pipelines.pql import references
from segmentation_pipelines.pql.references import referenced_audiences

MAX_AGGREGATES_PER_PASS = 400  # aggregate columns of one GROUP BY over the events (bounded memory per pass)

# A compiler's output (CompiledSQL, CompiledPolars): it has ``aggregates`` and ``profile_aggregates``.
Compiled = TypeVar("Compiled")


def stages(definitions: list[EngineDefinition], external: Iterable[str]) -> list[list[EngineDefinition]]:
    """Definitions in dependency order: each stage reads only the results of earlier stages (or external
    audiences). A reference to an audience neither in the run nor external raises ValueError, as does a cycle."""
    by_id = {d.id: d for d in definitions}
    ext = set(external)
    deps: dict[str, set[str]] = {}
    for d in definitions:
        refs = referenced_audiences(d.ast)
        missing = refs - by_id.keys() - ext
        if missing:
            raise ValueError(f"definition {d.id} references audiences without members: {sorted(missing)}")
        deps[d.id] = refs
    return [[by_id[i] for i in stage] for stage in references.stages(by_id, deps)]


def batches(items: list[tuple[str, Compiled]]) -> list[list[tuple[str, Compiled]]]:
    """``(definition id, compiled)`` pairs of one stage, in order, cut into batches whose distinct aggregate
    columns (event and profile aggregates) stay within ``MAX_AGGREGATES_PER_PASS`` (a lone definition above it
    still makes its own batch)."""
    out: list[list[tuple[str, Compiled]]] = []
    cur: list[tuple[str, Compiled]] = []
    names: set[str] = set()
    for item in items:
        compiled: Any = item[1]
        new = set(compiled.aggregates) | set(compiled.profile_aggregates)
        if cur and len(names | new) > MAX_AGGREGATES_PER_PASS:
            out.append(cur)
            cur, names = [], set()
        cur.append(item)
        names |= new
    if cur:
        out.append(cur)
    return out


def events_source(path: str | Path) -> str:
    """A glob DuckDB/Polars can scan: a folder becomes ``folder/*.parquet``."""
    p = Path(path)
    if p.is_dir():
        return str(p / "*.parquet")
    return str(path)
