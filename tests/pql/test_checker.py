"""The checker: name resolution (pql.md §0, §4), types and coercions, and the errors it must raise."""

from __future__ import annotations

import time

import pytest

from segmentation_pipelines.pql import PQLValidationError, ast, check, parse
from segmentation_pipelines.pql import types as T

from .pql_front_schema import SCHEMA

AUDIENCES = {"vip": "11111111-aaaa", "11111111-aaaa": "11111111-aaaa", "22222222-bbbb": "22222222-bbbb"}


def ok(text: str, **kw):
    return check(text, SCHEMA, **kw)


def bad(text: str, **kw) -> PQLValidationError:
    with pytest.raises(PQLValidationError) as info:
        check(text, SCHEMA, **kw)
    return info.value


def find(node, kind, pred=lambda n: True):
    """All nodes of type ``kind`` under ``node`` (pre-order)."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, kind) and pred(n):
            out.append(n)
        for v in n.__dict__.values():
            items = v if isinstance(v, tuple) else (v,)
            for x in items:
                if isinstance(x, ast.Node):
                    stack.append(x)
                elif isinstance(x, tuple):
                    stack.extend(y for y in x if isinstance(y, ast.Node))
    return out[::-1]


# --- resolution ---------------------------------------------------------------------------------------------------
def test_profile_and_event_fields_are_resolved_and_reported():
    c = ok(
        'homeAddress.country = "US" and xEvent[eventType = "x" and commerce.order.priceTotal > 1].count() > 0'
    )
    assert c.result_type == T.BOOLEAN
    assert c.profile_fields == {"homeAddress.country"}
    assert c.event_fields == {"eventType", "commerce.order.priceTotal"}
    member = find(c.query, ast.Member, lambda n: n.name == "country")[0]
    r = c.resolution(member)
    assert (r.kind, r.path, r.schema_class, r.schema_path) == (
        "profile",
        ("homeAddress", "country"),
        "profile",
        ("homeAddress", "country"),
    )
    assert c.type_of(member) == T.STRING
    event_type = find(c.query, ast.Name, lambda n: n.name == "eventType")[0]
    r = c.resolution(event_type)
    assert r.kind == "element" and isinstance(r.binder, ast.Filter) and r.schema_path == ("eventType",)


def test_element_first_then_enclosing_and_caret_forces_enclosing():
    schema_text = 'xEvent[productListItems[SKU = "PS" and ^eventType = "x"]].count() > 0'
    c = ok(schema_text)
    sku = find(c.query, ast.Name, lambda n: n.name == "SKU")[0]
    assert c.resolution(sku).schema_path == ("productListItems", "[]", "SKU")
    up = find(c.query, ast.Up)[0]
    r = c.resolution(up)
    assert r.kind == "element" and r.schema_path == ("eventType",)
    outer_filter = c.query.body.left.obj
    assert r.binder is outer_filter
    # a name not on the element falls back to the profile
    c = ok('xEvent[eventType = "x" and homeAddress.country = "US"].count() > 0')
    home = find(c.query, ast.Member, lambda n: n.name == "country")[0]
    assert c.resolution(home).kind == "profile"
    # ^ cannot step out of more levels than exist
    assert "steps out" in bad('xEvent[^^eventType = "x"].count() > 0').message


def test_select_variables_and_chain_steps():
    c = ok(
        'select X from xEvent where X.commerce.order.currencyCode = "USD", I from X.productListItems where I.SKU = "PS"'
    )
    x_path = find(c.query, ast.Member, lambda n: n.name == "currencyCode")[0]
    r = c.resolution(x_path)
    assert r.kind == "variable" and r.var == "X" and isinstance(r.binder, ast.VarDecl)
    assert r.path == ("commerce", "order", "currencyCode") and r.schema_class == "event"
    sku = find(c.query, ast.Member, lambda n: n.name == "SKU")[0]
    assert c.resolution(sku).schema_path == ("productListItems", "[]", "SKU")
    c = ok('chain(xEvent, timestamp, [A: WHAT(eventType = "addToCart") WHEN(< 24 hours before now)])')
    name = find(c.query, ast.Name, lambda n: n.name == "eventType")[0]
    assert isinstance(c.resolution(name).binder, ast.ChainStep)
    assert c.event_fields == {"eventType", "timestamp"}


def test_lambda_head_and_param():
    c = ok("(Profile) => Profile.homeAddress.stateProvince = $1.workAddress.stateProvince")
    left = c.query.body.left
    assert (c.resolution(left).kind, c.resolution(left).path) == ("profile", ("homeAddress", "stateProvince"))
    assert c.resolution(c.query.body.right.obj.obj) == ast_profile_root()
    assert c.profile_fields == {"homeAddress.stateProvince", "workAddress.stateProvince"}


def test_groupby_map_lambda_and_this():
    text = (
        'xEvent[(timestamp occurs < 7 days before now) and eventType="download"].groupBy(product)'
        '.map((K, G) => mapEntry(K, {"count": G.count(), "sum": G.sum(commerce.order.priceTotal)}))'
    )
    c = ok(text, allow_non_boolean=True)
    assert c.result_type.kind == "map"
    total = find(c.query, ast.Member, lambda n: n.name == "priceTotal")[0]
    assert c.resolution(total).kind == "element"
    c = ok('xEvent.groupBy(product).map({"n": this.count()})', allow_non_boolean=True)
    this = find(c.query, ast.This)[0]
    assert c.type_of(this).kind == "array"


def ast_profile_root():
    from segmentation_pipelines.pql import Resolution

    return Resolution("profile", (), None, None, "profile", None)


# --- errors -----------------------------------------------------------------------------------------------------------
def test_unknown_field_names_the_path_and_suggests():
    err = bad('homeAdress.country = "US"')
    assert (err.line, err.column) == (1, 1)
    assert "unknown field 'homeAdress.country'" in err.message
    assert "did you mean 'homeAddress.country'?" in err.message
    err = bad('person.birthYear = 1 or\n  xEvent[eventTyp = "x"].count() > 0')
    assert (err.line, err.column) == (2, 10) and "did you mean 'eventType'" in err.message
    err = bad('homeAddress.contry = "US"')
    assert "homeAddress.country" in err.message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('person.birthYear = "1980"', "cannot compare 'person.birthYear' (integer) with \"1980\" (string)"),
        ("homeAddress.city = 3", "put the value in quotes"),
        ("homeAddress.city occurs today", "'occurs' needs a date or timestamp"),
        ('person.birthYear.contains("x")', "expected a string"),
        ('homeAddress.city.contians("x")', "did you mean 'contains'"),
        ('homeAddress.city in "CA"', "needs a list"),
        ('person.birthYear + "a" > 1', "a number"),
        ('foo("x")', "unknown function 'foo'"),
        ('[1, "a"] = x', "one type"),
        ("person.birthYear > true", "orders numbers"),
        ("$2.x = 1", "only $1"),
        ("select X from homeAddress.city", "needs an array"),
        ("person.birthYear.x = 1", "has no field 'x'"),
        ("select X from xEvent, X from xEvent", "declared twice"),
        ("inSegment(homeAddress.city)", "in quotes"),
        ("person.birthYear", None),
    ],
)
def test_rejected_expressions(text, words):
    if words is None:  # a reference is a valid segment (defined -> true)
        ok(text)
        return
    err = bad(text)
    assert words in err.message, err.message
    assert err.line >= 1 and err.column >= 1


def test_chain_step_limit():
    steps = ", ".join(f'S{n}: WHAT(eventType = "e{n}")' for n in range(6))
    ok(f"chain(xEvent, timestamp, [{steps}])")
    err = bad(f'chain(xEvent, timestamp, [{steps}, S6: WHAT(eventType = "x")])')
    assert "at most 6 steps" in err.message
    assert err.column == len(f"chain(xEvent, timestamp, [{steps}, ") + 1  # points at the 7th step
    err = bad('chain(xEvent, ts, [A: WHAT(eventType = "x")])')
    assert "no field 'ts'" in err.message


def test_segment_must_be_a_condition_unless_values_allowed():
    err = bad("person.birthYear + 1")
    assert "must be a condition" in err.message
    c = ok("person.birthYear + 1", allow_non_boolean=True)
    assert c.result_type == T.INTEGER
    assert ok("product.price / product.inventory", allow_non_boolean=True).result_type == T.NUMBER
    assert (
        ok('if(homeAddress.countryCode in ["US"], "NA", "ROW")', allow_non_boolean=True).result_type
        == T.STRING
    )


# --- coercions and existential comparison --------------------------------------------------------------------------
def test_documented_coercions_are_recorded():
    c = ok('consent.marketing = "true"')
    lit = c.query.body.right
    assert c.coercion(lit) == T.BOOLEAN
    c = ok('person.birthDate = "2000-01-31"')
    assert c.coercion(c.query.body.right) == T.DATE
    assert "cannot compare" in bad('person.birthDate = "yesterday-ish"').message
    c = ok("person.birthYear = 1980.0")  # integer and double compare numerically
    assert c.coercion(c.query.body.right) is None


def test_array_path_compared_with_scalar_is_existential_with_warning():
    c = ok('xEvent.productListItems.SKU = "PS"')
    assert c.warnings and "any element" in c.warnings[0][0]
    assert c.event_fields == {"productListItems[].SKU"}


# --- audiences ----------------------------------------------------------------------------------------------------
def test_in_segment_resolves_audiences_in_order():
    c = ok(
        'inSegment("vip") and inSegment("22222222-bbbb") and inSegment("11111111-aaaa")',
        resolve_audience=AUDIENCES.get,
    )
    assert c.referenced_audiences == ("11111111-aaaa", "22222222-bbbb")
    err = bad('homeAddress.city = "x" and inSegment("nope")', resolve_audience=AUDIENCES.get)
    assert (err.line, err.column) == (1, 28) and "unknown audience 'nope'" in err.message
    assert ok('inSegment("anything")').referenced_audiences == ("anything",)


def test_in_segment_cycles_are_rejected():
    deps = {"a": ["b"], "b": ["c"], "c": [], "d": ["me"]}
    ok('inSegment("a")', dependencies=lambda x: deps.get(x, []), self_id="me")
    err = bad('inSegment("d")', dependencies=lambda x: deps.get(x, []), self_id="me")
    assert "cycle" in err.message and "me -> d -> me" in err.message
    err = bad('inSegment("me")', self_id="me")
    assert "itself" in err.message
    deps["c"] = ["me"]
    err = bad(
        'x.y = 1 or inSegment("a")'.replace("x.y = 1", "person.birthYear = 1"),
        dependencies=lambda x: deps.get(x, []),
        self_id="me",
    )
    assert "me -> a -> b -> c -> me" in err.message


# --- speed --------------------------------------------------------------------------------------------------------
def test_check_is_fast_for_a_realistic_definition():
    text = (
        'homeAddress.countryCode = "US" and person.birthYear > 1980 and workEmail.address.endsWith(".edu", false) '
        'and chain(xEvent, timestamp, [A: WHAT(eventType = "addToCart") WHEN(< 8 days before now), '
        'B: WHAT(eventType = "commerce.checkouts")]) and not(inSegment("vip"))'
    )
    query = parse(text)
    check(query, SCHEMA, AUDIENCES.get)
    runs = []
    for _ in range(20):
        t0 = time.perf_counter()
        check(query, SCHEMA, AUDIENCES.get)
        runs.append(time.perf_counter() - t0)
    assert sorted(runs)[10] < 0.005


# --- every method family --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('workEmail.address.contains("yahoo")', "boolean"),
        ('workEmail.address.doesNotStartWith("joe", false)', "boolean"),
        ('State.equals("AL", "AK", "AZ")', "boolean"),
        ('firstName.notEqualTo("John")', "boolean"),
        ('emailAddress.matches("(?i)john")', "boolean"),
        ('emailAddress.regexGroup("@(\\\\w+)", 1)', "string"),
        ('person.favoriteColors.includes("red")', "boolean"),
        ('person.favoriteColors.intersection(["red", "blue"])', "array"),
        ("person.citiesVisited.intersects(person.favoriteCities)", "boolean"),
        ("person.citiesVisited.subsetOf(person.favoriteCities)", "boolean"),
        ("person.citiesVisited.supersetOf(person.favoriteCities)", "boolean"),
        ("person.orders.storeId.distinct().count()", "integer"),
        ("orders.topN(price, 5).head()", "object"),
        ("orders.bottomN(price, 2)", "array"),
        ("orders.average(order.price)", "number"),
        ("orders.max(order.price)", "number"),
        ("integerArray.sum()", "integer"),
        ("orders.filter(price > 10).count()", "integer"),
        ("orders.exists(price > 10)", "boolean"),
        ("integerArray.map(this * 2)", "array"),
        ('segmentMembership.get("ups").get("abc").status', "any"),
        ("identityMap.keys()", "array"),
        ('identityMap.values().exists(id = "x")', "boolean"),
        ("homeAddress.isNotNull()", "boolean"),
        ("homeAddress.city.isNull()", "boolean"),
        ("product.sale.getDayOfMonth()", "integer"),
        ("_repo.modifyDate.getYear()", "integer"),
        ("person.birthDate.getMonth()", "integer"),
        ("currentMonth()", "integer"),
        ("date(currentYear() - 1, 10, 1)", "date"),
        ("average X from integerArray where X > 0", "number"),
        ("max X.commerce.order.priceTotal over X from xEvent", "number"),
        ("let S = (sum X.commerce.order.priceTotal over X from xEvent) in S > 100", "boolean"),
        ('mapEntry("k", 1)', "mapentry"),
    ],
)
def test_method_and_function_result_types(text, kind):
    assert ok(text, allow_non_boolean=True).result_type.kind == kind


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("product.sale.contains(1)", "expected a string"),
        ("homeAddress.city.getMonth()", "a date or timestamp"),
        ("homeAddress.city.count()", "applies to an array"),
        ("identityMap.head()", "does not apply to a map"),
        ("orders.topN(price)", "takes 2 arguments"),
        ("date(2020, 1)", "takes 3 arguments"),
        ('workEmail.address.startsWith("a", "b")', "case switch"),
        ('xEvent.commerce.order.priceTotal.contains("x")', "applies to strings"),
    ],
)
def test_method_misuse(text, words):
    assert words in bad(text, allow_non_boolean=True).message


@pytest.mark.parametrize(
    "text, column, words",
    [
        ("xEvent.groupBy(product).count() > 2", 1, "groupBy(...) builds a map"),
        (
            'person.name.firstName.isNotNull() and xEvent.map({"n": eventType}).count() > 1',
            50,
            "object literal",
        ),
        ('mapEntry("a", 1).isNotNull()', 1, "mapEntry(...)"),
        ("xEvent.head() = xEvent.head()", 1, "compare their fields"),
        ("homeAddress != workAddress", 1, "compare their fields"),
    ],
)
def test_segment_definitions_reject_computed_attribute_constructs(text, column, words):
    # The engines evaluate conditions; constructs that only build values are rejected on segment definitions (with
    # their position), and accepted for computed attributes.
    err = bad(text)
    assert (err.line, err.column) == (1, column) and words in err.message
    ok(text, allow_non_boolean=True)


@pytest.mark.parametrize(
    "text, column",
    [
        ('exists X from xEvent : chain(xEvent, timestamp, [A: WHAT(eventType = "a")])', 24),
        ('xEvent[chain(xEvent, timestamp, [A: WHAT(eventType = "a")])].count() > 0', 8),
        ('chain(xEvent, timestamp, [A: WHAT(chain(xEvent, timestamp, [B: WHAT(eventType = "a")]))])', 35),
    ],
)
def test_chain_inside_a_condition_over_events_is_rejected(text, column):
    # A chain is a profile-level condition; nested inside a per-element condition no engine evaluates it.
    err = bad(text)
    assert (err.line, err.column) == (1, column) and "whole profile" in err.message


@pytest.mark.parametrize(
    "text",
    [
        'let c = chain(xEvent, timestamp, [A: WHAT(eventType = "a")]) in c',
        '(Profile) => chain(xEvent, timestamp, [A: WHAT(eventType = "a")]) and Profile.person.name.firstName = "x"',
    ],
)
def test_chain_at_profile_level_is_accepted(text):
    ok(text)
