"""Findings 2 and 3: definitions that were stored although a later read or every job failed on them. A write now
parses, checks, compiles on both engines and serializes before it commits; one set of limits (pql/limits.py) is
shared by the parser, pql/json, the checker and both compilers; one regex validator (pql/regex.py)."""

from __future__ import annotations

import inspect
import json
import sys
from datetime import UTC, datetime

import pytest

from segmentation_pipelines import pql
from segmentation_pipelines.pql import compile_polars, compile_sql
from segmentation_pipelines.pql.limits import MAX_DEPTH

UPS = "/data/core/ups"
FIRST = "person.name.firstName"


def nested_not(n: int) -> str:
    return "not(" * n + f'{FIRST} = "a"' + ")" * n


def json_not(n: int) -> dict:
    tree = {
        "nodeType": "fnApply",
        "fnName": "=",
        "params": [
            {
                "nodeType": "fieldLookup",
                "fieldName": "firstName",
                "object": {
                    "nodeType": "fieldLookup",
                    "fieldName": "name",
                    "object": {
                        "nodeType": "fieldLookup",
                        "fieldName": "person",
                        "object": {"nodeType": "parameterReference", "position": 1},
                    },
                },
            },
            {"nodeType": "literal", "literalType": "String", "value": "a"},
        ],
    }
    for _ in range(n):
        tree = {"nodeType": "fnApply", "fnName": "not", "params": [tree]}
    return tree


def definition(value, fmt: str = "pql/text", name: str = "d", **extra) -> dict:
    return {
        "name": name,
        "schema": {"name": "_xdm.context.profile"},
        "expression": {"type": "PQL", "format": fmt, "value": value},
        **extra,
    }


BAD = {
    "unclosed regex": definition(f'{FIRST}.matches("(unclosed[")'),
    "lookahead": definition(f'{FIRST}.matches("(?=a)b")'),
    "pattern not a literal": definition(f"{FIRST}.matches({FIRST})"),
    "lone surrogate": definition(f'{FIRST} = "\ud800"'),
    "surrogate in name": definition(f'{FIRST} = "a"', name="x\ud800"),
    "not 100": definition(nested_not(100)),
    "not 130": definition(nested_not(130)),
    "not 150": definition(nested_not(150)),
    "pql/json not 130": definition(json_not(130), fmt="pql/json"),
    "pql/json text not 130": definition(json.dumps(json_not(130)), fmt="pql/json"),
    "deep payloadSchema": definition(f'{FIRST} = "a"', payloadSchema=json.loads("[" * 300 + "]" * 300)),
}


@pytest.fixture
def rest_with_schema(rest, settings):
    """A REST caller whose sandbox has a profile dataset with person.name.firstName."""
    from .conftest import person

    ds = rest.dataset()
    rest.upload(
        ds,
        {"p.jsonl": (json.dumps(person("a@x.com", person={"name": {"firstName": "Ann"}})) + "\n").encode()},
    )
    return rest


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_definitions_are_refused_and_nothing_is_stored(rest_with_schema, case):
    rest = rest_with_schema
    body = json.dumps(
        BAD[case], ensure_ascii=True
    )  # \ud800 travels as a JSON escape, as an attacker sends it
    r = rest.request(
        "POST", f"{UPS}/segment/definitions", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400
    for path in ("/segment/definitions", "/audiences"):
        listed = rest.request("GET", UPS + path)
        assert listed.status_code == 200, listed.text
        page = listed.json().get("_page") or listed.json()["page"]
        assert page["totalCount"] == 0, listed.text


def test_the_deepest_accepted_definition_reads_back_and_lists(rest_with_schema):
    rest = rest_with_schema
    accepted = None
    for n in range(MAX_DEPTH, 0, -1):  # the deepest `not` nesting the limit lets through
        r = rest.request(
            "POST", f"{UPS}/segment/definitions", json=definition(json_not(n), fmt="pql/json", name=f"n{n}")
        )
        if r.status_code == 200:
            accepted = n
            break
        assert r.status_code == 400, r.text
    assert accepted is not None and accepted >= MAX_DEPTH - 10
    for path in ("/segment/definitions", "/audiences"):
        listed = rest.request("GET", UPS + path)
        assert listed.status_code == 200, listed.text
        assert (listed.json().get("_page") or listed.json()["page"])["totalCount"] == 1, listed.text


def test_limits_are_shared_by_parser_pqljson_checker_and_compilers():
    schema = pql.Schema.from_dicts(profile={FIRST: "string"}, event={})
    too_deep = nested_not(MAX_DEPTH + 1)
    with pytest.raises(pql.PQLSyntaxError, match="nested too deeply"):
        pql.parse(too_deep)
    with pytest.raises(pql.PQLSyntaxError, match="nested too deeply"):
        pql.from_json(json_not(5 * MAX_DEPTH))
    # A tree built without the parser (e.g. by a program) is refused by the checker and the compilers alike.
    inner = pql.parse(f'{FIRST} = "a"')
    body = inner.body
    for _ in range(MAX_DEPTH + 1):
        body = pql.ast.Unary("not", body)
    import dataclasses

    deep = dataclasses.replace(inner, body=body)
    with pytest.raises(pql.PQLError, match="nested too deeply"):
        pql.check(deep, schema)
    for compiler in (compile_sql, compile_polars):
        with pytest.raises(pql.PQLError, match="nested too deeply"):
            compiler.compile_definition(deep, schema, datetime.now(UTC))


def _at_stack_depth(frames: int, fn):
    """Run ``fn`` with ``frames`` Python frames already on the stack (as under a Dagster run's call stack)."""
    if frames <= 0:
        return fn()
    return _at_stack_depth(frames - 1, fn)


def test_compilers_stay_within_the_recursion_limit_at_the_limit():
    """The deepest text the parser accepts compiles and renders on both engines with 300 frames already used
    (a Dagster run's stack) under Python's default recursion limit."""
    assert sys.getrecursionlimit() >= 1000
    schema = pql.Schema.from_dicts(profile={FIRST: "string"}, event={})
    n = MAX_DEPTH
    while True:
        try:
            checked = pql.check(pql.parse(nested_not(n)), schema)
            break
        except pql.PQLError:
            n -= 1
    assert n >= MAX_DEPTH - 10
    base = len(inspect.stack())

    def compile_all():
        now = datetime.now(UTC)
        compile_sql.compile_definition(checked, schema, now).sql()
        compile_polars.compile_definition(checked, schema, now)
        json.dumps(pql.to_json(nested_not(n)))

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        _at_stack_depth(300 - base, compile_all)
    finally:
        sys.setrecursionlimit(old)


@pytest.mark.parametrize("number", ["1e999", "-1e999", "9223372036854775808"])
def test_numbers_out_of_range_are_refused_at_check(number):
    """Found by the property test: `x > 1e999` checked, then every job failed (DuckDB read `inf` as a column)."""
    schema = pql.Schema.from_dicts(profile={"loyalty.points": "integer"}, event={})
    with pytest.raises(pql.PQLValidationError, match="out of range"):
        pql.check(pql.parse(f"loyalty.points > {number}"), schema)


def test_audience_fields_are_checked_too(rest_with_schema):
    rest = rest_with_schema
    body = {
        "name": "deep labels",
        "expression": {"type": "PQL", "format": "pql/text", "value": f'{FIRST} = "a"'},
        "labels": json.loads("[" * 300 + "]" * 300),
    }
    r = rest.request("POST", f"{UPS}/audiences", json=body)
    assert r.status_code in (201, 400), r.text  # refused, or stored in a form that reads back
    for path in ("/audiences", "/segment/definitions"):
        assert rest.request("GET", UPS + path).status_code == 200
