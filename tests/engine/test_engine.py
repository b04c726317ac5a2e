"""The engine's contract: output file and counts, dependency stages between definitions of a run, external
audiences, cycles, bad references, atomic output, cancellation, and the two engines agreeing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pql.compile.compile_fixture_data import NOW, SCHEMA

from segmentation_pipelines.engine import EngineDefinition, EvaluationCancelled, EvaluationRequest, evaluate
from segmentation_pipelines.engine.interrupt import run_interruptible
from segmentation_pipelines.pql import parse

ENGINES = ["duckdb", "polars"]


def _defs(**texts: str) -> list[EngineDefinition]:
    return [EngineDefinition(k, parse(v)) for k, v in texts.items()]


def _pairs(path: Path) -> set[tuple[str, str]]:
    return set(duckdb.sql(f"SELECT audience_id, profile_id FROM read_parquet('{path}')").fetchall())


def _members_on_both_engines(texts: dict[str, str], store, tmp_path: Path) -> dict[str, set[str]]:
    """Evaluate ``texts`` on DuckDB and Polars, check that they select the same pairs; members per audience."""
    got = {}
    for engine in ENGINES:
        out = tmp_path / f"{engine}.parquet"
        evaluate(EvaluationRequest(_defs(**texts), store[0], store[1], NOW, out, SCHEMA, engine=engine))
        got[engine] = _pairs(out)
    assert got["duckdb"] == got["polars"]
    return {a: {p for b, p in got["duckdb"] if b == a} for a in texts}


def _sql_aggregates(texts: dict[str, str]) -> dict:
    """Every event aggregate of the texts compiled to SQL, as the lowering describes it (shared by name, as in one
    batch)."""
    from segmentation_pipelines.pql import compile_sql

    aggs: dict = {}
    for t in texts.values():
        c = compile_sql.compile_definition(parse(t), SCHEMA, NOW)
        aggs.update((n, c.specs[n]) for n in c.aggregates)
    return aggs


@pytest.mark.parametrize("engine", ENGINES)
def test_output_counts_and_stages(engine: str, store, tmp_path: Path) -> None:
    defs = _defs(
        us='homeAddress.countryCode = "US"',
        carts='chain(xEvent, timestamp, [A: WHAT(eventType = "addToCart")])',
        both='inSegment("us") and inSegment("carts")',
        either_not='inSegment("both") or not(inSegment("carts"))',
        nobody="person.birthYear > 3000",
    )
    out = tmp_path / "out" / "pairs.parquet"
    res = evaluate(EvaluationRequest(defs, store[0], store[1], NOW, out, SCHEMA, engine=engine))
    assert res.output_path == out and out.exists()
    assert res.total_profiles == 5
    assert res.counts == {"us": 2, "carts": 2, "both": 1, "either_not": 4, "nobody": 0}
    got = _pairs(out)
    assert {p for a, p in got if a == "both"} == {"p1"}
    assert {p for a, p in got if a == "either_not"} == {"p1", "p3", "p4", "p5"}
    assert pq.read_schema(out).names == ["audience_id", "profile_id"]
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temporary file left behind
    assert set(res.timings) >= {"compile", "evaluate", "total"}


def test_numbered_pairs_are_the_same_pairs_on_both_engines(store, tmp_path: Path) -> None:
    """With ``profile_numbers`` each pair names its profile by number (the membership diff's index), on both
    engines the same pairs as by id; ``inSegment`` between definitions of the run still works; a profile the
    numbers miss fails the evaluation rather than dropping its pairs."""
    texts = dict(
        us='homeAddress.countryCode = "US"',
        carts='chain(xEvent, timestamp, [A: WHAT(eventType = "addToCart")])',
        both='inSegment("us") and inSegment("carts")',
        either_not='inSegment("both") or not(inSegment("carts"))',
    )
    ids = sorted(r[0] for r in duckdb.sql(f"SELECT profile_id FROM read_parquet('{store[0]}')").fetchall())
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(
        pa.table({"profile_id": ids, "pidx": pa.array([7 * i + 3 for i in range(len(ids))], pa.uint32())}),
        numbers,
    )
    by_id = _members_on_both_engines(texts, store, tmp_path)
    expected = {(a, 7 * ids.index(p) + 3) for a, members in by_id.items() for p in members}
    for engine in ENGINES:
        out = tmp_path / f"n-{engine}.parquet"
        res = evaluate(
            EvaluationRequest(
                _defs(**texts), store[0], store[1], NOW, out, SCHEMA, engine=engine, profile_numbers=numbers
            )
        )
        assert pq.read_schema(out).names == ["audience_id", "pidx"]
        assert set(duckdb.sql(f"SELECT audience_id, pidx FROM read_parquet('{out}')").fetchall()) == expected
        assert res.counts == {a: len(m) for a, m in by_id.items()}
    missing = tmp_path / "missing.parquet"
    pq.write_table(
        pa.table({"profile_id": ids[1:], "pidx": pa.array(range(1, len(ids)), pa.uint32())}), missing
    )
    for engine in ENGINES:
        with pytest.raises(ValueError, match="does not number every profile"):
            evaluate(
                EvaluationRequest(
                    _defs(**texts),
                    store[0],
                    store[1],
                    NOW,
                    tmp_path / "x.parquet",
                    SCHEMA,
                    engine=engine,
                    profile_numbers=missing,
                )
            )


@pytest.mark.parametrize("engine", ENGINES)
def test_external_members(engine: str, store, tmp_path: Path) -> None:
    ext = tmp_path / "ext.parquet"
    pq.write_table(pa.table({"profile_id": ["p2", "p5", "nobody-known"]}), ext)
    defs = _defs(d='inSegment("external-1") and not(homeAddress.countryCode = "US")')
    res = evaluate(
        EvaluationRequest(
            defs,
            store[0],
            store[1],
            NOW,
            tmp_path / "o.parquet",
            SCHEMA,
            engine=engine,
            external_members={"external-1": ext},
        )
    )
    assert _pairs(res.output_path) == {("d", "p2"), ("d", "p5")}


@pytest.mark.parametrize("engine", ENGINES)
def test_cycles_and_unknown_audiences_are_rejected(engine: str, store, tmp_path: Path) -> None:
    cyc = _defs(a='inSegment("b")', b='inSegment("a")')
    with pytest.raises(ValueError, match="cycle"):
        evaluate(
            EvaluationRequest(cyc, store[0], store[1], NOW, tmp_path / "o.parquet", SCHEMA, engine=engine)
        )
    unknown = _defs(a='inSegment("zzz")')
    with pytest.raises(ValueError, match="zzz"):
        evaluate(
            EvaluationRequest(unknown, store[0], store[1], NOW, tmp_path / "o.parquet", SCHEMA, engine=engine)
        )
    assert not (tmp_path / "o.parquet").exists()


def test_same_evaluation_time_same_members(store, tmp_path: Path) -> None:
    defs = _defs(w="select X from xEvent where X.timestamp occurs < 24 hours before now")
    a = evaluate(EvaluationRequest(defs, store[0], store[1], NOW, tmp_path / "a.parquet", SCHEMA))
    time.sleep(0.01)
    b = evaluate(EvaluationRequest(defs, store[0], store[1], NOW, tmp_path / "b.parquet", SCHEMA))
    assert _pairs(a.output_path) == _pairs(b.output_path) == {("w", "p1"), ("w", "p2"), ("w", "p3")}


def test_unknown_engine(store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="engine"):
        evaluate(
            EvaluationRequest([], store[0], store[1], NOW, tmp_path / "o.parquet", SCHEMA, engine="teradata")
        )


def test_cancel_interrupts_a_long_duckdb_query_within_seconds() -> None:
    con = duckdb.connect()
    cancel_at = time.monotonic() + 0.5
    t0 = time.monotonic()
    with pytest.raises(EvaluationCancelled):
        run_interruptible(
            lambda: con.execute(
                "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b"
            ).fetchall(),
            con.interrupt,
            lambda: time.monotonic() > cancel_at,
        )
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("engine", ENGINES)
def test_cancel_before_start_leaves_no_output(engine: str, store, tmp_path: Path) -> None:
    defs = _defs(a='homeAddress.countryCode = "US"')
    out = tmp_path / "o.parquet"
    with pytest.raises(EvaluationCancelled):
        evaluate(
            EvaluationRequest(
                defs, store[0], store[1], NOW, out, SCHEMA, engine=engine, should_cancel=lambda: True
            )
        )
    assert not out.exists()


def test_keyboard_interrupt_interrupts_the_query() -> None:
    con = duckdb.connect()
    timer = threading.Timer(0.5, lambda: None)
    timer.start()
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return False

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_interruptible(
            lambda: con.execute(
                "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b"
            ).fetchall(),
            con.interrupt,
            cancel,
        )
    assert time.monotonic() - t0 < 5


def test_shared_event_conditions_are_one_aggregate() -> None:
    from segmentation_pipelines.pql import compile_polars, compile_sql

    a = parse('homeAddress.countryCode = "US" and (select X from xEvent where X.eventType = "addToCart")')
    b = parse('not(select Y from xEvent where Y.eventType = "addToCart") or person.birthYear > 1980')
    for compiler in (compile_sql, compile_polars):
        ca, cb = compiler.compile_definition(a, SCHEMA, NOW), compiler.compile_definition(b, SCHEMA, NOW)
        assert len(ca.aggregates) == 1 and set(ca.aggregates) == set(cb.aggregates)


def test_element_field_conditions_share_one_list_and_agree(store, tmp_path: Path) -> None:
    """``arr[field = "v"].count() > 0`` of several definitions sets their mask bits in one lambda pass over the
    items in the DuckDB aggregate (a negated one reads one shared ``list_transform`` column; no lambda per
    condition) and selects the same profiles as Polars, also under NOT (where NULL and FALSE differ) and for
    events without items."""
    from segmentation_pipelines.engine.event_aggregates_sql import event_aggregate_select

    texts = {
        "ps": 'select X from xEvent where X.productListItems[SKU = "PS"].count() > 0',
        "lr": 'select X from xEvent where X.productListItems[SKU = "LR"].count() > 0',
        "not_lr": 'select X from xEvent where not(X.productListItems[SKU = "LR"].count() > 0)',
        "none": 'select X from xEvent where X.productListItems[SKU = "XX"].count() > 0',
    }
    sql = event_aggregate_select(_sql_aggregates(texts), "events AS e")
    # The three plain conditions: one lambda pass setting their mask bits; the negated one: one shared list.
    assert sql.upper().count("LIST_BIT_OR") == 1 and sql.upper().count("LIST_TRANSFORM") == 2
    assert "LIST_FILTER" not in sql.upper()
    members = _members_on_both_engines(texts, store, tmp_path)
    assert members["ps"] == {"p1"}
    assert members["lr"] == {"p1", "p2"}
    assert members["not_lr"] == {"p1", "p2", "p3", "p4"}
    assert not members["none"]


def test_event_type_conditions_run_in_their_type_branch_and_agree(store, tmp_path: Path) -> None:
    """Conditions requiring one event type are evaluated only on that type's events (a ``CASE`` on a per-event
    type code in the DuckDB aggregate): the members stay those of the conditions as written, on both engines,
    for windows, counts, max, a negated chain (with an event without timestamp) and an OR of two types."""
    from segmentation_pipelines.engine.event_aggregates_sql import event_aggregate_select

    texts = {
        "recent_cart": (
            'select X from xEvent where X.eventType = "addToCart" and X.timestamp occurs < 24 hours before now'
        ),
        "home3": 'xEvent[eventType = "homePageView"].count() >= 3',
        "cart_max": 'xEvent[eventType = "addToCart"].max(commerce.order.priceTotal) > 10',
        "no_login": 'not(chain(xEvent, timestamp, [A: WHAT(eventType = "login") WHEN(< 7 days before now)]))',
        "bought": 'select X from xEvent where X.eventType = "purchase" or X.eventType = "checkout"',
    }
    sql = event_aggregate_select(_sql_aggregates(texts), "events AS e")
    assert "CASE e.k WHEN" in sql and "THEN 1 WHEN" in sql
    members = _members_on_both_engines(texts, store, tmp_path)
    assert members == {
        "recent_cart": {"p1", "p2"},
        "home3": {"p3"},
        "cart_max": {"p1"},
        "no_login": {"p1", "p2", "p3", "p5"},
        "bought": {"p1", "p2"},
    }


def test_threshold_and_existence_comparisons_become_mask_bits(store, tmp_path: Path) -> None:
    """``max(..) > k``, ``min(..) <= k`` and ``count() > 0``/``>= 1`` become ``bool_or`` bits of the DuckDB mask,
    also under NOT and for profiles without (matching) events; ``count() >= 2`` stays a count. Members are the
    hand-computed ones, on both engines."""
    from segmentation_pipelines.pql import compile_sql

    texts = {
        "big_cart": 'xEvent[eventType = "addToCart"].max(commerce.order.priceTotal) > 10',
        "not_big_cart": 'not(xEvent[eventType = "addToCart"].max(commerce.order.priceTotal) > 10)',
        "cheap_cart": 'xEvent[eventType = "addToCart"].min(commerce.order.priceTotal) <= 5',
        "any_home": 'xEvent[eventType = "homePageView"].count() > 0',
        "no_home": 'not(xEvent[eventType = "homePageView"].count() >= 1)',
        "two_home": 'xEvent[eventType = "homePageView"].count() >= 2',
        "any_event": "xEvent.count() > 0",
    }
    compiled = [compile_sql.compile_definition(parse(t), SCHEMA, NOW) for t in texts.values()]
    aggs = {n: c.specs[n] for c in compiled for n in c.aggregates}
    assert [(a.fn, a.cond is not None) for a in aggs.values() if a.fn != "bool_or"] == [("count", True)]
    members = _members_on_both_engines(texts, store, tmp_path)
    assert members == {
        "big_cart": {"p1"},
        "not_big_cart": {"p2", "p3", "p4", "p5"},
        "cheap_cart": {"p2"},
        "any_home": {"p1", "p2", "p3"},
        "no_home": {"p4", "p5"},
        "two_home": {"p1", "p3"},
        "any_event": {"p1", "p2", "p3", "p4"},
    }
