"""Finding 5: names were not unique on PostgreSQL (8 concurrent case variants all succeeded in 1 of 3 trials): the
pre-insert check compared lower(name), the unique index the name as written. The database now enforces
(org, sandbox, lower(name)) on SQLite and PostgreSQL (migration 0005)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, text

from segmentation_pipelines.errors import SegmentationError
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.services import Services
from segmentation_pipelines.settings import Settings

VARIANTS = ["VIP", "vip", "Vip", "vIP", "viP", "VIp", "vIp", "ViP"]


def _create_together(settings: Settings, names: list[str]) -> list[object]:
    barrier = threading.Barrier(len(names))
    results: list[object] = [None] * len(names)

    def create(i: int, name: str) -> None:
        services = Services(ServiceContext.create(settings))
        body = {"name": name, "expression": {"type": "PQL", "format": "pql/text", "value": "true"}}
        barrier.wait()
        try:
            results[i] = services.segment_definitions.create(body)["id"]
        except SegmentationError as err:
            results[i] = err.status

    threads = [threading.Thread(target=create, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def _check(settings: Settings, trials: int = 3) -> None:
    for trial in range(trials):
        names = [f"{v}-{trial}" for v in VARIANTS]
        results = _create_together(settings, names)
        created = [r for r in results if isinstance(r, str)]
        assert len(created) == 1, results
        assert sorted(r for r in results if not isinstance(r, str)) == [422] * (len(names) - 1), (
            results
        )  # the "name taken" answer
    engine = create_engine(settings.resolved_catalog_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT lower(name), count(*) FROM segment_definitions GROUP BY lower(name)")
        ).all()
    engine.dispose()
    assert rows and all(n == 1 for _, n in rows), rows


def test_case_variants_at_once_sqlite(settings):
    _check(settings)


@pytest.mark.postgres
def test_case_variants_at_once_postgres(settings, pg_url):
    _check(settings.model_copy(update={"catalog_url": pg_url}))


def test_the_index_itself_refuses_a_case_variant(settings):
    """Past the service's check (a second writer racing it), the database says no."""
    Services(ServiceContext.create(settings)).segment_definitions.create(
        {"name": "Gold", "expression": {"type": "PQL", "format": "pql/text", "value": "true"}}
    )
    engine = create_engine(settings.resolved_catalog_url)
    with pytest.raises(Exception, match="(?i)unique"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO segment_definitions (id, org_id, sandbox, created_ms, updated_ms, body, name, "
                "batch_enabled) SELECT 'x', org_id, sandbox, 0, 0, body, 'GOLD', batch_enabled FROM segment_definitions"
            )
        )
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_renames_existing_case_variants(request, tmp_path, backend):
    from segmentation_pipelines.catalog.migrations import downgrade, upgrade

    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'c.db'}"
    engine = create_engine(url)
    upgrade(engine, "0002")
    insert = text(
        "INSERT INTO segment_definitions (id, org_id, sandbox, created_ms, updated_ms, body, name, batch_enabled) "
        "VALUES (:id, 'o', 'prod', :t, :t, :body, :name, true)"
    )
    with engine.begin() as conn:
        for i, name in enumerate(["Gold", "GOLD", "gold"]):
            conn.execute(insert, {"id": f"d{i}", "t": i, "body": f'{{"name": "{name}"}}', "name": name})
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, name, body FROM segment_definitions ORDER BY id")).all()
    import json

    assert [(r.id, r.name) for r in rows] == [("d0", "Gold"), ("d1", "GOLD (2)"), ("d2", "gold (3)")]
    assert [json.loads(r.body)["name"] if isinstance(r.body, str) else r.body["name"] for r in rows][
        1
    ] == "GOLD (2)"
    downgrade(engine, "0002")
    engine.dispose()
