"""The hypothesis generators of well-typed PQL definitions over the fixture schema, the small stores they run on, and
the differential harness: one home for the engine differentials (DuckDB/Polars, Spark/DuckDB) and the property test
of what the checker accepts."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from pql.compile.compile_fixture_data import NOW, SCHEMA, events_table, profiles_table
from segmentation_pipelines.engine import EngineDefinition, EvaluationRequest, evaluate
from segmentation_pipelines.pql import parse

NOW_N = NOW.replace(tzinfo=None)
TODAY = NOW_N.replace(hour=0)
# Timestamps on and around the boundaries of the generated windows.
TIMES = [
    None,
    NOW_N,
    NOW_N - timedelta(hours=24),
    TODAY,
    TODAY - timedelta(days=1),
    TODAY - timedelta(days=3),
    datetime(2026, 10, 29),
    datetime(2026, 10, 31, 12),
    datetime(2026, 11, 23),
    datetime(2026, 11, 16),
    NOW_N - timedelta(hours=1),
    NOW_N + timedelta(hours=3),
    datetime(2026, 11, 28, 23, 59, 59),
    datetime(2025, 12, 31),
]

strings = st.sampled_from(
    ["US", "us", "CA", "John", "jo", "UpJohn", "a@b.edu", "X@Y.EDU", "joe@yahoo.com", ""]
)
small_int = st.integers(-3, 200)


def opt(s):
    return st.one_of(st.none(), s)


profile_row = st.fixed_dictionaries(
    {
        "person": opt(
            st.fixed_dictionaries(
                {
                    "name": st.fixed_dictionaries(
                        {"firstName": opt(st.sampled_from(["John", "jo", "UpJohn", "Ann", "JOHN"]))}
                    ),
                    "birthYear": opt(st.integers(1970, 2000)),
                    "birthMonth": opt(st.integers(1, 12)),
                    "birthDate": st.none(),
                    "gender": opt(st.sampled_from(["m", "f"])),
                    "favoriteColors": opt(st.lists(st.sampled_from(["red", "blue", "green"]), max_size=3)),
                    "scores": opt(st.lists(opt(st.sampled_from([0.0, 1.5, 2.0, 7.25])), max_size=3)),
                }
            )
        ),
        "homeAddress": opt(
            st.fixed_dictionaries(
                {
                    "country": opt(st.sampled_from(["US", "Canada", "us"])),
                    "countryCode": opt(st.sampled_from(["US", "CA", "us"])),
                    "stateProvince": opt(st.sampled_from(["CA", "OR", "ON"])),
                    "city": opt(st.sampled_from(["SF", "sf", "Paris"])),
                }
            )
        ),
        "workEmail": opt(
            st.fixed_dictionaries(
                {"address": opt(st.sampled_from(["a@b.edu", "X@Y.EDU", "joe@yahoo.com", ""]))}
            )
        ),
        "loyalty": opt(
            st.fixed_dictionaries(
                {
                    "tier": opt(st.sampled_from(["gold", "silver"])),
                    "points": opt(small_int),
                    "vip": opt(st.booleans()),
                }
            )
        ),
        "orders": opt(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "price": opt(st.sampled_from([0.0, 5.0, 10.0, 99.5])),
                        "storeId": opt(st.sampled_from(["s1", "s2"])),
                    }
                ),
                max_size=3,
            )
        ),
    }
)
event_row = st.fixed_dictionaries(
    {
        "p": st.integers(0, 5),
        "timestamp": st.sampled_from(TIMES),
        "eventType": opt(st.sampled_from(["a", "b", "c"])),
        "commerce": st.fixed_dictionaries(
            {
                "order": st.fixed_dictionaries(
                    {
                        "priceTotal": opt(st.sampled_from([0.0, 5.0, 50.0, 120.0])),
                        "currencyCode": opt(st.sampled_from(["USD", "EUR"])),
                    }
                ),
                "checkouts": st.fixed_dictionaries({"value": opt(st.sampled_from([0.0, 1.0]))}),
            }
        ),
        "productListItems": opt(
            st.lists(
                st.fixed_dictionaries(
                    {"SKU": opt(st.sampled_from(["PS", "LR"])), "quantity": opt(st.integers(0, 3))}
                ),
                max_size=2,
            )
        ),
    }
)

# --- expressions --------------------------------------------------------------------------------------------------
NUM_FIELDS = ["person.birthYear", "loyalty.points", "person.birthMonth"]
STR_FIELDS = ["homeAddress.countryCode", "person.name.firstName", "workEmail.address", "homeAddress.city"]
OCCURS = [
    "< 24 hours before now",
    "<= 1 month before today",
    "< 1 month before today",
    "= 1 day before today",
    "= 3 days before today",
    "> 1 month before today",
    ">= 1 month before today",
    "today",
    "yesterday",
    "this week",
    "last week",
    "last month",
    "this year",
    "before today",
    "after today",
    "on date(2026, 11, 23)",
    "between date(2026, 10, 29) and yesterday",
    "> 2 days after date(2026, 11, 23)",
    "<= 3 hours after now",
    "= 2 hours before now",
]
LIST_OF_STR = '["US", "CA"]'


def q(s: str) -> str:
    return '"' + s + '"'


@st.composite
def profile_atom(draw) -> str:
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return f"{draw(st.sampled_from(NUM_FIELDS))} {draw(st.sampled_from(['=', '!=', '<', '<=', '>', '>=']))} {draw(small_int)}"
    if kind == 1:
        return f"{draw(st.sampled_from(STR_FIELDS))} {draw(st.sampled_from(['=', '!=']))} {q(draw(strings))}"
    if kind == 2:
        return f"{draw(st.sampled_from(STR_FIELDS))} {draw(st.sampled_from(['in', 'notIn']))} {LIST_OF_STR}"
    if kind == 3:
        fn = draw(
            st.sampled_from(
                [
                    "startsWith",
                    "endsWith",
                    "contains",
                    "doesNotStartWith",
                    "doesNotEndWith",
                    "doesNotContain",
                    "equals",
                    "notEqualTo",
                ]
            )
        )
        cs = draw(st.sampled_from(["", ", true", ", false"]))
        return f"{draw(st.sampled_from(STR_FIELDS))}.{fn}({q(draw(strings))}{cs})"
    if kind == 4:
        pat = draw(st.sampled_from(["%.edu", "jo%", "_@%", "%", "J_hn"]))
        return f"{draw(st.sampled_from(STR_FIELDS))} like {q(pat)}"
    if kind == 5:
        rx = draw(st.sampled_from(["John", "(?i)john", "^j", "[0-9]", "edu$", "(?i)^x@"]))
        return f"{draw(st.sampled_from(STR_FIELDS))} matches {q(rx)}"
    if kind == 6:
        a, b = draw(st.sampled_from(NUM_FIELDS)), draw(st.sampled_from(NUM_FIELDS))
        op = draw(st.sampled_from(["+", "-", "*", "/", "%"]))
        return f"{a} {op} {b} > {draw(small_int)}"
    if kind == 7:
        return f"{q(draw(st.sampled_from(['red', 'blue'])))} {draw(st.sampled_from(['in', 'notIn']))} person.favoriteColors"
    if kind == 8:
        fn = draw(st.sampled_from(["count()", "sum(price)", "average(price)", "min(price)", "max(price)"]))
        return f"orders.{fn} {draw(st.sampled_from(['=', '>', '<']))} {draw(st.sampled_from([0, 5, 10, 50]))}"
    if kind == 9:
        return f"person.scores.{draw(st.sampled_from(['sum()', 'average()', 'max()', 'count()']))} >= {draw(st.sampled_from([0, 2, 3]))}"
    if kind == 10:
        return f"loyalty.vip = {draw(st.sampled_from(['true', 'false', q('true')]))}"
    return draw(
        st.sampled_from(
            [
                "homeAddress",
                "homeAddress.city",
                "person.favoriteColors",
                "orders[price > 6]",
                "homeAddress.city.isNull()",
                "workEmail.address.isNotNull()",
            ]
        )
    )


@st.composite
def event_cond(draw) -> str:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return f"eventType = {q(draw(st.sampled_from(['a', 'b', 'c'])))}"
    if kind == 1:
        return f"commerce.order.priceTotal {draw(st.sampled_from(['>', '<=', '!=']))} {draw(st.sampled_from([0, 5, 50]))}"
    if kind == 2:
        return f"timestamp occurs {draw(st.sampled_from(OCCURS))}"
    if kind == 3:
        return f"productListItems[SKU = {q(draw(st.sampled_from(['PS', 'LR'])))}].count() > 0"
    return f"commerce.order.currencyCode.equals({q(draw(st.sampled_from(['usd', 'EUR'])))}, false)"


@st.composite
def event_atom(draw) -> str:
    c = draw(event_cond())
    c2 = draw(event_cond())
    kind = draw(st.integers(0, 12))
    if kind == 0:
        return f"xEvent[{c} and {c2}].count() >= {draw(st.integers(0, 3))}"
    if kind == 7:  # pairs of events (the inner range reads the outer event)
        window = draw(st.sampled_from(["< 2 hours after", "<= 1 day after", "> 3 days after", "before"]))
        return f"select A from xEvent where A.{c}, B from xEvent where B.{c2} and B.timestamp occurs {window} A.timestamp"
    if kind == 8:  # element conditions reading the enclosing event and the profile
        return draw(
            st.sampled_from(
                [
                    "select X from xEvent where X.productListItems[quantity >= X.commerce.checkouts.value].count() > 0",
                    "exists E from xEvent : E.productListItems[quantity * 20 > loyalty.points].count() > 0",
                    "orders[price > loyalty.points].count() > 0",
                    "forall O from orders where O.price * 10 > loyalty.points",
                ]
            )
        )
    if kind == 9:  # aggregation over several declarations
        fn = draw(st.sampled_from(["sum", "average", "min", "max"]))
        return (
            f"({fn} X.commerce.order.priceTotal + Y.commerce.order.priceTotal over X from xEvent where X.{c}, "
            f"Y from xEvent where Y.timestamp > X.timestamp) > {draw(st.sampled_from([0, 10, 60]))}"
        )
    if kind == 10:  # array methods of events (set-like: independent of the order of equal timestamps)
        return draw(
            st.sampled_from(
                [
                    'xEvent.eventType.includes("a")',
                    'xEvent.productListItems.SKU.intersects(["LR"])',
                    'xEvent.eventType.subsetOf(["a", "b"])',
                    "xEvent.eventType.distinct().count() = 2",
                    "xEvent.productListItems.count() >= 2",
                    "xEvent.productListItems.quantity.sum() > 2",
                ]
            )
        )
    if kind in (11, 12):  # head() of events with distinct timestamps only (ties pick either event)
        return (
            f"xEvent[{c}].count() = xEvent[{c}].timestamp.distinct().count() and "
            f"xEvent[{c}].head().eventType = {q(draw(st.sampled_from(['a', 'b'])))}"
        )
    if kind == 1:
        return f"select X from xEvent where X.{c}"
    if kind == 2:
        fn = draw(st.sampled_from(["sum", "average", "min", "max"]))
        return f"({fn} X.commerce.order.priceTotal over X from xEvent where X.{c}) > {draw(st.sampled_from([0, 10, 60]))}"
    if kind == 3:
        return f"forall E from xEvent where E.{c}"
    if kind == 4:
        return f"xEvent.productListItems.SKU = {q(draw(st.sampled_from(['PS', 'LR'])))}"
    steps = []
    for i in range(draw(st.integers(1, 3))):
        when = draw(
            st.sampled_from(
                ["", " WHEN(today)", " WHEN(< 24 hours before now)", " WHEN(< 8 days before now)"]
            )
        )
        count = draw(st.sampled_from(["", "", " COUNT(2)"]))
        steps.append(f"S{i}: WHAT({draw(event_cond())}){when}{count}")
    return f"chain(xEvent, timestamp, [{', '.join(steps)}])"


def boolean(depth: int = 2):
    atom = st.one_of(profile_atom(), event_atom())
    if depth == 0:
        return atom
    sub = boolean(depth - 1)
    return st.one_of(
        atom,
        st.builds(lambda a, b: f"({a}) and ({b})", sub, sub),
        st.builds(lambda a, b: f"({a}) or ({b})", sub, sub),
        st.builds(lambda a: f"not({a})", sub),
    )


def write_world(tmp: Path, profiles: list[dict], events: list[dict]) -> tuple[Path, Path]:
    """The profiles and events drawn, as the store files an engine reads (the fixture schema)."""
    p_schema, e_schema = profiles_table().schema, events_table().schema
    prows = [
        {"profile_id": f"p{i}", "identityMap": None, "workAddress": None, "_repo": None, **r}
        for i, r in enumerate(profiles)
    ]
    erows = [
        {"profile_id": f"p{r['p']}", "_id": f"e{i}", "web": None, **{k: v for k, v in r.items() if k != "p"}}
        for i, r in enumerate(events)
    ]
    tmp.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(prows, schema=p_schema), tmp / "profiles.parquet")
    (tmp / "events").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(erows, schema=e_schema), tmp / "events" / "part-0.parquet")
    return tmp / "profiles.parquet", tmp / "events"


def members(engine: str, prof: Path, evs: Path, texts: list[str], out: Path) -> set[tuple[str, str]]:
    """``(audience, profile)`` pairs of the definitions ``texts`` evaluated by ``engine``."""
    defs = [EngineDefinition(f"d{i}", parse(t)) for i, t in enumerate(texts)]
    evaluate(EvaluationRequest(defs, prof, evs, NOW, out, SCHEMA, engine=engine))
    return set(duckdb.sql(f"SELECT audience_id, profile_id FROM read_parquet('{out}')").fetchall())


def assert_engines_agree(tmp: Path, engines: tuple[str, str], profiles, events, texts: list[str]) -> None:
    """Both ``engines`` give the same members for ``texts`` on the drawn world; else name the definitions that differ."""
    prof, evs = write_world(tmp, profiles, events)
    a = members(engines[0], prof, evs, texts, tmp / "a.parquet")
    b = members(engines[1], prof, evs, texts, tmp / "b.parquet")
    if a != b:
        diff = sorted(a ^ b)
        bad = sorted({int(d[0][1:]) for d in diff})
        raise AssertionError(f"engines disagree on {[texts[i] for i in bad]}: {diff}")
