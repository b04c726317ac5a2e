"""``/search/namespaces``, ``/search/entities``, ``/search/taxonomy``: segment search (Lucene query ``s``).

Every call needs the header ``x-ups-search-version: 1.0`` and ``schema.name=_xdm.context.segmentdefinition``
(``schemaClass`` is accepted on ``/search/entities``, as Adobe's OpenAPI names it). Thin over
:class:`segmentation_pipelines.service.search.SearchService`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from segmentation_pipelines.api.deps import ServicesDep, query_of
from segmentation_pipelines.service.search import check_version

PREFIX = "/data/core/ups"


def search_version(
    x_ups_search_version: Annotated[str | None, Header(description="The Search API version: 1.0")] = None,
) -> None:
    check_version(x_ups_search_version)


router = APIRouter(prefix=PREFIX + "/search", tags=["search"], dependencies=[Depends(search_version)])

SchemaName = Annotated[
    str | None, Query(alias="schema.name", description="_xdm.context.segmentdefinition (required)")
]
S = Annotated[str | None, Query(description="Lucene query, e.g. segmentName:car* AND NOT segmentName:red")]


@router.get("/namespaces", summary="Count the search results per namespace")
def namespaces(request: Request, services: ServicesDep, schema_name: SchemaName = None, s: S = None) -> dict:
    return services.search.namespaces(**query_of(request))


@router.get("/entities", summary="Search the entities (folders first) of a namespace, paged")
def entities(
    request: Request,
    services: ServicesDep,
    schema_name: SchemaName = None,
    namespace: Annotated[str | None, Query(description="e.g. AEPSegments (required)")] = None,
    s: S = None,
    entity_id: Annotated[
        str | None, Query(alias="entityId", description="Only what this folder holds")
    ] = None,
    limit: Annotated[str | None, Query(description="Page size, at most 50 (default 50)")] = None,
    page: Annotated[str | None, Query(description="Zero-based page")] = None,
) -> dict:
    return services.search.entities(**query_of(request))


@router.get("/taxonomy", summary="The folders from the root to an entity's parent folder")
def taxonomy(
    request: Request,
    services: ServicesDep,
    schema_name: SchemaName = None,
    namespace: Annotated[str | None, Query(description="e.g. AEPSegments (required)")] = None,
    entity_id: Annotated[str | None, Query(alias="entityId", description="A folder or audience id")] = None,
) -> dict:
    return services.search.taxonomy(**query_of(request))
