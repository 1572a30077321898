"""POST /api/open/v1/order/create and GET /api/open/v1/order/query."""

from __future__ import annotations

from aiohttp import web

from yinzi.accounts import authenticate
from yinzi.appkeys import DB, POLICY, QUEUE, SETTINGS, SIGNER
from yinzi.envelope import ok, read_json_object
from yinzi.errors import BadRequest, InsufficientBalance, NotFound, ServiceUnavailable
from yinzi.orders import created_view, new_order_no, parse_create, query_view

routes = web.RouteTableDef()


@routes.post("/api/open/v1/order/create")
async def create_order(request: web.Request) -> web.Response:
    app = request.app
    db = app[DB]
    user = await authenticate(db, request)
    order = parse_create(await read_json_object(request), app[POLICY])
    if user.balance < app[SETTINGS].min_charge(order.order_type):
        raise InsufficientBalance()
    order_no = new_order_no()
    await db.create_order(order_no, user.id, order.order_type, order.stuff)  # committed before it is enqueued
    try:
        await app[QUEUE].enqueue(order_no)
    except ServiceUnavailable:
        await db.end_order(order_no, "failed", "the job queue was unavailable when the order was created")
        raise
    return ok(created_view(order_no, order.order_type))


@routes.get("/api/open/v1/order/query")
async def query_order(request: web.Request) -> web.Response:
    app = request.app
    db = app[DB]
    user = await authenticate(db, request)
    order_no = request.query.get("orderNo", "").strip()
    if not order_no:
        raise BadRequest("orderNo is required")
    order = await db.order(order_no)
    if order is None or order.user_id != user.id:
        raise NotFound("Order not found")  # another user's order looks exactly like a missing one
    balance = user.balance
    if order.status == "finish" and order.pay_status == "waiting":
        await db.charge_order(order_no, user.id)  # exactly once, whoever gets here first
        order = await db.order(order_no)
        assert order is not None
        balance = await db.balance(user.id)

    signer = app[SIGNER]
    base = app[SETTINGS].public_url or f"{request.scheme}://{request.host}"
    return ok(query_view(order, balance, lambda name: base + signer.path(order.order_no, name)))
