"""The PQL parser: every construct of pql.md §3 builds the expected syntax tree; bad text gives positioned errors."""

from __future__ import annotations

import time

import pytest

from segmentation_pipelines.pql import PQLSyntaxError, ast, parse
from segmentation_pipelines.pql.parser import MAX_DEPTH

N, L = ast.Name, ast.Literal


def body(text: str):
    return parse(text).body


def s(v: str) -> ast.Literal:
    return L(v, "string")


def i(v: int) -> ast.Literal:
    return L(v, "integer")


def path(*names: str):
    node = N(names[0])
    for n in names[1:]:
        node = ast.Member(node, n)
    return node


# --- literals ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("412", 412, "integer"),
        ("-201", -201, "integer"),
        ("0", 0, "integer"),
        ("-51.24", -51.24, "number"),
        (".45", 0.45, "number"),
        ("2.02E12", 2.02e12, "number"),
        ("2.02E-12", 2.02e-12, "number"),
        ("10.0", 10.0, "number"),
        ("true", True, "boolean"),
        ("FALSE", False, "boolean"),
        ('"US"', "US", "string"),
        ("'US'", "US", "string"),
        ('"@(\\\\w+)"', "@(\\w+)", "string"),
        ('"say \\"hi\\""', 'say "hi"', "string"),
        ('"\\w"', "\\w", "string"),
    ],
)
def test_literals(text, value, kind):
    node = body(text)
    assert node == L(value, kind)
    assert type(node.value) is type(value)


def test_list_and_object_literals():
    assert body("[1, 2, 3]") == ast.ListLiteral((i(1), i(2), i(3)))
    assert body("[]") == ast.ListLiteral(())
    assert body('{"count": G.count(), "sum": 1}') == ast.ObjectLiteral(
        (("count", ast.MethodCall(N("G"), "count", ())), ("sum", i(1)))
    )


# --- names, paths, postfix ---------------------------------------------------------------------------------------------
def test_paths_params_and_methods():
    assert body("person.name.firstName") == path("person", "name", "firstName")
    assert body("$1.homeAddress") == ast.Member(ast.Param(1), "homeAddress")
    assert body('workEmail.address.endsWith(".edu", false)') == ast.MethodCall(
        path("workEmail", "address"), "endsWith", (s(".edu"), L(False, "boolean"))
    )
    # keyword-named methods after "." are identifiers
    assert body("x.count().sum(a).min(b).exists(c).map(d)").name == "map"
    assert body("^^.person.gender") == ast.Member(ast.Up(2, "person"), "gender")
    assert body("^eventType") == ast.Up(1, "eventType")
    assert body("this.count()") == ast.MethodCall(ast.This(), "count", ())


def test_bracket_filter_and_lambda_argument():
    node = body('xEvent[eventType = "download"].groupBy(product).map((K, G) => mapEntry(K, G.count()))')
    assert isinstance(node, ast.MethodCall) and node.name == "map"
    lam = node.args[0]
    assert lam == ast.Lambda(("K", "G"), ast.Call("mapEntry", (N("K"), ast.MethodCall(N("G"), "count", ()))))
    grouped = node.obj
    assert grouped.obj == ast.Filter(N("xEvent"), ast.Binary("=", N("eventType"), s("download")))


def test_lambda_head_names_the_profile():
    q = parse("(Profile) => Profile.homeAddress.stateProvince = Profile.workAddress.stateProvince")
    assert q.params == ("Profile",)
    assert q.body == ast.Binary(
        "=", path("Profile", "homeAddress", "stateProvince"), path("Profile", "workAddress", "stateProvince")
    )


# --- operators and precedence -----------------------------------------------------------------------------------------
def test_precedence_or_and_not_relational_arith():
    node = body("a = 1 or not b = 2 and c + 2 * 3 > -d")
    a_eq = ast.Binary("=", N("a"), i(1))
    not_b = ast.Unary("not", ast.Binary("=", N("b"), i(2)))
    c_gt = ast.Binary(">", ast.Binary("+", N("c"), ast.Binary("*", i(2), i(3))), ast.Unary("-", N("d")))
    assert node == ast.Binary("or", a_eq, ast.Binary("and", not_b, c_gt))


def test_arithmetic_is_left_associative():
    assert body("a - b - c") == ast.Binary("-", ast.Binary("-", N("a"), N("b")), N("c"))
    assert body("a / b * c") == ast.Binary("*", ast.Binary("/", N("a"), N("b")), N("c"))


def test_keywords_case_insensitive_identifiers_case_sensitive():
    assert body("a AND b Or NOT c") == body("a and b or not c")
    assert body("And1 = 1") == ast.Binary("=", N("And1"), i(1))  # identifiers starting with a keyword
    assert body("index in [1]") == ast.Binary("in", N("index"), ast.ListLiteral((i(1),)))
    assert body("orders.count() > 1") == ast.Binary(">", ast.MethodCall(N("orders"), "count", ()), i(1))


def test_not_forms():
    for text in ("not(x)", "not (x)", "!(x)", "NOT (x)", "!x"):
        assert body(text) == ast.Unary("not", N("x")), text


def test_relational_is_not_associative():
    with pytest.raises(PQLSyntaxError):
        parse("a = b = c")


def test_membership_like_matches():
    assert body('x in ["CA", "OR"]') == ast.Binary("in", N("x"), ast.ListLiteral((s("CA"), s("OR"))))
    assert body('x notIn (["CA"])') == ast.Binary("notIn", N("x"), ast.ListLiteral((s("CA"),)))
    assert body('"London" in citiesVisited') == ast.Binary("in", s("London"), N("citiesVisited"))
    assert body('e like "%.edu"') == ast.Binary("like", N("e"), s("%.edu"))
    assert body('e MATCHES "(?i)john"') == ast.Binary("matches", N("e"), s("(?i)john"))


# --- occurs -----------------------------------------------------------------------------------------------------------
def test_occurs_forms():
    ts = path("X", "timestamp")
    assert body("X.timestamp occurs <= 1 month before today") == ast.Occurs(
        ts, "offset", ast.TimeAnchor("today"), op="<=", amount=1, unit="month", direction="before"
    )
    assert body("X.timestamp occurs = 3 Days after NOW") == ast.Occurs(
        ts, "offset", ast.TimeAnchor("now"), op="=", amount=3, unit="day", direction="after"
    )
    assert body("X.timestamp occurs before today") == ast.Occurs(
        ts, "direction", ast.TimeAnchor("today"), direction="before"
    )
    assert body("X.timestamp occurs last month") == ast.Occurs(ts, "on", ast.RelativePeriod("last", "month"))
    assert body("X.timestamp occurs on date(2019, 12, 31)") == ast.Occurs(
        ts, "on", ast.Call("date", (i(2019), i(12), i(31)))
    )
    assert body("X.timestamp occurs on Y.timestamp") == ast.Occurs(ts, "on", path("Y", "timestamp"))
    assert body("X.timestamp occurs between last month and this week and z") == ast.Binary(
        "and",
        ast.Occurs(
            ts, "between", ast.RelativePeriod("last", "month"), ref2=ast.RelativePeriod("this", "week")
        ),
        N("z"),
    )


@pytest.mark.parametrize(
    ("word", "unit"),
    [
        ("millisecond", "millisecond"), ("milliseconds", "millisecond"), ("second", "second"), ("seconds", "second"),
        ("minutes", "minute"), ("hours", "hour"), ("day", "day"), ("weeks", "week"), ("months", "month"),
        ("years", "year"), ("decades", "decade"), ("century", "century"), ("centuries", "century"),
        ("millennium", "millennium"), ("millennia", "millennium"), ("millenium", "millennium"),
    ],
)  # fmt: skip
def test_every_time_unit(word, unit):
    node = body(f"ts occurs < 2 {word} before now")
    assert node.unit == unit


# --- comprehension forms, let, aggregation --------------------------------------------------------------------------
def test_select_multi_and_quantifiers():
    node = body('select PV from xEvent where PV.v > 0, Item from PV.items where Item.SKU = "PS"')
    assert node == ast.Select(
        (
            ast.VarDecl("PV", N("xEvent"), ast.Binary(">", path("PV", "v"), i(0))),
            ast.VarDecl("Item", path("PV", "items"), ast.Binary("=", path("Item", "SKU"), s("PS"))),
        )
    )
    assert body("exists E from xEvent : E.x").kind == "exists"
    forall = body("FORALL E from xEvent where (E.p > 50), I from E.items")
    assert forall.kind == "forall" and len(forall.decls) == 2 and forall.decls[1].where is None


def test_aggregation_over_and_simple_forms():
    node = body("sum X.a + Y.b over X from xEvent, Y from xEvent")
    assert node.fn == "sum" and node.value == ast.Binary("+", path("X", "a"), path("Y", "b"))
    simple = body("average X from integerArray where X > 0")
    assert simple == ast.AggregateOver(
        "average", None, (ast.VarDecl("X", N("integerArray"), ast.Binary(">", N("X"), i(0))),)
    )
    # sum( is a call, not the prefix aggregation
    assert body("sum(1)") == ast.Call("sum", (i(1),))


def test_let_in_is_not_membership():
    node = body("let S = (sum X.p over X from xEvent) in (S > 100 and S < 1000)")
    assert isinstance(node, ast.Let) and node.var == "S"
    assert node.body == ast.Binary("and", ast.Binary(">", N("S"), i(100)), ast.Binary("<", N("S"), i(1000)))
    nested = body("let a = x in [1] in a")  # the first top-level in closes the let
    assert nested == ast.Let("a", N("x"), ast.Binary("in", ast.ListLiteral((i(1),)), N("a")))
    inner = body("let a = (x in [1]) in a")
    assert inner.value == ast.Binary("in", N("x"), ast.ListLiteral((i(1),)))


def test_if_in_segment_and_date_calls():
    assert body('if(a, "NA", "ROW")') == ast.Call("if", (N("a"), s("NA"), s("ROW")))
    assert body('inSegment("abc")') == ast.Call("inSegment", (s("abc"),))
    assert body("date(currentYear() - 1, 10, 1)").args[0] == ast.Binary(
        "-", ast.Call("currentYear", ()), i(1)
    )


# --- chain ------------------------------------------------------------------------------------------------------------
def test_chain_with_all_clauses():
    node = body(
        'CHAIN(xEvent, timestamp, [A: WHAT(eventType = "x") WHERE(y) WHEN(< 24 hours before now) COUNT(5) , '
        "B: WHAT(z) WHEN(today)])"
    )
    assert node.timestamp_field == "timestamp" and len(node.steps) == 2
    a, b = node.steps
    assert a.label == "A" and a.where == N("y") and a.count == 5
    assert a.when == ast.When(ast.TimeAnchor("now"), "<", 24, "hour", "before")
    assert b.when == ast.When(ast.TimeAnchor("today"))
    # words that are chain keywords stay identifiers elsewhere
    assert body("count = 1 and what = 2") == ast.Binary(
        "and", ast.Binary("=", N("count"), i(1)), ast.Binary("=", N("what"), i(2))
    )


def test_chain_clause_twice_is_an_error():
    with pytest.raises(PQLSyntaxError, match="WHEN"):
        parse("chain(xEvent, timestamp, [A: WHAT(a) WHEN(today) WHEN(today)])")


# --- positions ------------------------------------------------------------------------------------------------------
def test_positions_are_line_and_column():
    q = parse('a = 1 and\n  b.c = "x"')
    right = q.body.right
    assert right.pos == (2, 3)
    assert right.right.pos == (2, 9)


# --- errors -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("homeAddress.country = ", 1, 22, "ends too early"),
        ("person.birthYear = )", 1, 20, "expected a value after '=' but found ')'"),
        ("a and\n  b = = 1", 2, 7, "expected a value"),
        ('inSegment("a) and inSegment("b")', 1, 11, "not closed"),
        ('x = \u201cCA"', 1, 5, "curly quote"),
        ("x = 1 && y = 2", 1, 7, "'and'"),
        ("x == 1", 1, 4, "'='"),
        ("select X from xEvent wher X.a = 1", 1, 22, "did you mean 'where'"),
        ("x = 'abc", 1, 5, "not closed"),
        ("", 1, 1, "empty"),
        ("(a, b)", 1, 7, "'=>'"),
        ("(a.b) => 1", 1, 2, "plain names"),
    ],
)
def test_syntax_errors_have_position_and_words(text, line, column, words):
    with pytest.raises(PQLSyntaxError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.line, err.column) == (line, column), str(err)
    assert words in str(err)
    assert str(err).startswith(f"line {line}, column {column}: ") or not err.line


def test_error_carries_text_and_expected():
    with pytest.raises(PQLSyntaxError) as info:
        parse("a = )")
    assert info.value.text == ")"
    assert info.value.expected == ["a value"]
    assert info.value.caret("a = )") == "a = )\n    ^"


def test_non_text_input():
    with pytest.raises(PQLSyntaxError):
        parse(None)  # type: ignore[arg-type]


# --- size and depth ---------------------------------------------------------------------------------------------------
def test_long_and_chain_is_balanced_and_fast():
    text = " and ".join(f'field{n}.value = "v{n}"' for n in range(500))
    assert len(text) > 10_000
    start = time.thread_time()
    node = parse(text).body
    assert time.thread_time() - start < 1.0  # CPU time: load does not count
    depth, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        depth = max(depth, d)
        if isinstance(n, ast.Binary) and n.op == "and":
            stack += [(n.left, d + 1), (n.right, d + 1)]
    assert depth <= 11


def test_parse_time_is_linear():
    """10x the text costs about 10x the CPU time (quadratic would be 100x). Interleaved runs and CPU time, because
    the test box is shared."""
    unit = 'homeAddress.country = "US" or person.birthYear > 1980 and '
    texts = {"small": (unit * 20) + "x", "big": (unit * 200) + "x"}
    best = dict.fromkeys(texts, float("inf"))
    parse(texts["small"])
    for _ in range(5):
        for key, text in texts.items():
            t0 = time.process_time()
            parse(text)
            best[key] = min(best[key], time.process_time() - t0)
    assert best["big"] < 25 * max(best["small"], 1e-4)


def test_too_deep_nesting_is_a_syntax_error():
    with pytest.raises(PQLSyntaxError, match="nested too deeply"):
        parse("(" * (MAX_DEPTH + 5) + "x" + ")" * (MAX_DEPTH + 5))
    with pytest.raises(PQLSyntaxError, match="nested too deeply"):
        parse("-" * 2000 + "x")
    with pytest.raises(PQLSyntaxError, match="nested too deeply"):
        parse(" + ".join(["x"] * 2000))


def test_prefix_form_as_operand_gets_a_hint():
    with pytest.raises(PQLSyntaxError, match=r"put it in parentheses: \(select \.\.\.\)"):
        parse("a = 1 and select X from xEvent")


@pytest.mark.parametrize("text", ["not sum = 1", "not select = 1", "x = max", "not let = 1"])
def test_a_construct_word_is_never_a_name(text):
    """Found by the fuzzer: 'not sum = 1' parsed (sum a name) but printed as 'not (sum = 1)', which does not parse.
    Such a name is refused everywhere, at its position."""
    with pytest.raises(PQLSyntaxError) as info:
        parse(text)
    assert "cannot be used as a name" in info.value.message
    assert (
        info.value.column == text.index(text.split()[-3] if text.startswith("not") else text.split()[-1]) + 1
    )
