"""The estimate's 95% interval holds: over 200 random definitions on a seeded store larger than its sample, the
true size (a full evaluation) lies inside the reported interval for at least 93% of them (distinct definitions:
identical ones would count one sampling error several times). Same sample code, same
engine and same estimator as ``POST /preview``, on the seeded synthetic store of ``synthetic.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from segmentation_pipelines import engine, pql
from segmentation_pipelines.engine import sampling
from segmentation_pipelines.pql.schema import Schema

from . import synthetic

PROFILES, EVENTS, SAMPLE = 20_000, 200_000, 2_000


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("coverage")
    return synthetic.write_store(folder, PROFILES, EVENTS)


def test_estimate_is_exact_once_everything_is_read():
    assert sampling.estimate(7, 10, 10) == sampling.Estimate(7, 0.0, 7, 7, 7, 10, 10)
    e = sampling.estimate(0, 1000, 100_000)
    assert e.size == 0 and e.low == 0 and e.high > 0  # no match read: still an honest upper bound
    assert sampling.sample_size(999_999) == 999_999
    assert sampling.sample_size(5_000_000) == 1_000_000
    assert sampling.sample_size(40_000_000) == 2_000_000


def test_interval_covers_the_true_size_for_93_percent_of_200_definitions(store, tmp_path):
    schema = Schema.from_dicts(profile=synthetic.PROFILE_SCHEMA, event=synthetic.EVENT_SCHEMA)
    definitions = [engine.EngineDefinition(i, pql.parse(t)) for i, t in synthetic.definitions(200, seed=11)]
    truth = engine.evaluate(
        engine.EvaluationRequest(
            definitions,
            store / "profiles.parquet",
            store / "events",
            synthetic.NOW,
            tmp_path / "all.parquet",
            schema,
        )
    ).counts
    sample = sampling.build_sample(
        store / "profiles.parquet", store / "events", tmp_path / "sample", size=SAMPLE, chunks=4, seed=5
    )
    assert sample.size == SAMPLE and sum(c.profiles for c in sample.chunks) == SAMPLE
    seen: list[dict[str, int]] = []
    results = sampling.evaluate_chunks(
        sample,
        definitions,
        schema,
        synthetic.NOW,
        tmp_path / "work",
        on_chunk=lambda r: seen.append(r.counts),
    )
    assert len(results) == len(seen) == 4  # progressive: one result per chunk, as it is read
    matched = {d.id: sum(r.counts[d.id] for r in results) for d in definitions}
    inside = 0
    for d in definitions:
        e = sampling.estimate(matched[d.id], SAMPLE, PROFILES)
        inside += e.low <= truth[d.id] <= e.high
    coverage = inside / len(definitions)
    print(f"\ncoverage of the 95% interval over {len(definitions)} definitions: {coverage:.1%}")
    assert coverage >= 0.93
    # Not trivially wide: the median interval is a small part of the store.
    widths = sorted(
        sampling.estimate(matched[d.id], SAMPLE, PROFILES).high
        - sampling.estimate(matched[d.id], SAMPLE, PROFILES).low
        for d in definitions
    )
    assert widths[len(widths) // 2] < PROFILES * 0.1
