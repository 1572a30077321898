"""The security corpus beyond pathKey downloads (tests/test_fetch.py): result-URL traversal, share links and
webhooks that try to reach our own network, odd address spellings wherever a URL is accepted.

Covered elsewhere: SSRF through redirects and DNS (test_fetch), signed-URL tampering and expiry (test_orders),
another user's key on an order or upload (test_api_contract, test_uploads), upload names with folders
(test_uploads), webhook signature replay older than 5 minutes (test_webhooks), signed requests (test_access).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import Account, add_account, create_order, wait_for_order
from yinzi.appkeys import DB, SETTINGS, SIGNER
from yinzi.settings import Settings


async def test_result_urls_reach_only_the_orders_own_files(
    client: TestClient, account: Account, media_url: Callable[[str], str]
) -> None:
    order_no = await create_order(client, account, media_url("/m/tone.wav"))
    assert (await wait_for_order(client.app[DB], order_no)).status == "finish"
    (client.app[SETTINGS].data_dir / "secret.txt").write_text("not for you")
    signer = client.app[SIGNER]
    for name in ("../../secret.txt", "..%2F..%2Fsecret.txt", "engine.json/../../../secret.txt", "."):
        # Even with a valid signature for the odd name, only files the order lists are served.
        resp = await client.get(signer.path(order_no, name))
        assert resp.status in (403, 404), (name, resp.status)
        assert b"not for you" not in await resp.read()
    resp = await client.get(signer.path("../" + order_no, "engine.json"))
    assert resp.status == 404


@pytest.mark.parametrize(
    "callback",
    [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://2130706433/hook",
        "http://0x7f000001/hook",
        "http://0177.0.0.1/hook",
        "http://127.1/hook",
        "file:///etc/passwd",
    ],
)
async def test_callback_urls_to_our_network_are_refused_at_create(
    make_client: Callable[[Settings], Any], settings: Settings, callback: str
) -> None:
    client = await make_client(settings.replace(fetch_allow=()))
    account = await add_account(client.app[DB])
    resp = await client.post(
        "/api/open/v1/order/create",
        json={
            "orderType": "extract-text",
            "stuff": {"pathKey": "https://example.com/a.wav"},
            "callbackUrl": callback,
        },
        headers=account.headers,
    )
    body = await resp.json()
    assert resp.status == 400 and body["msg"].startswith("callbackUrl"), body
    assert await client.app[DB].unfinished_orders() == []


async def test_a_webhook_host_resolving_to_loopback_is_refused_at_delivery(
    make_client: Callable[[Settings], Any], settings: Settings, aiohttp_server: Callable[..., Any]
) -> None:
    """The name passes at create (DNS could change by delivery time), the address check at delivery stops it."""
    hits: list[web.Request] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request)
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver: TestServer = await aiohttp_server(app)
    client = await make_client(
        settings.replace(fetch_allow=(), webhook_retry_delays=(0.05,), sweep_interval=0.02)
    )
    account = await add_account(client.app[DB])
    resp = await client.post(
        "/api/open/v1/order/create",
        json={
            "orderType": "extract-text",
            "stuff": {"pathKey": "http://localhost:9/a.wav"},
            "callbackUrl": f"http://localhost:{receiver.port}/hook",
        },
        headers=account.headers,
    )
    order_no = (await resp.json())["data"]["orderNo"]
    assert (await wait_for_order(client.app[DB], order_no)).status == "failed"
    for _ in range(200):
        history = await client.app[DB].webhook_history(order_no)
        if history and history[0]["gave_up_at"]:
            break
        await asyncio.sleep(0.02)
    assert len(history) == 2 and all("not a public address" in (a["error"] or "") for a in history), history
    assert hits == []


async def test_a_share_link_redirecting_into_our_network_is_refused(
    make_client: Callable[[Settings], Any], settings: Settings, aiohttp_server: Callable[..., Any]
) -> None:
    async def short_link(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://10.0.0.5/share/video/1/")

    app = web.Application()
    app.router.add_get("/{tail:.*}", short_link)
    platform: TestServer = await aiohttp_server(app)
    client = await make_client(
        settings.replace(host_map={"v.douyin.com": str(platform.make_url("")).rstrip("/")})
    )
    account = await add_account(client.app[DB])
    resp = await client.post(
        "/api/open/v1/short-video/analyze",
        json={"link": "https://v.douyin.com/Evil123/"},
        headers=account.headers,
    )
    body = await resp.json()
    assert (resp.status, body["msg"]) == (400, "douyin: refused to fetch: 10.0.0.5 is not a public address")
    assert await client.app[DB].balance(account.user_id) == 1000
