"""Finding 4: one odd row failed a whole batch with a 500 carrying DuckDB's message. A NUL byte, a line of invalid
UTF-8 and a field name with a quote are now rejects (reason and line), the other rows land."""

from __future__ import annotations

import json

import pytest

from .conftest import CATALOG, person

GOOD = [json.dumps(person(f"p{i}@x.com", loyalty={"points": i})).encode() for i in range(3)]
BAD = {
    "nul": (b'{"identityMap": {"Email": [{"id": "x\x00@x.com"}]}}', "NUL byte"),
    "bare-nul": (b"\x00\x00\x00", "NUL byte"),
    "utf8": (b'{"identityMap": {"Email": [{"id": "\xff\xfe@x.com"}]}}', "not valid UTF-8"),
    "quote-key": (json.dumps({**person("q@x.com"), 'we"ird': 1}).encode(), "field name contains a quote"),
    "backslash-key": (json.dumps({**person("b@x.com"), "a\\b": {"c": 1}}).encode(), "field name"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_row_is_a_reject_and_the_rest_land(rest, case):
    line, reason = BAD[case]
    body = b"\n".join([GOOD[0], line, GOOD[1], GOOD[2]]) + b"\n"
    ds = rest.dataset()
    batch = rest.upload(ds, {"rows.jsonl": body})
    assert batch["status"] == "success", batch
    assert (batch["rowCount"], batch["rejectedRowCount"]) == (3, 1)
    rejects = rest.request("GET", f"{CATALOG}/batches/{batch['id']}/rejects").json()["rejects"]
    assert [(r["line"], r["file"]) for r in rejects] == [(2, "rows.jsonl")]
    assert reason in rejects[0]["reasons"][0]
    text = json.dumps(rejects)
    assert "duckdb" not in text.lower() and "Invalid Input Error" not in text


def test_bad_rows_mixed_with_engine_rejects_keep_line_order(rest):
    body = (
        b"\n".join([GOOD[0], b"not json", BAD["nul"][0], b'{"no": "identity"}', BAD["utf8"][0], GOOD[1]])
        + b"\n"
    )
    ds = rest.dataset()
    batch = rest.upload(ds, {"mixed.jsonl": body})
    assert (batch["rowCount"], batch["rejectedRowCount"]) == (2, 4)
    rejects = rest.request("GET", f"{CATALOG}/batches/{batch['id']}/rejects").json()["rejects"]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5]
