"""pql/text <-> pql/json (``to_json``/``from_json``/``to_text``/``convert_expression``) and the ``pql`` CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from segmentation_pipelines.cli import main
from segmentation_pipelines.pql import PQLSyntaxError, convert_expression, from_json, parse, to_json, to_text

from .pql_front_schema import EVENT, PROFILE


def test_documented_json_shape():
    assert to_json('workAddress.country = "US"') == {
        "nodeType": "fnApply",
        "fnName": "=",
        "params": [
            {
                "nodeType": "fieldLookup",
                "fieldName": "country",
                "object": {
                    "nodeType": "fieldLookup",
                    "fieldName": "workAddress",
                    "object": {"nodeType": "parameterReference", "position": 1},
                },
            },
            {"nodeType": "literal", "literalType": "String", "value": "US"},
        ],
    }


def test_openapi_example_json_reads_back():
    value = (
        '{"nodeType":"fnApply","fnName":"=","params":[{"nodeType":"fieldLookup","fieldName":"a","object":'
        '{"nodeType":"parameterReference","position":1}},{"nodeType":"fieldLookup","fieldName":"b","object":'
        '{"nodeType":"parameterReference","position":1}}]}'
    )
    assert to_text(from_json(value)) == "a = b"


def test_legacy_xdmobject_root_and_literal_kinds():
    tree = {
        "nodeType": "fnApply",
        "function": "=",
        "params": [
            {"nodeType": "literal", "literalType": "string", "value": "US"},
            {
                "nodeType": "fieldLookup",
                "fieldName": "country",
                "object": {"nodeType": "literal", "literalType": "XDMObject", "value": "profile"},
            },
        ],
    }
    assert to_text(from_json(tree)) == '"US" = country'


def test_variables_lambdas_and_explicit_param_in_json():
    tree = to_json("(P) => P.a = $1.b and (select X from xEvent where X.c = 1)")
    assert tree["nodeType"] == "fnCreate" and tree["params"] == [{"varName": "P"}]
    text = json.dumps(tree)
    assert '"varName": "P"' in text and '"explicit": true' in text and '"nodeType": "set"' in text
    assert '{"nodeType": "varRef", "varName": "X"}' in text
    assert '{"nodeType": "varRef", "varName": "xEvent"}' in text


@pytest.mark.parametrize(
    "text",
    [
        'not(a = 1) or -b.c > -3 and d.e(1, "x") and f(2)',
        "x.y occurs between last month and date(2020, 1, 2) and z occurs = 3 days before today",
        'let v = (a in [1, 2]) in if(v, {"k": [1.5, true]}, null1)',
        "sum X.a * 2 over X from xEvent where X.b > 0, Y from X.items",
        "max X from arr where X > 0",
        'xEvent[^x = 1 and this.y = "q\\"uote\\\\"].map((K) => K.z)',
        "chain(xEvent, timestamp, [A: WHAT(a = 1) WHERE(b) WHEN(< 24 hours before now) COUNT(2), B: WHAT(c) WHEN(after yesterday)])",
        "exists E from xEvent : E.a, F from E.b",
        "(a - (b - c)) * (d / (e * f)) % 2",
    ],
)
def test_round_trips(text):
    query = parse(text)
    assert parse(to_text(query)) == query
    tree = json.loads(json.dumps(to_json(query)))
    assert from_json(tree) == query
    assert parse(to_text(tree)) == query


def test_canonical_text():
    assert to_text(parse("A AND b Or NOT(c)")) == "A and b or not c"
    assert to_text(parse("x = 'US'")) == 'x = "US"'
    assert to_text(parse("ts occurs <= 1 Months before TODAY")) == "ts occurs <= 1 month before today"
    assert to_text(parse("(a and b) and (c and d)")) == "a and b and c and d"
    assert to_text(parse("a or (b and c)")) == "a or b and c"
    assert to_text(parse("(a or b) and c")) == "(a or b) and c"


@pytest.mark.parametrize(
    "bad",
    ["[1]", "{}", '{"nodeType": "nope"}', '{"nodeType": "fnApply"}', "not json", '{"nodeType": "literal"}'],
)
def test_bad_json_is_a_syntax_error(bad):
    with pytest.raises(PQLSyntaxError, match="pql/json"):
        from_json(bad)


def test_convert_expression_envelope_both_ways():
    text_env = {"type": "PQL", "format": "pql/text", "value": 'workAddress.country = "US"'}
    json_env = convert_expression(text_env)
    assert json_env["format"] == "pql/json" and json_env["type"] == "PQL"
    assert json.loads(json_env["value"])["fnName"] == "="
    back = convert_expression(json_env)
    assert back == text_env
    assert convert_expression(text_env, "pql/text") == text_env
    with pytest.raises(PQLSyntaxError):
        convert_expression({"format": "pql/text", "value": "a = "})
    with pytest.raises(PQLSyntaxError, match="format"):
        convert_expression({"format": "pql/xml", "value": "a"})


# --- CLI ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"profile": PROFILE, "experienceevent": EVENT}))
    return str(path)


def test_cli_check_shows_caret(schema_file):
    runner = CliRunner()
    result = runner.invoke(main, ["pql", "check", "person.birthYear = )"])
    assert result.exit_code == 1
    assert "line 1, column 20" in result.output
    assert "person.birthYear = )\n                   ^" in result.output
    result = runner.invoke(main, ["pql", "check", "--schema", schema_file, 'homeAdress.city = "x"'])
    assert result.exit_code == 1 and "did you mean 'homeAddress.city'" in result.output
    result = runner.invoke(main, ["pql", "check", "--schema", schema_file, 'homeAddress.city = "x"'])
    assert result.exit_code == 0 and "OK: boolean" in result.output


def test_cli_explain_prints_fields_and_sql(schema_file):
    result = CliRunner().invoke(
        main,
        ["pql", "explain", "--schema", schema_file,
         'homeAddress.city = "x" and chain(xEvent, timestamp, [A: WHAT(eventType = "a")])'],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "profile fields: homeAddress.city" in result.output
    assert "event fields: eventType, timestamp" in result.output
    assert "SELECT" in result.output


def test_cli_convert():
    result = CliRunner().invoke(main, ["pql", "convert", 'a = "US"'])
    assert result.exit_code == 0 and '"fnApply"' in result.output
    tree = result.output
    result = CliRunner().invoke(main, ["pql", "convert", "--from-json", tree])
    assert result.exit_code == 0 and result.output.strip() == 'a = "US"'


@pytest.mark.parametrize(
    ("tree", "words"),
    [
        ({"nodeType": "fieldLookup", "fieldName": "a b", "object": {"nodeType": "parameterReference", "position": 1}}, "does not describe"),
        ({"nodeType": "fnApply", "fnName": "occurs", "form": "offset", "params": [
            {"nodeType": "varRef", "varName": "ts"}, {"nodeType": "literal", "literalType": "TimeAnchor", "value": "now"}]},
         "does not describe"),
        ({"nodeType": "literal", "literalType": "Integer", "value": "abc"}, "invalid pql/json"),
    ],
)  # fmt: skip
def test_json_trees_that_are_not_pql_are_rejected(tree, words):
    with pytest.raises(PQLSyntaxError, match=words):
        from_json(tree)


def test_left_deep_json_and_chain_is_accepted():
    a, b, c = ({"nodeType": "varRef", "varName": v} for v in "abc")
    tree = {
        "nodeType": "fnApply",
        "fnName": "and",
        "params": [{"nodeType": "fnApply", "fnName": "and", "params": [a, b]}, c],
    }
    assert to_text(from_json(tree)) == "a and b and c"
