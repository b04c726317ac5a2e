"""Deterministic, vectorized demo data: a CRM dataset and a loyalty dataset of profile fragments with overlapping
identities, and experience events with realistic shapes, written as XDM-shaped Parquet in chunks.

* People ``0..N-1``. CRM holds ~85% of them (Email primary, CRMID, and for ~70% the ECID of their browser);
  loyalty holds ~35% (Email primary, loyaltyId), so the two overlap through the email. Some loyalty records spell
  the first name differently or carry a newer city, which the merge policies resolve.
* Anonymous visitors (``N..N+N/5``) only ever appear in events with their ECID.
* An in-store kiosk browser on which 60 customers logged in links them into one identity graph of more than 50
  identities: the guardrail excludes it from segmentation, and the build reports it.
* Events over the 13 months before ``as_of``: page views, product views, email opens; product views lead to
  add-to-cart, checkout and purchase minutes later with decreasing probability, email opens to clicks. Activity is
  skewed (log-normal weights: most people do little, a few do a lot); a quarter of events are logged in (carry the
  Email too).

Everything is numpy/pyarrow arrays, one chunk at a time (memory bounded by the chunk size); the same seed, sizes
and ``as_of`` give the same files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PROFILE_CHUNK = 250_000
EVENT_CHUNK = 1_000_000
WINDOW_DAYS = 395  # 13 months

FIRST_NAMES = np.array(
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard Susan Joseph "
    "Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Sandra Paul Ashley Steven "
    "Emily Andrew Donna Kenneth Michelle Joshua Carol Kevin Amanda Brian Melissa Emma Lukas Sophie Hugo Chloe "
    "Mateo Yuki Aarav Priya Lucas Ana".split()
)
NICKNAMES = {"James": "Jim", "William": "Bill", "Robert": "Bob", "Elizabeth": "Liz", "Michael": "Mike"}
LAST_NAMES = np.array(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis "
    "Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Muller Schmidt Dubois Martin "
    "Tanaka Sato Sharma Patel Silva Santos".split()
)
# country code, country, weight, currency, [(state, weight, [cities])]
COUNTRIES = [
    (
        "US",
        "United States",
        0.45,
        "USD",
        [
            ("CA", 0.25, ["Los Angeles", "San Francisco", "San Diego"]),
            ("TX", 0.17, ["Houston", "Austin", "Dallas"]),
            ("NY", 0.14, ["New York", "Buffalo"]),
            ("FL", 0.13, ["Miami", "Orlando", "Tampa"]),
            ("IL", 0.09, ["Chicago"]),
            ("WA", 0.08, ["Seattle", "Spokane"]),
            ("MA", 0.07, ["Boston"]),
            ("CO", 0.07, ["Denver", "Boulder"]),
        ],
    ),
    (
        "GB",
        "United Kingdom",
        0.10,
        "GBP",
        [("ENG", 0.85, ["London", "Manchester", "Leeds"]), ("SCT", 0.15, ["Edinburgh", "Glasgow"])],
    ),
    (
        "DE",
        "Germany",
        0.10,
        "EUR",
        [("BE", 0.3, ["Berlin"]), ("BY", 0.4, ["Munich", "Nuremberg"]), ("HH", 0.3, ["Hamburg"])],
    ),
    ("FR", "France", 0.08, "EUR", [("IDF", 0.6, ["Paris"]), ("ARA", 0.4, ["Lyon", "Grenoble"])]),
    (
        "CA",
        "Canada",
        0.07,
        "CAD",
        [("ON", 0.5, ["Toronto", "Ottawa"]), ("QC", 0.3, ["Montreal"]), ("BC", 0.2, ["Vancouver"])],
    ),
    ("AU", "Australia", 0.05, "AUD", [("NSW", 0.6, ["Sydney"]), ("VIC", 0.4, ["Melbourne"])]),
    ("JP", "Japan", 0.05, "JPY", [("13", 0.7, ["Tokyo"]), ("27", 0.3, ["Osaka"])]),
    ("BR", "Brazil", 0.05, "BRL", [("SP", 0.7, ["Sao Paulo"]), ("RJ", 0.3, ["Rio de Janeiro"])]),
    ("IN", "India", 0.05, "INR", [("MH", 0.5, ["Mumbai", "Pune"]), ("KA", 0.5, ["Bengaluru"])]),
]
# (state_code, country_code, city) locations flattened with weights
_LOC = [
    (cc, cname, cur, st, city, cw * sw / len(cities))
    for cc, cname, cw, cur, states in COUNTRIES
    for st, sw, cities in states
    for city in cities
]
LOC_CC = np.array([x[0] for x in _LOC])
LOC_COUNTRY = np.array([x[1] for x in _LOC])
LOC_CURRENCY = np.array([x[2] for x in _LOC])
LOC_STATE = np.array([x[3] for x in _LOC])
LOC_CITY = np.array([x[4] for x in _LOC])
LOC_P = np.array([x[5] for x in _LOC]) / sum(x[5] for x in _LOC)

N_SKUS = 500
CATEGORIES = np.array(["shoes", "shirts", "jackets", "bags", "watches", "hats", "socks", "jeans"])
DOMAINS = np.array(["example.com", "mail.example.org", "inbox.example.net", "post.example.de"])
TIERS = np.array(["bronze", "silver", "gold", "platinum"])

IDENTITY_ITEM = pa.struct([("id", pa.string()), ("primary", pa.bool_())])
IDENTITY_ENTRY = pa.struct([("key", pa.string()), ("value", pa.list_(IDENTITY_ITEM))])


@dataclass
class DemoFiles:
    crm: list[Path]
    loyalty: list[Path]
    events: list[Path]
    profiles: int
    crm_rows: int
    loyalty_rows: int
    event_rows: int
    as_of: dt.datetime

    def as_dict(self) -> dict:
        return {
            "profiles": self.profiles,
            "crm_rows": self.crm_rows,
            "loyalty_rows": self.loyalty_rows,
            "event_rows": self.event_rows,
            "as_of": self.as_of.isoformat(),
            "files": {
                "crm": [str(p) for p in self.crm],
                "loyalty": [str(p) for p in self.loyalty],
                "events": [str(p) for p in self.events],
            },
        }


# ---------------------------------------------------------------- deterministic per-person values


def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``x`` and a salt: a per-person pseudo-random 64-bit value, independent of chunking."""
    offset = np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + offset
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _u01(x: np.ndarray, salt: int) -> np.ndarray:
    return (_mix(x, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _pick(choices: np.ndarray, idx: np.ndarray) -> pa.Array:
    """``choices[idx]`` as an Arrow string array (through a dictionary: no per-row Python strings)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(idx, dtype=np.int32)), pa.array(choices)).cast(
        pa.string()
    )


def _str(values) -> pa.Array:
    return pa.array(values).cast(pa.string())


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def person_ecid(i: np.ndarray, seed: int) -> pa.Array:
    return _str((_mix(i, seed * 31 + 7) % np.uint64(10**18)) + np.uint64(10**18))


def _first_idx(i: np.ndarray, seed: int) -> np.ndarray:
    return (_mix(i, seed + 1) % np.uint64(len(FIRST_NAMES))).astype(np.int64)


def person_email(i: np.ndarray, seed: int) -> pa.Array:
    first = _pick(np.char.lower(FIRST_NAMES), _first_idx(i, seed))
    last = _pick(np.char.lower(LAST_NAMES), _mix(i, seed + 2) % np.uint64(len(LAST_NAMES)))
    domain = _pick(DOMAINS, _mix(i, seed + 3) % np.uint64(len(DOMAINS)))
    return _join(first, ".", last, ".", _str(i), "@", domain)


def person_names(i: np.ndarray, seed: int) -> tuple[pa.Array, pa.Array]:
    return (
        _pick(FIRST_NAMES, _first_idx(i, seed)),
        _pick(LAST_NAMES, _mix(i, seed + 2) % np.uint64(len(LAST_NAMES))),
    )


def person_location(i: np.ndarray, seed: int) -> np.ndarray:
    return np.searchsorted(np.cumsum(LOC_P), _u01(i, seed + 4), side="right").clip(0, len(LOC_P) - 1)


def in_crm(i: np.ndarray, seed: int) -> np.ndarray:
    return _u01(i, seed + 10) < 0.85


def in_loyalty(i: np.ndarray, seed: int) -> np.ndarray:
    return _u01(i, seed + 11) < 0.35


def ecid_in_crm(i: np.ndarray, seed: int) -> np.ndarray:
    return _u01(i, seed + 12) < 0.70


# ---------------------------------------------------------------- arrow builders


def identity_map(keys: list[tuple[str, pa.Array, np.ndarray | None, bool]], n: int) -> pa.Array:
    """``identityMap`` of ``n`` rows: entries (namespace, ids, row mask or None = all rows, primary)."""
    present = np.stack([np.ones(n, bool) if m is None else m for _, _, m, _ in keys], axis=1)  # (n, k)
    counts = present.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    flat = present.reshape(-1)
    ns = _pick(np.array([k for k, _, _, _ in keys]), np.tile(np.arange(len(keys)), n)[flat])
    ids = pa.concat_arrays([a for _, a, _, _ in keys])  # laid out key-major; reorder to row-major
    k = len(keys)
    order = (np.arange(n)[:, None] + np.arange(k)[None, :] * n).reshape(-1)[flat]
    ids = ids.take(pa.array(order))
    primary = np.tile(np.array([p for _, _, _, p in keys]), n)[flat]
    items = pa.StructArray.from_arrays([ids, pa.array(primary)], fields=list(IDENTITY_ITEM))
    one = pa.ListArray.from_arrays(pa.array(np.arange(len(ids) + 1, dtype=np.int32)), items)
    entries = pa.StructArray.from_arrays([ns, one], fields=list(IDENTITY_ENTRY))
    return pa.ListArray.from_arrays(pa.array(offsets), entries)


def _struct(fields: dict, mask: np.ndarray | None = None) -> pa.StructArray:
    arrays = [v if isinstance(v, pa.Array) else pa.array(v) for v in fields.values()]
    return pa.StructArray.from_arrays(
        arrays, names=list(fields), mask=None if mask is None else pa.array(mask)
    )


def _timestamps(micros: np.ndarray) -> pa.Array:
    return pa.array(micros.astype("datetime64[us]"), pa.timestamp("us"))


def default_as_of() -> dt.datetime:
    """Today at 00:00 UTC (naive)."""
    return dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time())


def _micros(t: dt.datetime) -> int:
    return int((t - dt.datetime(1970, 1, 1)).total_seconds() * 1_000_000)


# ---------------------------------------------------------------- profiles


def _crm_table(i: np.ndarray, seed: int, as_of_us: int) -> pa.Table:
    n = len(i)
    rng = np.random.default_rng([seed, 1, int(i[0]) if n else 0])
    first, last = person_names(i, seed)
    loc = person_location(i, seed)
    age_days = (np.clip(rng.normal(40, 14, n), 18, 90) * 365.25).astype(np.int64)
    as_of_day = as_of_us // 86_400_000_000
    birth = pa.array((as_of_day - age_days).astype("datetime64[D]"), pa.date32())
    gender = _pick(np.array(["female", "male"]), rng.random(n) < 0.5)
    postal = _str(rng.integers(10000, 99999, n))
    email = person_email(i, seed)
    phone = _join("+1555", _str(rng.integers(1_000_000, 9_999_999, n)))
    updated = as_of_us - (rng.random(n) * WINDOW_DAYS * 86_400e6).astype(np.int64)
    crm_id = _join("CRM", _str(i))
    has_ecid = ecid_in_crm(i, seed)
    idmap = identity_map(
        [
            ("Email", email, None, True),
            ("CRMID", crm_id, None, False),
            ("ECID", person_ecid(i, seed), has_ecid, False),
        ],
        n,
    )
    return pa.table(
        {
            "_id": _join("crm-", _str(i)),
            "identityMap": idmap,
            "person": _struct(
                {
                    "name": _struct({"firstName": first, "lastName": last}),
                    "birthDate": birth,
                    "gender": gender,
                }
            ),
            "homeAddress": _struct(
                {
                    "country": _pick(LOC_COUNTRY, loc),
                    "countryCode": _pick(LOC_CC, loc),
                    "stateProvince": _pick(LOC_STATE, loc),
                    "city": _pick(LOC_CITY, loc),
                    "postalCode": postal,
                }
            ),
            "personalEmail": _struct({"address": email}),
            "mobilePhone": _struct({"number": phone}),
            "extSourceSystemAudit": _struct({"lastUpdatedDate": _timestamps(updated)}),
        }
    )


def _loyalty_table(i: np.ndarray, seed: int, as_of_us: int) -> pa.Table:
    n = len(i)
    rng = np.random.default_rng([seed, 2, int(i[0]) if n else 0])
    # Half of the loyalty records use the nickname: a conflict the merge policies resolve.
    nick_names = np.array([NICKNAMES.get(f, f) for f in FIRST_NAMES])
    fi = _first_idx(i, seed)
    first = _pick(
        np.concatenate([FIRST_NAMES, nick_names]), np.where(rng.random(n) < 0.5, fi + len(FIRST_NAMES), fi)
    )
    points = np.round(rng.lognormal(6.5, 1.2, n)).astype(np.int64)
    tier = _pick(TIERS, np.searchsorted([1000, 5000, 20000], points, side="right"))
    moved = rng.random(n) < 0.05
    city = _pick(LOC_CITY, np.where(moved, rng.integers(0, len(LOC_CITY), n), person_location(i, seed)))
    joined = pa.array(
        ((as_of_us // 86_400_000_000) - rng.integers(30, 3650, n)).astype("datetime64[D]"), pa.date32()
    )
    updated = as_of_us - (rng.random(n) * WINDOW_DAYS * 86_400e6).astype(np.int64)
    idmap = identity_map(
        [("Email", person_email(i, seed), None, True), ("loyaltyId", _join("L", _str(i)), None, False)], n
    )
    return pa.table(
        {
            "_id": _join("loy-", _str(i)),
            "identityMap": idmap,
            "person": _struct({"name": _struct({"firstName": first})}),
            "homeAddress": _struct({"city": city}),
            "loyalty": _struct({"tier": tier, "points": points, "joinDate": joined}),
            "extSourceSystemAudit": _struct({"lastUpdatedDate": _timestamps(updated)}),
        }
    )


# ---------------------------------------------------------------- events

BASE_TYPES = np.array(
    ["web.webpagedetails.pageViews", "commerce.productViews", "directMarketing.emailOpened"]
)
BASE_P = np.array([0.62, 0.25, 0.13])
P_ADD, P_CHECKOUT, P_PURCHASE, P_CLICK = 0.25, 0.45, 0.70, 0.30
DERIVED_PER_BASE = (
    BASE_P[1] * (P_ADD + P_ADD * P_CHECKOUT + P_ADD * P_CHECKOUT * P_PURCHASE) + BASE_P[2] * P_CLICK
)
PAGES = np.array(["home", "search", "category", "sale", "about", "stores", "help", "account"])


def _sku_tables(seed: int):
    rng = np.random.default_rng([seed, 99])
    cat = CATEGORIES[rng.integers(0, len(CATEGORIES), N_SKUS)]
    price = np.round(rng.lognormal(3.6, 0.7, N_SKUS), 2)
    sku = np.array([f"SKU-{k:05d}" for k in range(N_SKUS)])
    names = np.array([f"{c.title()} {k:03d}" for k, c in enumerate(cat)])
    popularity = 1.0 / np.arange(1, N_SKUS + 1) ** 1.1
    return sku, names, price, popularity / popularity.sum()


def _event_table(
    chunk: int, base_n: int, person_p: np.ndarray, n_people: int, seed: int, as_of_us: int, skus
) -> pa.Table:
    rng = np.random.default_rng([seed, 3, chunk])
    sku_ids, sku_names, sku_price, sku_p = skus
    person = rng.choice(len(person_p), size=base_n, p=person_p).astype(np.int64)
    kind = rng.choice(3, size=base_n, p=BASE_P)
    ts = as_of_us - (rng.random(base_n) ** 0.85 * WINDOW_DAYS * 86_400e6).astype(np.int64) - 1
    sku = np.where(kind == 1, rng.choice(N_SKUS, size=base_n, p=sku_p), -1)

    # Funnels: views -> adds -> checkouts -> purchases, opens -> clicks, each a few minutes after the previous step.
    rows_person, rows_kind, rows_ts, rows_sku = [person], [kind], [ts], [sku]
    step = kind == 1
    prev_ts = ts
    for code, p in ((3, P_ADD), (4, P_CHECKOUT), (5, P_PURCHASE)):
        step = step & (rng.random(base_n) < p)
        prev_ts = prev_ts + rng.integers(30, 1800, base_n) * 1_000_000
        rows_person.append(person[step])
        rows_kind.append(np.full(step.sum(), code))  # noqa: E702
        rows_ts.append(prev_ts[step])
        rows_sku.append(sku[step])  # noqa: E702
    click = (kind == 2) & (rng.random(base_n) < P_CLICK)
    rows_person.append(person[click])
    rows_kind.append(np.full(click.sum(), 6))  # noqa: E702
    rows_ts.append(ts[click] + rng.integers(5, 3600, base_n)[click] * 1_000_000)
    rows_sku.append(sku[click])  # noqa: E702
    person = np.concatenate(rows_person)
    kind = np.concatenate(rows_kind)
    ts = np.minimum(np.concatenate(rows_ts), as_of_us - 1)
    sku = np.concatenate(rows_sku)
    n = len(person)
    types = _pick(
        np.concatenate(
            [
                BASE_TYPES,
                [
                    "commerce.productListAdds",
                    "commerce.checkouts",
                    "commerce.purchases",
                    "directMarketing.emailClicked",
                ],
            ]
        ),
        kind,
    )

    known = person < n_people
    logged_in = known & (rng.random(n) < 0.25)
    email_ids = person_email(np.where(known, person, 0), seed)
    idmap = identity_map(
        [("ECID", person_ecid(person, seed), None, True), ("Email", email_ids, logged_in, False)], n
    )

    has_sku = sku >= 0
    skus_safe = np.where(has_sku, sku, 0)
    qty = np.where(kind == 5, rng.integers(1, 4, n), 1)
    line_total = np.round(sku_price[skus_safe] * qty, 2)
    offsets = np.concatenate([[0], np.cumsum(has_sku)]).astype(np.int32)
    items = _struct(
        {
            "SKU": _pick(sku_ids, sku[has_sku]),
            "name": _pick(sku_names, sku[has_sku]),
            "quantity": qty[has_sku].astype(np.int64),
            "priceTotal": line_total[has_sku],
        }
    )
    product_list = pa.ListArray.from_arrays(pa.array(offsets), items, mask=pa.array(~has_sku))

    is_purchase = kind == 5
    currency = _pick(LOC_CURRENCY, person_location(person, seed))
    one = np.ones(n)
    commerce = _struct(
        {
            "order": _struct(
                {
                    "priceTotal": line_total,
                    "currencyCode": currency,
                    "purchaseID": _join(f"PO-{chunk}-", _str(np.arange(n))),
                },
                mask=~is_purchase,
            ),
            "purchases": _struct({"value": one}, mask=kind != 5),
            "checkouts": _struct({"value": one}, mask=kind != 4),
            "productListAdds": _struct({"value": one}, mask=kind != 3),
            "productViews": _struct({"value": one}, mask=kind != 1),
        },
        mask=~np.isin(kind, [1, 3, 4, 5]),
    )
    pages = np.append(PAGES, "product")
    page = _pick(pages, np.where(kind == 0, rng.integers(0, len(PAGES), n), len(PAGES)))
    urls = _pick(
        np.array([f"https://shop.example.com/{p}" for p in pages]),
        np.where(kind == 0, rng.integers(0, len(PAGES), n), len(PAGES)),
    )
    web = _struct({"webPageDetails": _struct({"name": page, "URL": urls})}, mask=~np.isin(kind, [0, 1]))
    return pa.table(
        {
            "_id": _join(f"ev-{chunk}-", _str(np.arange(n))),
            "timestamp": _timestamps(ts),
            "eventType": types,
            "identityMap": idmap,
            "web": web,
            "commerce": commerce,
            "productListItems": product_list,
        }
    )


# ---------------------------------------------------------------- entry point


def generate_demo(
    out_dir: str | Path,
    profiles: int = 20_000,
    events: int = 400_000,
    seed: int = 42,
    as_of: dt.datetime | None = None,
) -> DemoFiles:
    """Write ``crm/``, ``loyalty/`` and ``events/`` Parquet files under ``out_dir``.

    ``as_of`` (naive = UTC) ends the 13-month window of events; default: today at 00:00 UTC, so that relative
    windows (``today``, last 30 days) of a segment job run now find data. The same arguments give the same files.
    """
    as_of = default_as_of() if as_of is None else as_of
    out = Path(out_dir)
    for sub in ("crm", "loyalty", "events"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for old in (out / sub).glob("part-*.parquet"):
            old.unlink()
    as_of_us = _micros(
        as_of.replace(tzinfo=None) if as_of.tzinfo is None else as_of.astimezone(dt.UTC).replace(tzinfo=None)
    )
    files = DemoFiles([], [], [], profiles, 0, 0, 0, as_of)
    for c, start in enumerate(range(0, profiles, PROFILE_CHUNK)):
        i = np.arange(start, min(start + PROFILE_CHUNK, profiles), dtype=np.int64)
        crm = _crm_table(i[in_crm(i, seed)], seed, as_of_us)
        loy = _loyalty_table(i[in_loyalty(i, seed)], seed, as_of_us)
        for table, kind, acc in ((crm, "crm", files.crm), (loy, "loyalty", files.loyalty)):
            path = out / kind / f"part-{c:05d}.parquet"
            pq.write_table(table, path, compression="zstd")
            acc.append(path)
        files.crm_rows += crm.num_rows
        files.loyalty_rows += loy.num_rows

    anonymous = max(profiles // 5, 1)
    weights = np.random.default_rng([seed, 5]).lognormal(0.0, 1.4, profiles + anonymous)
    weights[profiles:] *= 0.3  # anonymous visitors browse a little
    person_p = weights / weights.sum()
    skus = _sku_tables(seed)
    base_total = int(round(events / (1 + DERIVED_PER_BASE)))
    base_chunk = int(EVENT_CHUNK / (1 + DERIVED_PER_BASE))
    for c, start in enumerate(range(0, base_total, base_chunk)):
        table = _event_table(c, min(base_chunk, base_total - start), person_p, profiles, seed, as_of_us, skus)
        path = out / "events" / f"part-{c:05d}.parquet"
        pq.write_table(table, path, compression="zstd", row_group_size=256_000)
        files.events.append(path)
        files.event_rows += table.num_rows
    if profiles >= 1000:
        path = out / "events" / "part-kiosk.parquet"
        pq.write_table(_kiosk_table(profiles, seed, as_of_us), path, compression="zstd")
        files.events.append(path)
        files.event_rows += KIOSK_PEOPLE
    return files


KIOSK_PEOPLE = 60


def _kiosk_table(profiles: int, seed: int, as_of_us: int) -> pa.Table:
    """An in-store kiosk browser where 60 customers logged in: one identity graph of more than 50 identities,
    which the guardrail excludes from segmentation (and the demo reports)."""
    rng = np.random.default_rng([seed, 6])
    people = rng.choice(profiles, size=KIOSK_PEOPLE, replace=False).astype(np.int64)
    n = KIOSK_PEOPLE
    kiosk = pa.array(["kiosk-0001"] * n)
    ts = as_of_us - (rng.random(n) * 30 * 86_400e6).astype(np.int64) - 1
    return pa.table(
        {
            "_id": _join("kiosk-", _str(np.arange(n))),
            "timestamp": _timestamps(ts),
            "eventType": pa.array(["web.webpagedetails.pageViews"] * n),
            "identityMap": identity_map(
                [("ECID", kiosk, None, True), ("Email", person_email(people, seed), None, False)], n
            ),
            "web": _struct(
                {
                    "webPageDetails": _struct(
                        {"name": ["stores"] * n, "URL": ["https://shop.example.com/stores"] * n}
                    )
                }
            ),
        }
    )
