"""Every service of one request's scope, as plain attributes: ``Services(ctx).segment_jobs.get(id)``.

The REST routes (``api/deps.py``) and the in-process client (``client.py``) both reach the services through this
one object, so they behave the same. Each service is built on first use.
"""

from __future__ import annotations

from functools import cached_property

from segmentation_pipelines.service.audiences import AudiencesService
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.datasets import DatasetsService
from segmentation_pipelines.service.export_jobs import ExportJobsService
from segmentation_pipelines.service.external_audiences import ExternalAudiencesService
from segmentation_pipelines.service.folders import FoldersService
from segmentation_pipelines.service.merge_policies import MergePoliciesService
from segmentation_pipelines.service.previews import EstimatesService, PreviewsService
from segmentation_pipelines.service.profile_store import ProfileStoreService
from segmentation_pipelines.service.profiles import ProfilesService
from segmentation_pipelines.service.schedules import SchedulesService
from segmentation_pipelines.service.search import SearchService
from segmentation_pipelines.service.segment_definitions import SegmentDefinitionsService
from segmentation_pipelines.service.segment_jobs import SegmentJobsService


class Services:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    @cached_property
    def datasets(self) -> DatasetsService:
        return DatasetsService(self.ctx)

    @cached_property
    def profiles(self) -> ProfilesService:
        return ProfilesService(self.ctx)

    @cached_property
    def merge_policies(self) -> MergePoliciesService:
        return MergePoliciesService(self.ctx)

    @cached_property
    def profile_store(self) -> ProfileStoreService:
        return ProfileStoreService(self.ctx)

    @cached_property
    def segment_definitions(self) -> SegmentDefinitionsService:
        return SegmentDefinitionsService(self.ctx)

    @cached_property
    def segment_jobs(self) -> SegmentJobsService:
        return SegmentJobsService(self.ctx)

    @cached_property
    def audiences(self) -> AudiencesService:
        return AudiencesService(self.ctx)

    @cached_property
    def schedules(self) -> SchedulesService:
        return SchedulesService(self.ctx)

    @cached_property
    def export_jobs(self) -> ExportJobsService:
        return ExportJobsService(self.ctx)

    @cached_property
    def previews(self) -> PreviewsService:
        return PreviewsService(self.ctx)

    @cached_property
    def estimates(self) -> EstimatesService:
        return EstimatesService(self.ctx)

    @cached_property
    def external_audiences(self) -> ExternalAudiencesService:
        return ExternalAudiencesService(self.ctx)

    @cached_property
    def search(self) -> SearchService:
        return SearchService(self.ctx)

    @cached_property
    def folders(self) -> FoldersService:
        return FoldersService(self.ctx)
