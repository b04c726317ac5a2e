"""Request dependencies: bearer-token auth, and the AEP headers turned into a :class:`ServiceContext`.

Route modules use the annotated aliases::

    @router.get("/audiences/{audience_id}")
    def get_audience(audience_id: str, services: ServicesDep) -> dict:
        return services.audiences.get(audience_id)
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from segmentation_pipelines.errors import ApiError, BadRequest
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.services import Services
from segmentation_pipelines.settings import Settings

SANDBOX_NAME_RE = re.compile(r"^[a-z0-9-]{1,64}$")
ORG_ID_RE = re.compile(r"^[A-Za-z0-9@._\-]{1,255}$")
UNAUTHORIZED_CODE = "UPAPI-113401-401"

_bearer = HTTPBearer(auto_error=False, description="One of the tokens in SEGMENTATION_API_TOKENS")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries ``Authorization: Bearer <token>`` with a configured token (if any are)."""
    tokens = get_settings(request).tokens
    if not tokens:
        return
    if credentials is None:
        raise ApiError(401, "Missing 'Authorization: Bearer <token>' header.", code=UNAUTHORIZED_CODE)
    given = credentials.credentials.encode()
    if not any(secrets.compare_digest(given, token.encode()) for token in tokens):
        raise ApiError(401, "The bearer token is not valid.", code=UNAUTHORIZED_CODE)


def service_context(
    request: Request,
    x_sandbox_name: Annotated[
        str | None, Header(description="Sandbox (lower case letters, digits, '-'); default 'prod'")
    ] = None,
    x_gw_ims_org_id: Annotated[
        str | None, Header(description="IMS organization; default from settings")
    ] = None,
    x_api_key: Annotated[str | None, Header(description="Client id (accepted, not checked)")] = None,
) -> ServiceContext:
    """The (org, sandbox) scope of this request; every resource lives in exactly one."""
    sandbox = "prod" if x_sandbox_name is None else x_sandbox_name
    if not SANDBOX_NAME_RE.match(sandbox):
        raise BadRequest(
            f"header x-sandbox-name: '{sandbox[:80]}' is not a sandbox name "
            "(1-64 characters: lower-case letters, digits, '-')."
        )
    if x_gw_ims_org_id is not None and not ORG_ID_RE.match(x_gw_ims_org_id):
        raise BadRequest(f"header x-gw-ims-org-id: '{x_gw_ims_org_id[:80]}' is not an IMS org id.")
    settings = get_settings(request)
    return ServiceContext.create(
        settings,
        org_id=x_gw_ims_org_id,
        sandbox=sandbox,
        request_id=getattr(request.state, "request_id", None),
        confined=True,
        extras={"api_key": x_api_key} if x_api_key else {},
    )


def services(ctx: Annotated[ServiceContext, Depends(service_context)]) -> Services:
    return Services(ctx)


ServiceCtx = Annotated[ServiceContext, Depends(service_context)]
ServicesDep = Annotated[Services, Depends(services)]


def query_of(request: Request) -> dict[str, Any]:
    """The query parameters, ``property`` kept as a list (it may repeat)."""
    query: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key == "property":
            query.setdefault(key, []).append(value)
        else:
            query[key] = value
    return query
