"""The engine's interface (called by the segments job): what to evaluate, over which data, and what comes back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.schema import Schema


@dataclass(frozen=True)
class EngineDefinition:
    """One definition to evaluate: its audience id and its parsed (and checked) query. ``inSegment`` references
    carry canonical audience ids."""

    id: str
    query: Any  # ast.Query | CheckedQuery

    @property
    def ast(self) -> ast.Query:
        from segmentation_pipelines.pql.lowering import query_of

        return query_of(self.query)


@dataclass
class EvaluationRequest:
    definitions: list[EngineDefinition]
    profiles_path: str | Path
    events_path: str | Path  # a folder of Parquet files, one file, or a glob
    evaluation_time: datetime  # UTC; every relative time derives from it
    output_path: Path
    schema: Schema
    engine: Literal["duckdb", "polars", "spark"] = "duckdb"
    external_members: dict[str, Path] = field(default_factory=dict)  # audience id -> Parquet with profile_id
    memory_limit: str = "4GB"
    # Parquet of (profile_id, pidx UINTEGER) numbering every profile of profiles_path (the membership diff's
    # profile index, engine/memberships.py): when given, the output holds (audience_id, pidx) instead of
    # (audience_id, profile_id) -- integers, cheaper to write and for the diff to read. DuckDB and Polars.
    profile_numbers: Path | None = None
    temp_dir: Path | None = None
    should_cancel: Callable[[], bool] | None = None
    progress: Callable[[str], None] | None = None


@dataclass
class EvaluationResult:
    # Parquet (audience_id VARCHAR, profile_id VARCHAR; pidx instead with profile_numbers): every qualified pair
    output_path: Path
    counts: dict[str, int]
    total_profiles: int
    timings: dict[str, float]


class EvaluationCancelled(RuntimeError):
    """The evaluation was cancelled (``should_cancel`` returned true or the thread was interrupted)."""
