"""PQL for the segment services: parse and check a definition's expression against the sandbox's profile schema.

The expression envelope is ``{"type": "PQL", "format": "pql/text" | "pql/json", "value": ...}``. Checking resolves
``inSegment("<id, audienceId or name>")`` to audience ids of this sandbox and reports every problem as a 400 naming
line, column and reason (in the message, and as ``line``/``column`` on the error item).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func

from segmentation_pipelines import pql
from segmentation_pipelines.catalog import models
from segmentation_pipelines.errors import ApiError
from segmentation_pipelines.pql import compile_polars, compile_spark, compile_sql
from segmentation_pipelines.pql.references import canonical_references
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.datasets import DatasetsService

INVALID_PQL_CODE = "UPAPI-113434-400"


@dataclass
class CheckedExpression:
    """A checked definition expression: canonical text, the checker's result and the audiences it reads."""

    text: str
    checked: Any  # pql.CheckedQuery
    references: list[str] = field(default_factory=list)


def pql_error(exc: pql.PQLError, where: str = "expression.value") -> ApiError:
    """A 400 naming the field, line, column and reason of a PQL error."""
    err = ApiError(400, f"field '{where}': invalid PQL: {exc}", code=INVALID_PQL_CODE, title="Invalid PQL")
    item = err.body["errors"]["400"][0]
    item.update({"field": where, "line": exc.line, "column": exc.column, "reason": exc.message})
    if exc.text:
        item["text"] = exc.text
    return err


def expression_text(expression: Mapping[str, Any]) -> str:
    """The pql/text of an expression envelope (pql/json is converted)."""
    value = expression.get("value")
    if expression.get("format") == "pql/json":
        try:
            return pql.to_text(pql.from_json(json.loads(value) if isinstance(value, str) else value))
        except pql.PQLError as exc:
            raise pql_error(exc) from None
        except Exception as exc:  # any malformed tree (wrong types, missing keys) is the client's error
            raise ApiError(
                400, f"field 'expression.value': not a pql/json tree: {exc}", code=INVALID_PQL_CODE
            ) from None
    return str(value)


def profile_schema(ctx: ServiceContext) -> pql.Schema:
    """The union schema of the sandbox's profile and event datasets (``docs/data-model.md``)."""
    schema = DatasetsService(ctx).schema() or {}
    return pql.Schema.from_dicts(
        profile=schema.get("profile") or {}, event=schema.get("experienceevent") or {}
    )


def compile_on_both_engines(checked: Any, schema: pql.Schema) -> None:
    """What a job will do with the definition, done at write time: compile it for DuckDB (and render its SQL)
    and for Polars. A definition either engine refuses is refused now (400), not by every job it is in."""

    now = datetime.now(UTC)
    try:
        compile_sql.compile_definition(checked, schema, now).sql()
        compile_polars.compile_definition(checked, schema, now)
    except pql.PQLError as exc:
        raise pql_error(exc) from None
    except RecursionError:
        raise pql_error(pql.PQLValidationError("the expression is nested too deeply; simplify it")) from None


class SegmentPql:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def resolve_audience(self, ref: str) -> str | None:
        """Audience id of ``ref``: an audience id, an external ``audienceId``, or a definition's name."""
        with self.ctx.catalog.session(readonly=True) as session:
            repo = self.ctx.repo(session, models.Audience)
            row = repo.get(ref)
            if row is not None:
                return row.id
            rows = repo.find(models.Audience.audience_id == ref)
            if not rows:
                rows = repo.find(
                    func.lower(models.Audience.name) == ref.lower(),
                    models.Audience.type == "SegmentDefinition",
                )
            return rows[0].id if rows else None

    def check(
        self,
        expression: Mapping[str, Any],
        self_id: str | None = None,
        schema: pql.Schema | None = None,
        compile_engines: bool = True,
    ) -> CheckedExpression:
        """Parse and check ``expression``; with ``compile_engines`` (every write) also compile it on both engines. A job's
        re-check skips that (~10-20 ms a definition): its engine compiles anyway, and a failure there is isolated
        to the definition (``segment_evaluation.py``)."""
        text = expression_text(expression)
        schema = schema if schema is not None else profile_schema(self.ctx)
        try:
            query = canonical_references(pql.parse(text), self.resolve_audience)
            checked = pql.check(query, schema, resolve_audience=self.resolve_audience, self_id=self_id)
            self.check_engine(checked, schema)
        except pql.PQLError as exc:
            raise pql_error(exc) from None
        if compile_engines:
            compile_on_both_engines(checked, schema)
        references = sorted(set(getattr(checked, "referenced_audiences", ()) or ()))
        return CheckedExpression(text=text, checked=checked, references=references)

    def check_engine(self, checked: Any, schema: pql.Schema) -> None:
        """Raise the engine's refusal of a construct it cannot express (Spark: docs/decisions/spark.md), so that
        such a definition is rejected when written, not when a job runs."""
        if self.ctx.settings.engine == "spark":
            refused = compile_spark.refusal(checked, schema, datetime.now(UTC))
            if refused is not None:
                raise refused

    def convert(self, expression: Mapping[str, Any], target: str) -> Any:
        """The expression's value in ``target`` format (pql/json as its JSON text, as the contract shows it)."""
        try:
            if target == "pql/json":
                return json.dumps(pql.to_json(str(expression.get("value"))), separators=(",", ":"))
            return expression_text(expression)
        except pql.PQLError as exc:
            raise pql_error(exc) from None
