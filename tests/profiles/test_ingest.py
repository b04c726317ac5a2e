"""Ingestion: bad rows are rejected with reasons, good rows land, timestamps normalise to UTC."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.profiles.xdm import EVENT_CLASS, PROFILE_CLASS

from .helpers import ident, ingest, write_jsonl


def _rejects(layout, ref):
    return [json.loads(x) for x in layout.rejects_path(ref.dataset_id, ref.batch_id).read_text().splitlines()]


def test_bad_event_rows_are_rejected_with_reasons_and_good_rows_kept(tmp_path):
    layout = StoreLayout(tmp_path / "sb")
    path = write_jsonl(
        tmp_path / "ev.jsonl",
        [
            {
                "_id": "ok1",
                "timestamp": "2024-05-01T10:00:00+02:00",
                "eventType": "commerce.purchases",
                "identityMap": ident(ECID="1"),
                "commerce": {"order": {"priceTotal": 12.5, "currencyCode": "EUR"}},
                "productListItems": [{"SKU": "A", "quantity": 2}],
            },
            {
                "_id": "ok2",
                "timestamp": 1714557600000,
                "eventType": "web.webpagedetails.pageViews",
                "identityMap": ident(ECID="2"),
            },
            {"_id": "no-ts", "eventType": "x", "identityMap": ident(ECID="3")},
            {"_id": "no-ids", "timestamp": "2024-01-01T00:00:00Z", "eventType": "x"},
            {"_id": "empty-ids", "timestamp": "2024-01-01T00:00:00Z", "identityMap": {"ECID": []}},
            {"_id": "bad-ts", "timestamp": "yesterday", "identityMap": ident(ECID="5")},
            {
                "_id": "bad-price",
                "timestamp": "2024-01-01T00:00:00Z",
                "identityMap": ident(ECID="6"),
                "commerce": {"order": {"priceTotal": "abc"}},
            },
            {
                "_id": "bad-qty",
                "timestamp": "2024-01-01T00:00:00Z",
                "identityMap": ident(ECID="7"),
                "productListItems": [{"SKU": "B", "quantity": "many"}],
            },
            "this is not json",
            "",
        ],
    )
    ref, result = ingest(layout, "ev", EVENT_CLASS, path)
    assert (result.rows, result.rejected) == (2, 7)
    reasons = {r["line"]: r["reasons"] for r in _rejects(layout, ref)}
    assert reasons == {
        3: ["timestamp: missing"],
        4: ["identityMap: missing or without any identity"],
        5: ["identityMap: missing or without any identity"],
        6: ["timestamp: not an ISO 8601 date-time or epoch milliseconds"],
        7: ["commerce.order.priceTotal: expected number"],
        8: ["productListItems[].quantity: expected integer"],
        9: ["not a JSON object"],
    }
    got = duckdb.sql(
        f"""SELECT _id, timestamp::VARCHAR, eventType, commerce.order.priceTotal, productListItems[1].quantity
        FROM read_parquet('{layout.batch_dir("ev", ref.batch_id)}/*.parquet') ORDER BY _id"""
    ).fetchall()
    assert got == [
        ("ok1", "2024-05-01 08:00:00", "commerce.purchases", 12.5, 2),
        ("ok2", "2024-05-01 10:00:00", "web.webpagedetails.pageViews", None, None),
    ]
    assert result.columns["timestamp"] == "TIMESTAMP"


def test_parquet_profiles_are_typed_and_checked(tmp_path):
    layout = StoreLayout(tmp_path / "sb")
    table = pa.table(
        {
            "_id": ["a", "b", "c"],
            "identityMap": [
                [("Email", [{"id": "a@x.com", "primary": True}])],
                [("Email", [{"id": "b@x.com", "primary": True}])],
                None,
            ],
            "person": [
                {"birthDate": "1980-02-03", "name": {"firstName": "A"}},
                {"birthDate": "03/02/1980", "name": {"firstName": "B"}},
                {"birthDate": None, "name": {"firstName": "C"}},
            ],
        },
        schema=pa.schema(
            [
                ("_id", pa.string()),
                (
                    "identityMap",
                    pa.map_(pa.string(), pa.list_(pa.struct([("id", pa.string()), ("primary", pa.bool_())]))),
                ),
                (
                    "person",
                    pa.struct(
                        [("birthDate", pa.string()), ("name", pa.struct([("firstName", pa.string())]))]
                    ),
                ),
            ]
        ),
    )
    pq.write_table(table, tmp_path / "p.parquet")
    ref, result = ingest(layout, "p", PROFILE_CLASS, tmp_path / "p.parquet")
    assert (result.rows, result.rejected) == (1, 2)
    assert {r["line"]: r["reasons"] for r in _rejects(layout, ref)} == {
        2: ["person.birthDate: expected date (YYYY-MM-DD)"],
        3: ["identityMap: missing or without any identity"],
    }
    row = duckdb.sql(
        f"SELECT person.birthDate, identityMap FROM read_parquet('{layout.batch_dir('p', ref.batch_id)}/*.parquet')"
    ).fetchall()[0]
    assert str(row[0]) == "1980-02-03"
    assert row[1] == [{"key": "Email", "value": [{"id": "a@x.com", "primary": True}]}]
    assert result.columns["person"]["birthDate"] == "DATE"


def test_later_batches_evolve_the_dataset_schema_and_keep_its_types(tmp_path):
    from segmentation_pipelines.profiles.ingest import ingest_files

    layout = StoreLayout(tmp_path / "sb")
    first = write_jsonl(
        tmp_path / "a.jsonl",
        [{"identityMap": ident(Email="a"), "person": {"name": {"firstName": "A"}}, "loyalty": {"points": 5}}],
    )
    ref, r1 = ingest(layout, "d", PROFILE_CLASS, first)
    # A Parquet batch with a new nested field and a string where the dataset has an integer.
    table = pa.table(
        {
            "identityMap": [
                [("Email", [{"id": "b", "primary": True}])],
                [("Email", [{"id": "c", "primary": True}])],
            ],
            "person": [{"gender": "f"}, {"gender": "m"}],
            "loyalty": [{"points": "12"}, {"points": "lots"}],
        },
        schema=pa.schema(
            [
                (
                    "identityMap",
                    pa.map_(pa.string(), pa.list_(pa.struct([("id", pa.string()), ("primary", pa.bool_())]))),
                ),
                ("person", pa.struct([("gender", pa.string())])),
                ("loyalty", pa.struct([("points", pa.string())])),
            ]
        ),
    )
    pq.write_table(table, tmp_path / "b.parquet")
    r2 = ingest_files([tmp_path / "b.parquet"], PROFILE_CLASS, tmp_path / "batch2", r1.columns)
    assert (r2.rows, r2.rejected) == (1, 1)
    assert r2.columns["loyalty"] == {"points": "BIGINT"}
    assert r2.columns["person"] == {"name": {"firstName": "VARCHAR"}, "gender": "VARCHAR"}
    reasons = [
        json.loads(x)["reasons"] for x in (tmp_path / "batch2" / "rejects.jsonl").read_text().splitlines()
    ]
    assert reasons == [["loyalty.points: expected integer"]]
    got = duckdb.sql(
        f"SELECT loyalty.points, person.gender FROM read_parquet('{tmp_path}/batch2/*.parquet')"
    ).fetchall()
    assert got == [(12, "f")]
