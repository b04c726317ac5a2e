"""Schema migrations (Alembic). ``upgrade(engine)`` brings a database to the newest version.

PLACEHOLDER until the Alembic environment lands: creates missing tables.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine


def upgrade(engine: Engine) -> None:
    from segmentation_pipelines.catalog.models import Base

    Base.metadata.create_all(engine)
