"""PQL, the Profile Query Language: parse, check, convert (pql/text <-> pql/json).

Public API (stable; the compilers, services and CLI import only these names)::

    from segmentation_pipelines.pql import (parse, check, Schema, PQLError, PQLSyntaxError, PQLValidationError,
                                            CheckedQuery, to_json, from_json, to_text)

* ``parse(text) -> ast.Query``: raises :class:`PQLSyntaxError` (a ``ValueError``) and nothing else.
* ``check(query_or_text, schema, resolve_audience=None, *, allow_non_boolean=False, dependencies=None,
  self_id=None) -> CheckedQuery``: resolves names and types against the union :class:`Schema`; raises
  :class:`PQLValidationError` (or :class:`PQLSyntaxError` for text that does not parse). See
  :mod:`segmentation_pipelines.pql.checker` for what a :class:`CheckedQuery` offers the compilers.
* ``to_json(text_or_query) -> dict`` (the pql/json syntax tree), ``from_json(dict_or_str) -> ast.Query``,
  ``to_text(query_or_json) -> str`` (canonical pql/text); ``convert_expression(expression, to_format)`` converts an
  ``{"type": "PQL", "format": ..., "value": ...}`` envelope (``POST /segment/conversion``).
"""

from segmentation_pipelines.pql import ast, printer
from segmentation_pipelines.pql.checker import CheckedQuery, Resolution, check
from segmentation_pipelines.pql.errors import PQLError, PQLSyntaxError, PQLValidationError
from segmentation_pipelines.pql.parser import parse
from segmentation_pipelines.pql.pqljson import convert_expression, from_json, to_json
from segmentation_pipelines.pql.schema import Schema
from segmentation_pipelines.pql.types import PQLType

__all__ = [
    "CheckedQuery",
    "PQLError",
    "PQLSyntaxError",
    "PQLType",
    "PQLValidationError",
    "Resolution",
    "Schema",
    "ast",
    "check",
    "convert_expression",
    "from_json",
    "parse",
    "to_json",
    "to_text",
]


def to_text(query) -> str:
    """Canonical pql/text of a query, of its text, or of a pql/json tree (converted first)."""
    return printer.to_text(from_json(query) if isinstance(query, dict) else query)
