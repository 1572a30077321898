"""The web console: ``/`` serves the page, ``/console/static/`` its files (plain ES modules, no build step),
and ``/console/api/`` the few JSON answers the page needs beyond the public API.

Signed-in users present an API key (``Authorization: Bearer``), exactly as API clients do; orders, uploads,
queries and short-video analyses go through the public API itself. Operator answers need an operator token
(``yinzi operators create NAME``). Nothing here decides anything: it reads and calls the core.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from yinzi.accounts import authenticate, create_key
from yinzi.appkeys import DB, SETTINGS, SIGNER
from yinzi.console import operators
from yinzi.doctor import order_types
from yinzi.envelope import ok, read_json_object, reject_unknown
from yinzi.errors import BadRequest, InsufficientBalance, NotFound, Unauthorized
from yinzi.metrics import reason_kind
from yinzi.routes.files import serve_stored
from yinzi.storage import upload_key
from yinzi.store import ApiKey, Order, User

STATIC = Path(__file__).parent / "static"
ORDERS_SHOWN = 100
LEDGER_SHOWN = 100
QUEUE_SHOWN = 200
FAILURES_WINDOW_S = 7 * 24 * 3600
FAILURES_SHOWN = 500
EXAMPLES_PER_REASON = 3
# Signed like a result file, but no order lists this name, so /files never serves it.
SOURCE_NAME = "~source"
GONE_SOURCE = "the uploaded file has expired"

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


# ---- a signed-in user ----------------------------------------------------------------------------------------


def _key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "prefix": key.prefix,
        "label": key.label,
        "kind": "signed" if key.signed else "bearer",
        "createdAt": key.created_at,
        "revokedAt": key.revoked_at,
        "rateLimit": key.rate_limit,
        "user": key.user_name,
    }


def _order_view(order: Order) -> dict[str, Any]:
    return {
        "orderNo": order.order_no,
        "orderType": order.order_type,
        "status": order.status,
        "progress": 100 if order.terminal else order.progress,
        "reason": order.reason,
        "priority": order.priority,
        "createdAt": order.created_at,
        "finishedAt": order.finished_at,
        "duration": order.duration,
        "source": order.stuff.get("pathKey") or order.stuff.get("uploadId"),
    }


@routes.get("/console/api/me")
async def me(request: web.Request) -> web.Response:
    user = await authenticate(request)
    db = request.app[DB]
    ledger = (await db.ledger(user.id))[-LEDGER_SHOWN:]
    return ok(
        {
            "name": user.name,
            "balance": await db.balance(user.id),
            "ledger": ledger[::-1],
            "keys": [_key_view(key) for key in await db.list_keys(user.name)],
            "webhookSecret": await db.webhook_secret(user.id),
        }
    )


@routes.post("/console/api/me/webhook-secret")
async def rotate_webhook_secret(request: web.Request) -> web.Response:
    user = await authenticate(request)
    return ok({"webhookSecret": await request.app[DB].rotate_webhook_secret(user.id)})


@routes.post("/console/api/me/keys")
async def create_own_key(request: web.Request) -> web.Response:
    user = await authenticate(request)
    body = await read_json_object(request)
    reject_unknown(body, frozenset({"label"}))
    made = await create_key(request.app[DB], user, _label(body.get("label")))
    return ok({"key": made.key, "prefix": made.prefix})


@routes.post("/console/api/me/keys/{prefix}/revoke")
async def revoke_own_key(request: web.Request) -> web.Response:
    user = await authenticate(request)
    prefix = request.match_info["prefix"]
    db = request.app[DB]
    if not any(k.prefix == prefix and k.revoked_at is None for k in await db.list_keys(user.name)):
        raise NotFound("no active key with that prefix")
    await db.revoke_key(prefix)
    return ok({"revoked": prefix})


@routes.get("/console/api/orders")
async def my_orders(request: web.Request) -> web.Response:
    user = await authenticate(request)
    return ok([_order_view(o) for o in await request.app[DB].orders_of(user.id, ORDERS_SHOWN)])


@routes.get("/console/api/orders/{order_no}")
async def my_order(request: web.Request) -> web.Response:
    """The order without charging it (order/query charges and lists the results), and where its input
    can be played from: the transcript is shown beside it."""
    user = await authenticate(request)
    order = await request.app[DB].order(request.match_info["order_no"])
    if order is None or order.user_id != user.id:
        raise NotFound("Order not found")
    view = _order_view(order)
    if "uploadId" in order.stuff:
        signed = urlsplit(request.app[SIGNER].path(order.order_no, SOURCE_NAME))
        view["sourceUrl"] = f"/console/source/{order.order_no}?{signed.query}"
    else:
        view["sourceUrl"] = order.stuff.get("pathKey")
    return ok(view)


@routes.get("/console/source/{order_no}")
async def source(request: web.Request) -> web.StreamResponse:
    """An uploaded order's input, for the player beside its transcript; signed, like result files."""
    order_no = request.match_info["order_no"]
    query = parse_qs(request.query_string)
    request.app[SIGNER].verify(
        order_no, SOURCE_NAME, (query.get("expires") or [""])[0], (query.get("sig") or [""])[0]
    )
    order = await request.app[DB].order(order_no)
    upload_id = order.stuff.get("uploadId") if order else None
    if not upload_id:
        raise NotFound(GONE_SOURCE)
    expires = int((query.get("expires") or ["0"])[0])
    return await serve_stored(request, upload_key(str(upload_id)), expires, SOURCE_NAME, None, GONE_SOURCE)


# ---- operators -------------------------------------------------------------------------------------------------


def _operator(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    name = (
        operators.operator_for(request.app[SETTINGS].data_dir, token.strip()) if scheme == "Bearer" else None
    )
    if name is None:
        raise Unauthorized("an operator token is required: yinzi operators create NAME")
    return name


async def _user(request: web.Request, name: Any) -> User:
    if not isinstance(name, str) or not name:
        raise BadRequest("user is required")
    user = await request.app[DB].user_by_name(name)
    if user is None:
        raise NotFound(f"no user named {name}")
    return user


def _label(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 100:
        raise BadRequest("label must be a string of at most 100 characters")
    return value


@routes.get("/console/api/admin/whoami")
async def whoami(request: web.Request) -> web.Response:
    return ok({"operator": _operator(request)})


@routes.get("/console/api/admin/users")
async def users(request: web.Request) -> web.Response:
    _operator(request)
    return ok([{"name": u.name, "balance": u.balance} for u in await request.app[DB].list_users()])


@routes.post("/console/api/admin/grant")
async def grant(request: web.Request) -> web.Response:
    """Points to a user, or taken back (negative), through the ledger, as `yinzi points grant` does."""
    operator = _operator(request)
    body = await read_json_object(request)
    reject_unknown(body, frozenset({"user", "points", "note"}))
    user = await _user(request, body.get("user"))
    points = body.get("points")
    if isinstance(points, bool) or not isinstance(points, int) or points == 0:
        raise BadRequest("points must be a whole number other than 0 (negative takes points back)")
    note = _label(body.get("note")) or f"by operator {operator}"
    try:
        balance = await request.app[DB].grant_points(user.id, points, note)
    except InsufficientBalance:
        raise BadRequest(f"{user.name} has only {user.balance} points; cannot take back {-points}") from None
    return ok({"user": user.name, "balance": balance})


@routes.get("/console/api/admin/keys")
async def keys(request: web.Request) -> web.Response:
    _operator(request)
    return ok([_key_view(key) for key in await request.app[DB].list_keys()])


@routes.post("/console/api/admin/keys")
async def create_user_key(request: web.Request) -> web.Response:
    _operator(request)
    body = await read_json_object(request)
    reject_unknown(body, frozenset({"user", "label", "rateLimit"}))
    user = await _user(request, body.get("user"))
    limit = body.get("rateLimit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise BadRequest("rateLimit must be a whole number of requests per minute (0: none)")
    made = await create_key(request.app[DB], user, _label(body.get("label")), rate_limit=limit)
    return ok({"key": made.key, "prefix": made.prefix})


@routes.post("/console/api/admin/keys/{prefix}/limit")
async def limit_key(request: web.Request) -> web.Response:
    _operator(request)
    body = await read_json_object(request)
    reject_unknown(body, frozenset({"rateLimit"}))
    limit = body.get("rateLimit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise BadRequest("rateLimit must be a whole number of requests per minute, 0 for none, or null")
    if await request.app[DB].set_rate_limit(request.match_info["prefix"], limit) == 0:
        raise NotFound("no active key with that prefix")
    return ok({"prefix": request.match_info["prefix"], "rateLimit": limit})


@routes.post("/console/api/admin/keys/{prefix}/revoke")
async def revoke_key(request: web.Request) -> web.Response:
    _operator(request)
    if await request.app[DB].revoke_key(request.match_info["prefix"]) == 0:
        raise NotFound("no active key with that prefix")
    return ok({"revoked": request.match_info["prefix"]})


@routes.get("/console/api/admin/queue")
async def queue(request: web.Request) -> web.Response:
    _operator(request)
    db = request.app[DB]
    depth = [{"priority": p, "state": s, "count": n} for p, s, n in await db.queue_depth()]
    active = [{**_order_view(order), "user": owner} for order, owner in await db.active_orders(QUEUE_SHOWN)]
    return ok({"depth": depth, "orders": active})


@routes.get("/console/api/admin/engines")
async def engines(request: web.Request) -> web.Response:
    _operator(request)
    settings = request.app[SETTINGS]
    models = sorted(
        str(path.relative_to(settings.models_dir))
        for path in settings.models_dir.glob("*/*")
        if path.is_file() and path.suffix in (".yaml", ".pt", ".th", ".bin")
    )
    return ok(
        {
            "orderTypes": order_types(settings),
            "modelDir": str(settings.models_dir.resolve()),
            "models": models,
            "defaults": {"demucs": settings.demucs_model, "whisper": settings.whisper_model},
        }
    )


@routes.get("/console/api/admin/failures")
async def failures(request: web.Request) -> web.Response:
    """Failed and timed-out orders of the last week, grouped by the kind of reason, biggest group first."""
    _operator(request)
    orders = await request.app[DB].recent_failures(time.time() - FAILURES_WINDOW_S, FAILURES_SHOWN)
    groups: dict[str, list[Order]] = {}
    for order in orders:
        groups.setdefault(reason_kind(order.reason), []).append(order)
    return ok(
        [
            {
                "kind": kind,
                "count": len(members),
                "examples": [
                    {
                        "orderNo": o.order_no,
                        "reason": o.reason,
                        "finishedAt": o.finished_at,
                        "status": o.status,
                    }
                    for o in members[:EXAMPLES_PER_REASON]
                ],
            }
            for kind, members in sorted(groups.items(), key=lambda item: -len(item[1]))
        ]
    )


def add_routes(app: web.Application) -> None:
    app.add_routes(routes)
    app.router.add_static("/console/static", STATIC)
