"""What every service call knows: settings, catalog, and the (org, sandbox) scope of the request."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segmentation_pipelines.catalog import Catalog, Repository
from segmentation_pipelines.dagster_launcher import DagsterLauncher
from segmentation_pipelines.landing import landing_dir, safe_org
from segmentation_pipelines.launcher import Launcher
from segmentation_pipelines.settings import Settings


@dataclass
class ServiceContext:
    settings: Settings
    catalog: Catalog
    org_id: str
    sandbox: str
    request_id: str | None = None
    user: str = "segmentation-pipelines"
    extras: dict[str, Any] = field(default_factory=dict)
    launcher: Launcher | None = None
    # True for remote callers (REST): files are read only from the sandbox's landing area (landing.py).
    confined: bool = False

    def __post_init__(self) -> None:
        if self.launcher is None:
            self.launcher = DagsterLauncher(self.settings)

    @classmethod
    def create(
        cls, settings: Settings, org_id: str | None = None, sandbox: str = "prod", **kw: Any
    ) -> ServiceContext:
        settings.ensure_home()
        catalog = Catalog.for_url(settings.resolved_catalog_url)
        return cls(
            settings=settings, catalog=catalog, org_id=org_id or settings.default_org, sandbox=sandbox, **kw
        )

    def repo(self, session, model) -> Repository:
        return Repository(session, model, self.org_id, self.sandbox)

    def sandbox_doc(self) -> dict[str, Any]:
        """The contract's ``sandbox`` object."""
        return {
            "sandboxId": self.sandbox,
            "sandboxName": self.sandbox,
            "type": "production" if self.sandbox == "prod" else "development",
            "default": self.sandbox == "prod",
        }

    @property
    def sandbox_root(self) -> Path:
        """Data folder of this (org, sandbox): datasets, merged profiles, memberships, exports."""
        return self.settings.data_root / safe_org(self.org_id) / self.sandbox

    @property
    def landing_dir(self) -> Path:
        """Landing folder of this (org, sandbox): where uploads and operators put files to ingest."""
        return landing_dir(self.settings.landing, self.org_id, self.sandbox)
