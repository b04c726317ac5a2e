"""Fuzzing: random and mutated text (the appendix examples mutated) never raises anything but PQLSyntaxError /
PQLValidationError, never hangs, and whatever parses survives printing and the JSON round trip."""

from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmentation_pipelines.pql import PQLError, PQLSyntaxError, check, from_json, parse, to_json, to_text

from .pql_front_schema import SCHEMA
from .test_appendix import EXAMPLES

SEEDS = [text for _, text, _ in EXAMPLES]
PIECES = [
    "(", ")", "[", "]", "{", "}", ".", ",", ":", "=", "!=", "<=", ">", "!", "^", "$1", '"', "'", "-", "+", "*", "/",
    "%", " ", "\n", "=>", "and", "or", "not", "in", "notIn", "let", "select", "exists", "forall", "from", "where",
    "over", "sum", "occurs", "between", "before", "after", "on", "this", "last", "now", "today", "month", "days",
    "chain", "CHAIN", "WHAT", "WHEN", "WHERE", "COUNT", "xEvent", "date(", "if(", "inSegment(", "\u201c", "@", "\\",
    "1", "2.5", ".5", "1e999", "x", "X.timestamp", "_a",
]  # fmt: skip
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def exercise(text: str) -> None:
    """Parse, print, re-parse, convert and check ``text``; only PQL errors may escape."""
    start = time.thread_time()  # CPU time of this thread: a hang shows, a loaded machine's waiting does not
    try:
        query = parse(text)
    except PQLSyntaxError as err:
        assert "internal parser error" not in err.message, err.message
        assert err.line >= 0 and err.column >= 0
        return
    finally:
        assert time.thread_time() - start < 1.0, "parse took more than a second of CPU"
    assert parse(to_text(query)) == query
    assert from_json(json.loads(json.dumps(to_json(query)))) == query
    try:
        check(query, SCHEMA, allow_non_boolean=True)
    except PQLError as err:
        assert err.line >= 0


@SETTINGS
@given(st.text(max_size=200))
def test_random_text(text):
    exercise(text)


@SETTINGS
@given(st.lists(st.sampled_from(PIECES), max_size=40).map(" ".join))
def test_random_token_soup(text):
    exercise(text)


@st.composite
def mutated(draw):
    chars = list(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(chars)))
        action = draw(st.sampled_from(["delete", "insert", "splice", "duplicate"]))
        if action == "delete" and chars:
            del chars[min(pos, len(chars) - 1)]
        elif action == "insert":
            chars[pos:pos] = list(draw(st.sampled_from(PIECES)))
        elif action == "splice":
            other = draw(st.sampled_from(SEEDS))
            start = draw(st.integers(0, len(other)))
            chars[pos:pos] = list(other[start : start + draw(st.integers(1, 30))])
        else:
            end = draw(st.integers(pos, len(chars)))
            chars[pos:pos] = chars[pos:end]
    return "".join(chars)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_appendix_examples(text):
    exercise(text)


@SETTINGS
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["nodeType", "fnName", "params", "fieldName", "object", "value",
                                         "literalType", "varName", "position", "method", "variables", "range"]),
                        inner | st.sampled_from(["fnApply", "fieldLookup", "literal", "String", "Integer",
                                                 "parameterReference", "varRef", "set", "varDecl", "="]),
                        max_size=4),
                    max_leaves=12))  # fmt: skip
def test_random_json_trees(tree):
    """Any JSON either is rejected with PQLSyntaxError or gives a tree whose text parses back to it."""
    try:
        query = from_json(tree)
    except PQLSyntaxError:
        return
    assert parse(to_text(query)) == query


def test_large_inputs_stay_fast():
    """10-20 KB of pathological text parses (or fails) in well under a second (best of 3: the CI box is shared)."""
    for text in (
        "(" * 5000,
        "a" * 20000,
        '"' + "x" * 20000,
        "a." * 5000 + "b",
        "not " * 3000 + "x",
        "[" * 300,
    ):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            try:
                parse(text)
            except PQLSyntaxError:
                pass
            runs.append(time.perf_counter() - start)
        assert min(runs) < 1.0, text[:20]
