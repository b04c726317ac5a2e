"""``segmentation-pipelines pql check|explain|convert``: try PQL expressions from the terminal.

``check`` parses (and, with ``--schema``, type-checks) an expression and shows errors with a caret under the
position; ``explain`` also prints the SQL it compiles to and the fields it reads; ``convert`` prints the pql/json
tree or, with ``--from-json``, the canonical pql/text. ``--schema`` is a JSON file shaped like
``client.datasets.schema()`` (``{"profile": {...}, "experienceevent": {...}}``, see docs/data-model.md).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from segmentation_pipelines import pql


def _load_schema(path: str | None) -> pql.Schema | None:
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise click.BadParameter(f"cannot read the schema file: {err}", param_hint="--schema") from None
    event = data.get("experienceevent", data.get("event", {}))
    return pql.Schema.from_dicts(profile=data.get("profile", {}), event=event)


def _report(err: pql.PQLError, text: str) -> None:
    kind = "syntax error" if isinstance(err, pql.PQLSyntaxError) else "invalid expression"
    click.echo(f"{kind}: {err}", err=True)
    caret = err.caret(text)
    if caret:
        click.echo(caret, err=True)


def _expression(expr: str) -> str:
    return sys.stdin.read() if expr == "-" else expr


@click.group("pql")
def pql_group() -> None:
    """Parse, check, explain and convert PQL expressions."""


@pql_group.command("check")
@click.argument("expr")
@click.option(
    "--schema", "schema_path", type=click.Path(exists=True, dir_okay=False), help="union schema JSON"
)
@click.option("--values", is_flag=True, help="accept non-boolean results (computed attributes)")
def check_command(expr: str, schema_path: str | None, values: bool) -> None:
    """Check EXPR ('-' reads it from stdin); exit status 1 when it is not valid."""
    text = _expression(expr)
    schema = _load_schema(schema_path)
    try:
        if schema is None:
            pql.parse(text)
            click.echo("syntax OK (fields not checked: pass --schema to check them)")
            return
        checked = pql.check(text, schema, allow_non_boolean=values)
    except pql.PQLError as err:
        _report(err, text)
        sys.exit(1)
    click.echo(f"OK: {checked.result_type}")
    for message, (line, column) in checked.warnings:
        click.echo(f"warning: line {line}, column {column}: {message}")


@pql_group.command("explain")
@click.argument("expr")
@click.option(
    "--schema", "schema_path", type=click.Path(exists=True, dir_okay=False), help="union schema JSON"
)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default="duckdb",
    show_default=True,
    help="SQL dialect of the plan",
)
def explain_command(expr: str, schema_path: str | None, engine: str = "duckdb") -> None:
    """Print the canonical form of EXPR, the fields it reads and the SQL it compiles to."""
    text = _expression(expr)
    schema = _load_schema(schema_path) or pql.Schema()
    try:
        checked = pql.check(text, schema) if schema_path else None
        query = checked.query if checked else pql.parse(text)
    except pql.PQLError as err:
        _report(err, text)
        sys.exit(1)
    click.echo("canonical: " + pql.to_text(query))
    if checked is not None:
        click.echo("profile fields: " + (", ".join(sorted(checked.profile_fields)) or "-"))
        click.echo("event fields: " + (", ".join(sorted(checked.event_fields)) or "-"))
        if checked.referenced_audiences:
            click.echo("audiences: " + ", ".join(checked.referenced_audiences))
    try:
        # Imported when the command runs: keeps the CLI's start fast.
        from segmentation_pipelines.pql.compile_sql import compile_definition
    except ImportError:
        click.echo("(the SQL compiler is not available)")
        return
    try:
        if engine == "spark":
            from segmentation_pipelines.pql import compile_spark

            compiled = compile_spark.compile_definition(checked or query, schema, datetime.now(UTC))
            click.echo("SQL (Spark):")
            click.echo(compiled.sql(compile_spark.DIALECT, pretty=True))
        else:
            compiled = compile_definition(checked or query, schema, datetime.now(UTC))
            click.echo("SQL (DuckDB):")
            click.echo(compiled.sql(pretty=True))
    except (ValueError, TypeError, NotImplementedError) as err:
        click.echo(f"cannot compile: {err}", err=True)
        sys.exit(1)


@pql_group.command("convert")
@click.argument("expr")
@click.option("--from-json", "from_json", is_flag=True, help="EXPR is pql/json; print pql/text")
def convert_command(expr: str, from_json: bool) -> None:
    """Print the pql/json tree of EXPR (or the pql/text of a pql/json EXPR)."""
    text = _expression(expr)
    try:
        if from_json:
            click.echo(pql.to_text(pql.from_json(text)))
        else:
            click.echo(json.dumps(pql.to_json(text), indent=2))
    except pql.PQLError as err:
        _report(err, text)
        sys.exit(1)
