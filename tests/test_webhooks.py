"""Signed webhooks: one POST when an order ends, verified with the user's secret, retried, recorded."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import Account, add_account, wait_for_order
from yinzi.appkeys import DB, SERVICE
from yinzi.callbacks import STYLES, Outgoing
from yinzi.orders import OrderRequest
from yinzi.service import OrderService
from yinzi.settings import Settings
from yinzi.store import Database, Order


class Receiver:
    """A local stand-in for a customer's endpoint, answering each POST with the next planned status."""

    def __init__(self, plan: list[int | str]) -> None:
        self.plan = plan  # HTTP statuses, or "hang"
        self.calls: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        step = self.plan[min(len(self.calls), len(self.plan)) - 1]
        if step == "hang":
            await asyncio.sleep(30)
        return web.Response(status=int(step))


@pytest.fixture
def webhook_settings(settings: Settings) -> Settings:
    return settings.replace(webhook_retry_delays=(0.1, 0.1, 0.1), webhook_timeout=0.5, sweep_interval=0.05)


@pytest.fixture
async def hooked(
    make_client: Callable[[Settings], Any], webhook_settings: Settings
) -> tuple[TestClient, Account]:
    client: TestClient = await make_client(webhook_settings)
    return client, await add_account(client.app[DB])


async def start(aiohttp_server: Callable[..., Any], receiver: Receiver) -> str:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("/hook"))


async def order_with_callback(client: TestClient, account: Account, path_key: str, callback: str) -> str:
    resp = await client.post(
        "/api/open/v1/order/create",
        json={"orderType": "extract-text", "stuff": {"pathKey": path_key}, "callbackUrl": callback},
        headers=account.headers,
    )
    body = await resp.json()
    assert resp.status == 200, body
    order_no: str = body["data"]["orderNo"]
    return order_no


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> None:
    """What a receiver does (the README shows the same in Python and Node)."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    if abs(time.time() - timestamp) > tolerance:
        raise ValueError("timestamp too old")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts["v1"]):
        raise ValueError("bad signature")


async def wait_history(
    db: Database, order_no: str, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    for _ in range(200):
        history = await db.webhook_history(order_no)
        if done(history):
            return history
        await asyncio.sleep(0.05)
    raise AssertionError(f"webhook history never settled: {history}")


async def test_finished_order_posts_one_signed_webhook(
    hooked: tuple[TestClient, Account], aiohttp_server: Callable[..., Any], media_url: Callable[[str], str]
) -> None:
    client, account = hooked
    receiver = Receiver([200])
    order_no = await order_with_callback(
        client, account, media_url("/m/tone.wav"), await start(aiohttp_server, receiver)
    )
    order = await wait_for_order(client.app[DB], order_no)
    history = await wait_history(client.app[DB], order_no, lambda h: bool(h and h[0]["delivered_at"]))
    assert [(a["status"], a["error"]) for a in history] == [(200, None)]
    [(headers, body)] = receiver.calls
    assert json.loads(body) == {"orderNo": order_no, "status": "finish", "cost": order.cost, "reason": None}
    secret = await client.app[DB].webhook_secret(account.user_id)
    verify(secret, headers["X-Yinzi-Signature"], body)
    with pytest.raises(ValueError, match="bad signature"):
        verify(secret, headers["X-Yinzi-Signature"], body.replace(b"finish", b"failed"))
    # A signature older than five minutes is refused by a receiver that checks the timestamp: no replays.
    parts = dict(item.split("=", 1) for item in headers["X-Yinzi-Signature"].split(","))
    old = int(parts["t"]) - 301
    stale = f"t={old},v1=" + hmac.new(secret.encode(), f"{old}.".encode() + body, hashlib.sha256).hexdigest()
    with pytest.raises(ValueError, match="timestamp too old"):
        verify(secret, stale, body)
    await asyncio.sleep(0.3)
    assert len(receiver.calls) == 1  # delivered once, never again


async def test_failures_are_retried_with_every_attempt_recorded(
    hooked: tuple[TestClient, Account], aiohttp_server: Callable[..., Any], media_url: Callable[[str], str]
) -> None:
    client, account = hooked
    receiver = Receiver([500, 503, 200])
    order_no = await order_with_callback(
        client, account, media_url("/m/notes.mp3"), await start(aiohttp_server, receiver)
    )
    assert (await wait_for_order(client.app[DB], order_no)).status == "failed"
    history = await wait_history(client.app[DB], order_no, lambda h: bool(h and h[0]["delivered_at"]))
    assert [(a["status"], a["error"]) for a in history] == [(500, "HTTP 500"), (503, "HTTP 503"), (200, None)]
    assert json.loads(receiver.calls[0][1])["status"] == "failed"


async def test_a_hanging_receiver_is_given_up_and_blocks_nothing(
    hooked: tuple[TestClient, Account], aiohttp_server: Callable[..., Any], media_url: Callable[[str], str]
) -> None:
    client, account = hooked
    hanging = await start(aiohttp_server, Receiver(["hang"]))
    fine = Receiver([200])
    slow_order = await order_with_callback(client, account, media_url("/m/tone.wav"), hanging)
    quick_order = await order_with_callback(
        client, account, media_url("/m/tone.wav"), await start(aiohttp_server, fine)
    )
    # The other delivery goes out while the first receiver hangs.
    await wait_history(client.app[DB], quick_order, lambda h: bool(h and h[0]["delivered_at"]))
    history = await wait_history(client.app[DB], slow_order, lambda h: bool(h and h[0]["gave_up_at"]))
    assert len(history) == 4  # the first attempt and three retries
    assert {a["error"] for a in history} == {"no answer within 0.5 s"}


async def test_callback_urls_follow_the_address_rules(client: TestClient, account: Account) -> None:
    resp = await client.post(
        "/api/open/v1/order/create",
        json={
            "orderType": "extract-text",
            "stuff": {"pathKey": "https://example.com/a.wav"},
            "callbackUrl": "http://10.0.0.7/hook",
        },
        headers=account.headers,
    )
    assert (resp.status, (await resp.json())["msg"]) == (400, "callbackUrl: 10.0.0.7 is not a public address")


class BrokenStyle:
    """An API's callback style that cannot write its body (say, its results could not be read)."""

    async def render(self, service: OrderService, order: Order, secret: str) -> Outgoing:
        raise OSError("results unreadable")


async def test_a_callback_that_cannot_be_written_is_recorded_retried_and_given_up(
    hooked: tuple[TestClient, Account],
    aiohttp_server: Callable[..., Any],
    media_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, account = hooked
    monkeypatch.setitem(STYLES, "broken", BrokenStyle())
    receiver = Receiver([200])
    order = OrderRequest("extract-text", {"pathKey": media_url("/m/tone.wav")}, "queue",
                         await start(aiohttp_server, receiver))  # fmt: skip
    user = await client.app[DB].user_by_name(account.name)
    assert user is not None
    placed = await client.app[SERVICE].place(user, order, api="broken")
    history = await wait_history(client.app[DB], placed.order_no, lambda h: bool(h and h[0]["gave_up_at"]))
    assert len(history) == 4 and not receiver.calls  # the first try and three retries, each recorded
    assert all("could not be written: OSError: results unreadable" in a["error"] for a in history)
