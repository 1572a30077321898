"""POST /api/open/v1/order/create, GET /api/open/v1/order/query and POST /api/open/v1/order/calculate."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from yinzi.accounts import authenticate
from yinzi.appkeys import DB, POLICY, QUEUE, SETTINGS, SIGNER
from yinzi.envelope import ok, read_json_object
from yinzi.errors import BadRequest, InsufficientBalance, NotFound, ServiceUnavailable
from yinzi.idempotency import idempotent
from yinzi.metrics import ORDERS_CREATED, ORDERS_ENDED, reason_kind
from yinzi.orders import created_view, new_order_no, parse_calculate, parse_create, query_view
from yinzi.pricing import billed_minutes, order_cost
from yinzi.routes import public_base
from yinzi.routes.uploads import completed_upload
from yinzi.store import User

routes = web.RouteTableDef()


@routes.post("/api/open/v1/order/create")
async def create_order(request: web.Request) -> web.Response:
    user = await authenticate(request)
    body = await read_json_object(request)
    return await idempotent(request.app[DB], request, user, body, lambda: _create(request.app, user, body))


async def _create(app: web.Application, user: User, body: dict[str, Any]) -> web.Response:
    db, settings = app[DB], app[SETTINGS]
    order = parse_create(body, app[POLICY])
    if order.upload_id is not None:
        await completed_upload(db, user, order.upload_id)
    order_no = new_order_no()
    # Committed before it is enqueued; refused, creating nothing, if the balance cannot pay one minute.
    admitted = await db.create_order(
        order_no,
        user.id,
        order.order_type,
        order.stuff,
        min_balance=order_cost(settings, order.order_type, 0, order.priority),
        priority=order.priority,
        callback_url=order.callback_url,
        running_cap=settings.max_running_per_user,
    )
    if admitted is None:
        raise InsufficientBalance()
    ORDERS_CREATED.labels(order.order_type, order.priority).inc()
    if admitted:  # else it waits, pending, until one of the user's running orders ends
        try:
            await app[QUEUE].enqueue(order_no, order.priority)
        except ServiceUnavailable:
            reason = "the job queue was unavailable when the order was created"
            if await db.end_order(order_no, "failed", reason):
                ORDERS_ENDED.labels(order.order_type, "failed", reason_kind(reason)).inc()
            raise
    return ok(created_view(order_no, order))


@routes.get("/api/open/v1/order/query")
async def query_order(request: web.Request) -> web.Response:
    app = request.app
    db = app[DB]
    user = await authenticate(request)
    order_no = request.query.get("orderNo", "").strip()
    if not order_no:
        raise BadRequest("orderNo is required")
    found = await db.order_and_balance(order_no)
    if found is None or found[0].user_id != user.id:
        raise NotFound("Order not found")  # another user's order looks exactly like a missing one
    if found[0].status == "finish" and found[0].pay_status == "waiting" and not found[0].expired:
        await db.charge_order(order_no, user.id)  # exactly once, whoever gets here first
        found = await db.order_and_balance(order_no)
        assert found is not None
    order, balance = found

    signer = app[SIGNER]
    base = public_base(request)
    return ok(query_view(order, balance, lambda name: base + signer.path(order.order_no, name)))


@routes.post("/api/open/v1/order/calculate")
async def calculate(request: web.Request) -> web.Response:
    """What an order would cost, creating nothing."""
    app = request.app
    db = app[DB]
    user = await authenticate(request)
    quote = parse_calculate(await read_json_object(request), app[SETTINGS].max_duration)
    duration = quote.duration
    if duration is None:
        assert quote.upload_id is not None
        duration = (await completed_upload(db, user, quote.upload_id)).duration
        assert duration is not None
    return ok(
        {
            "orderType": quote.order_type,
            "priority": quote.priority,
            "durationSeconds": duration,
            "minutesBilled": billed_minutes(duration),
            "cost": order_cost(app[SETTINGS], quote.order_type, duration, quote.priority),
            "balance": await db.balance(user.id),
        }
    )
