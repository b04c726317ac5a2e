"""Evaluation of segment definitions: every definition of a run in one pass over the profiles and their events,
on DuckDB (default), Polars or Spark. Takes data paths, returns a Parquet file of (audience_id, profile_id) pairs
(or (audience_id, pidx) given the profiles' numbers, ``EvaluationRequest.profile_numbers``); no catalog, no Dagster.

    from segmentation_pipelines.engine import EngineDefinition, EvaluationRequest, EvaluationResult, evaluate
"""

from __future__ import annotations

from segmentation_pipelines.engine.model import (
    EngineDefinition,
    EvaluationCancelled,
    EvaluationRequest,
    EvaluationResult,
)


def evaluate(request: EvaluationRequest) -> EvaluationResult:
    """Evaluate every definition of ``request`` and write the qualified pairs to ``request.output_path``."""
    if request.engine == "duckdb":
        from segmentation_pipelines.engine.duckdb_engine import evaluate_duckdb

        return evaluate_duckdb(request)
    if request.engine == "polars":
        from segmentation_pipelines.engine.polars_engine import evaluate_polars

        return evaluate_polars(request)
    if request.engine == "spark":
        from segmentation_pipelines.engine.spark_engine import evaluate_spark

        return evaluate_spark(request)
    raise ValueError(f"unknown engine {request.engine!r} (expected 'duckdb', 'polars' or 'spark')")


__all__ = ["EngineDefinition", "EvaluationCancelled", "EvaluationRequest", "EvaluationResult", "evaluate"]
