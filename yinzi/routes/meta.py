"""GET /healthz, GET /metrics and GET /openapi.json."""

from __future__ import annotations

from aiohttp import web

from workers.probe import ffprobe_missing
from yinzi.appkeys import DB, SETTINGS
from yinzi.envelope import ok
from yinzi.errors import ServiceUnavailable
from yinzi.metrics import CONTENT_TYPE, exposition, queue_family
from yinzi.openapi import openapi_document

routes = web.RouteTableDef()


@routes.get("/healthz")
async def health(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    try:
        await request.app[DB].ping()
    except Exception as exc:
        raise ServiceUnavailable(f"database unavailable: {exc}") from None
    return ok(
        {
            "status": "ok",
            "queue": "arq" if settings.redis_url else "embedded",
            "ffprobe": ffprobe_missing(settings.ffprobe) or "ok",
        }
    )


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus' text format; the queue's depth is read from the database at each scrape."""
    body = exposition([queue_family(await request.app[DB].queue_depth())])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
