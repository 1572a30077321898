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
    order_no = new_order_no()
    # Committed before it is enqueued; refused, creating nothing, if the balance cannot pay one minute.
    if not await db.create_order(
        order_no, user.id, order.order_type, order.stuff, app[SETTINGS].min_charge(order.order_type)
    ):
        raise InsufficientBalance()
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
    found = await db.order_and_balance(order_no)
    if found is None or found[0].user_id != user.id:
        raise NotFound("Order not found")  # another user's order looks exactly like a missing one
    if found[0].status == "finish" and found[0].pay_status == "waiting":
        await db.charge_order(order_no, user.id)  # exactly once, whoever gets here first
        found = await db.order_and_balance(order_no)
        assert found is not None
    order, balance = found

    signer = app[SIGNER]
    base = app[SETTINGS].public_url or f"{request.scheme}://{request.host}"
    return ok(query_view(order, balance, lambda name: base + signer.path(order.order_no, name)))
