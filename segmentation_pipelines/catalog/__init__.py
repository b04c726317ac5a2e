"""The catalog: SQLAlchemy tables for every API resource, scoped by IMS org and sandbox, and their repositories.

Every row carries ``org_id`` and ``sandbox`` and the AEP-shaped resource document in ``body`` (JSON), with the
columns a query filters or sorts on (name, status, times) lifted out. SQLite under the home folder by default,
PostgreSQL in production; Alembic migrations upgrade an existing database. Many processes (webserver, daemon, run
workers, REST API) write it at once, so writes are short transactions.
"""

from segmentation_pipelines.catalog.db import Catalog, now_ms
from segmentation_pipelines.catalog.repository import Repository

__all__ = ["Catalog", "Repository", "now_ms"]
