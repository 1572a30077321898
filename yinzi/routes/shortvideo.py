"""POST /api/open/v1/short-video/analyze: a share link (or a whole share text) in, the post's media out."""

from __future__ import annotations

from aiohttp import web

from yinzi.accounts import authenticate
from yinzi.appkeys import DB, LINKS, SETTINGS
from yinzi.envelope import ok, read_json_object, reject_unknown
from yinzi.errors import BadRequest, InsufficientBalance, YinziError
from yinzi.links import LinkFailed
from yinzi.metrics import ANALYSES

routes = web.RouteTableDef()

MAX_LINK_CHARS = 4096


@routes.post("/api/open/v1/short-video/analyze")
async def analyze(request: web.Request) -> web.Response:
    app = request.app
    db = app[DB]
    user = await authenticate(request)
    body = await read_json_object(request)
    reject_unknown(body, frozenset({"link"}))
    link = body.get("link")
    if link is None or link == "":
        raise BadRequest("link is required")
    if not isinstance(link, str):
        raise BadRequest("link must be a string")
    if len(link) > MAX_LINK_CHARS:
        raise BadRequest(f"link is longer than {MAX_LINK_CHARS} characters")
    price = app[SETTINGS].analyze_price
    if user.balance < price:
        raise InsufficientBalance()  # before spending a platform request on it
    try:
        info = await app[LINKS].analyze(link)
    except YinziError as exc:
        platform = exc.platform if isinstance(exc, LinkFailed) else None
        await db.record_analysis(user.id, link, platform, 0, exc.msg)  # failed calls are kept, and free
        ANALYSES.labels(platform or "none", f"http_{exc.status}").inc()
        raise
    # Charged in the transaction that records the call; a balance spent meanwhile gets 402 and no charge.
    balance = await db.record_analysis(user.id, link, info.platform, price)
    ANALYSES.labels(info.platform, "ok").inc()
    return ok({**info.view(), "balance": balance})
