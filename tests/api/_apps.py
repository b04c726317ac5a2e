"""Test helpers: the real app plus a few test-only routes, and a real uvicorn server on a free port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import APIRouter, Body, FastAPI, Request
from pydantic import BaseModel, Field
from running import free_port

from segmentation_pipelines.api import create_app
from segmentation_pipelines.api.deps import ServiceCtx
from segmentation_pipelines.catalog.models import Dataset
from segmentation_pipelines.errors import BadRequest, NotFound
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.settings import Settings

TEST_PREFIX = "/data/core/ups/_test"


class Note(BaseModel):
    name: str = Field(min_length=1)
    size: int = Field(ge=0)


class ItemsService:
    """A minimal service following the service conventions (AEP dicts in and out, ApiErrors), stored in the
    catalog's datasets table, so the client tests can run both transports over the same code."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def create(self, body: dict) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            raise BadRequest("body field 'name': a non-empty string is required.")
        with self.ctx.catalog.session() as session:
            row = self.ctx.repo(session, Dataset).add(name=body["name"], xdm_class="item", body=body)
            return {"id": row.id, "sandbox": self.ctx.sandbox_doc(), "imsOrgId": self.ctx.org_id, **row.body}

    def get(self, item_id: str) -> dict:
        with self.ctx.catalog.session() as session:
            row = self.ctx.repo(session, Dataset).get(item_id)
            if row is None or row.xdm_class != "item":
                raise NotFound("Item", item_id)
            return {"id": row.id, "sandbox": self.ctx.sandbox_doc(), "imsOrgId": self.ctx.org_id, **row.body}

    def list(self, **query: str) -> dict:
        with self.ctx.catalog.session() as session:
            rows = self.ctx.repo(session, Dataset).find(Dataset.xdm_class == "item")
            return {"children": [{"id": r.id, **r.body} for r in rows], "query": query}

    def delete(self, item_id: str) -> None:
        with self.ctx.catalog.session() as session:
            repo = self.ctx.repo(session, Dataset)
            row = repo.get(item_id)
            if row is None or row.xdm_class != "item":
                raise NotFound("Item", item_id)
            repo.delete(row)


def test_router(with_crash: bool = True) -> APIRouter:
    """Routes exercising the app's plumbing: validation, crashes, sandbox-scoped storage, argument echo."""
    router = APIRouter()

    @router.post("/notes")
    def create_note(note: Note, ctx: ServiceCtx) -> dict:
        with ctx.catalog.session() as session:
            row = ctx.repo(session, Dataset).add(name=note.name, xdm_class="note", body=note.model_dump())
            return {"id": row.id, **row.body}

    @router.get("/notes/{note_id}")
    def get_note(note_id: str, ctx: ServiceCtx) -> dict:
        with ctx.catalog.session() as session:
            row = ctx.repo(session, Dataset).get(note_id)
            if row is None:
                raise NotFound("Note", note_id)
            return {"id": row.id, **row.body}

    @router.post("/items")
    def create_item(ctx: ServiceCtx, body: dict = Body(...)) -> dict:
        return ItemsService(ctx).create(body)

    @router.get("/items")
    def list_items(request: Request, ctx: ServiceCtx) -> dict:
        return ItemsService(ctx).list(**dict(request.query_params))

    @router.get("/items/{item_id}")
    def get_item(item_id: str, ctx: ServiceCtx) -> dict:
        return ItemsService(ctx).get(item_id)

    @router.delete("/items/{item_id}", status_code=204)
    def delete_item(item_id: str, ctx: ServiceCtx) -> None:
        ItemsService(ctx).delete(item_id)

    if with_crash:

        @router.get("/crash")
        def crash() -> dict:
            raise RuntimeError("secret internal detail")

    return router


def make_app(settings: Settings, with_crash: bool = True) -> FastAPI:
    from fastapi import Depends

    from segmentation_pipelines.api.deps import require_token

    app = create_app(settings)
    app.include_router(test_router(with_crash), prefix=TEST_PREFIX, dependencies=[Depends(require_token)])
    return app


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        httpx.get(f"{base_url}/health", timeout=10)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
