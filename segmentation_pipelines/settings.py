"""Settings: one object read from the environment (``SEGMENTATION_*`` variables).

Everything the service keeps on disk lives under one home folder (``SEGMENTATION_HOME``), so deleting that folder
starts over. The catalog database defaults to a SQLite file inside it.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

DEFAULT_ORG = "segmentation@AdobeOrg"


class Settings(BaseSettings):
    """Runtime configuration. Field ``x`` is read from ``SEGMENTATION_X``."""

    model_config = SettingsConfigDict(env_prefix="SEGMENTATION_", extra="ignore")

    home: Path = Field(default=Path(".segmentation"), description="Folder holding all state (catalog, data)")
    catalog_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the catalog; SQLite in home if unset"
    )
    api_tokens: str | None = Field(
        default=None, description="Comma-separated bearer tokens accepted by the REST API"
    )
    dagster_url: str | None = Field(
        default=None,
        description="Dagster webserver URL (http://host:port) for code-location reloads and run submission",
    )
    engine: Literal["duckdb", "polars", "spark"] = Field(default="duckdb", description="Evaluation engine")
    spark_master: str = Field(
        default="local[*]",
        description="Spark master URL of the spark engine (local[*], spark://host:7077, k8s://https://host:443)",
    )
    default_org: str = Field(default=DEFAULT_ORG, description="IMS org used when a request names none")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, description="Largest accepted REST request body")
    max_upload_bytes: int = Field(
        default=2 * 1024 * 1024 * 1024, description="Largest file accepted by a Batch Ingestion upload (PUT)"
    )
    code_location_name: str = Field(
        default="segmentation_pipelines", description="Dagster code location name"
    )
    definitions_module: str = Field(
        default="segmentation_pipelines.definitions",
        description="Python module of the code location (what workspace.yaml names)",
    )
    landing_root: Path | None = Field(
        default=None,
        description="Folder of the landing areas (files remote callers may ingest); <home>/landing if unset",
    )
    export_pg_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the PostgreSQL database export jobs may write tables to (an extension)",
    )
    runner: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Whether the REST API process runs requests itself: 'auto' = when no Dagster daemon runs",
    )
    preview_sample_size: int | None = Field(
        default=None,
        description="Profiles in the previews' sample; unset = the platform's tiers (whole store under 1M, 1M, 5%)",
    )
    preview_sample_seed: int = Field(default=0, description="Seed of the previews' sample")

    def model_post_init(self, __context) -> None:  # noqa: D401 - pydantic hook
        # Resolve once so that every process agrees on the same absolute folder.
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())

    @cached_property
    def tokens(self) -> frozenset[str]:
        return frozenset(t.strip() for t in (self.api_tokens or "").split(",") if t.strip())

    @property
    def resolved_catalog_url(self) -> str:
        return self.catalog_url or f"sqlite:///{self.home / 'catalog.db'}"

    @property
    def data_root(self) -> Path:
        """Parquet data (datasets, merged profiles, memberships, exports)."""
        return self.home / "data"

    @property
    def landing(self) -> Path:
        """Root of the landing areas, one folder per (org, sandbox) below it."""
        return Path(self.landing_root).expanduser().resolve() if self.landing_root else self.home / "landing"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        return self.home


def get_settings(**overrides) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. ``home=...``) taking precedence."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
