"""GET /healthz, GET /readyz, GET /metrics and GET /openapi.json."""

from __future__ import annotations

from aiohttp import web

from workers.probe import ffprobe_missing
from yinzi.appkeys import DB, QUEUE, SETTINGS
from yinzi.doctor import order_types
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
    types = order_types(settings)
    ffprobe = ffprobe_missing(settings.ffprobe)
    return ok(
        {
            # "degraded": the service answers, but some order types would fail now (see orderTypes)
            "status": "ok" if ffprobe is None and all(t["ok"] for t in types.values()) else "degraded",
            "queue": "arq" if settings.redis_url else "embedded",
            "ffprobe": ffprobe or "ok",
            "orderTypes": types,
        }
    )


@routes.get("/readyz")
async def ready(request: web.Request) -> web.Response:
    """For load balancers: 200 while this process can take requests (database and job queue answer)."""
    try:
        await request.app[DB].ping()
    except Exception as exc:
        raise ServiceUnavailable(f"not ready: database unavailable: {exc}") from None
    await request.app[QUEUE].ping()
    return ok({"ready": True})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus' text format; the queue's depth is read from the database at each scrape."""
    body = exposition([queue_family(await request.app[DB].queue_depth())])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
