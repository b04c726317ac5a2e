"""What every service call knows: settings, catalog, and the (org, sandbox) scope of the request."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segmentation_pipelines.catalog import Catalog, Repository
from segmentation_pipelines.dagster_launcher import DagsterLauncher
from segmentation_pipelines.landing import landing_dir, safe_org
from segmentation_pipelines.launcher import Launcher
from segmentation_pipelines.settings import Settings

# Attribute name on Services / SegmentationClient -> (module under service/, class name).
SERVICE_CLASSES: dict[str, tuple[str, str]] = {
    "datasets": ("datasets", "DatasetsService"),
    "profiles": ("profiles", "ProfilesService"),
    "merge_policies": ("merge_policies", "MergePoliciesService"),
    "profile_store": ("profile_store", "ProfileStoreService"),
    "segment_definitions": ("segment_definitions", "SegmentDefinitionsService"),
    "segment_jobs": ("segment_jobs", "SegmentJobsService"),
    "audiences": ("audiences", "AudiencesService"),
    "schedules": ("schedules", "SchedulesService"),
    "export_jobs": ("export_jobs", "ExportJobsService"),
    "previews": ("previews", "PreviewsService"),
    "estimates": ("previews", "EstimatesService"),
    "external_audiences": ("external_audiences", "ExternalAudiencesService"),
    "search": ("search", "SearchService"),
    "folders": ("folders", "FoldersService"),
}


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


class Services:
    """All services for one context, built on first use: ``Services(ctx).segment_jobs.get(id)``."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self._built: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in SERVICE_CLASSES:
            raise AttributeError(name)
        if name not in self._built:
            module_name, class_name = SERVICE_CLASSES[name]
            module = importlib.import_module(f"segmentation_pipelines.service.{module_name}")
            self._built[name] = getattr(module, class_name)(self.ctx)
        return self._built[name]
