"""GET /healthz, GET /readyz, GET /metrics and GET /openapi.json (the document of every API the app serves)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from yinzi import __version__
from yinzi.appkeys import DB, ENDPOINTS, QUEUE, QUICK_CHECKS, SETTINGS
from yinzi.declare import Endpoints, openapi_document
from yinzi.envelope import ok
from yinzi.errors import ServiceUnavailable
from yinzi.metrics import CONTENT_TYPE, exposition, queue_family
from yinzi.routes.api import Envelope, endpoints

TITLE = "yinzi"
DESCRIPTION = (
    "A self-hosted audio-processing order service (stem separation, transcription, short-video links). "
    "Each tag is one API it speaks, with that API's own error shape and request id header; all of them place "
    "orders on the same core, so an order made through one is visible through the native order/query."
)


def api_document(tables: Iterable[Endpoints]) -> dict[str, Any]:
    """/openapi.json: generated from the endpoint declarations of every API."""
    return openapi_document(tables, title=TITLE, version=__version__, description=DESCRIPTION)


class OrderTypeHealth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool
    reason: str | None = Field(description="why it cannot run now, and what to do")


class StorageHealth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="local or s3")
    ok: bool
    detail: str = Field(description="where files go, or why the store cannot be used")


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "degraded"] = Field(
        description="degraded: the service answers, but some order types (or the file store) would fail now. "
        "With the arq queue the engines run in worker processes, so order types this host cannot run do not "
        "count"
    )
    queue: Literal["arq", "embedded"]
    ffprobe: str = Field(description='"ok", or what is missing')
    storage: StorageHealth
    orderTypes: dict[str, OrderTypeHealth] = Field(description="what this host's engines can run now")


class Ready(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ready: Literal[True]


class OpenApiDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    openapi: str = Field(pattern=r"^3\.1\.")
    info: dict[str, Any]
    paths: dict[str, Any]


@endpoints.get(
    "/healthz",
    summary="Liveness, and which order types can run now",
    response=Envelope[Health],
    errors=(503,),
    secured=False,
)
async def health(request: web.Request) -> web.Response:
    try:
        await request.app[DB].ping()
    except Exception as exc:
        raise ServiceUnavailable(f"database unavailable: {exc}") from None
    checks = await request.app[QUICK_CHECKS].report()
    return ok(
        {
            "status": "ok" if checks["fine"] else "degraded",
            "queue": "arq" if request.app[SETTINGS].redis_url else "embedded",
            "ffprobe": checks["ffprobe"],
            "storage": checks["storage"],
            "orderTypes": checks["orderTypes"],
        }
    )


@endpoints.get(
    "/readyz",
    summary="Readiness for load balancers",
    description="200 while this process can take requests: the database and the job queue answer.",
    response=Envelope[Ready],
    errors=(503,),
    secured=False,
)
async def ready(request: web.Request) -> web.Response:
    try:
        await request.app[DB].ping()
    except Exception as exc:
        raise ServiceUnavailable(f"not ready: database unavailable: {exc}") from None
    await request.app[QUEUE].ping()
    return ok({"ready": True})


@endpoints.get(
    "/openapi.json",
    summary="This document: every API the service speaks, one tag each",
    response=OpenApiDocument,
    secured=False,
)
async def openapi(request: web.Request) -> web.Response:
    tables = request.app[ENDPOINTS]
    return web.json_response(api_document(tables))


@endpoints.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    description="The queue's depth is read from the database at each scrape.",
    media_types=("text/plain",),
    secured=False,
)
async def metrics(request: web.Request) -> web.Response:
    body = exposition([queue_family(await request.app[DB].queue_depth())])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
