"""The security corpus beyond pathKey downloads (tests/test_fetch.py): result-URL traversal, share links and
webhooks that try to reach our own network, odd address spellings wherever a URL is accepted, the client's
address behind reverse proxies (a forged X-Forwarded-For changes nothing).

Covered elsewhere: SSRF through redirects and DNS (test_fetch), signed-URL tampering and expiry (test_orders),
another user's key on an order or upload (test_api_contract, test_uploads), upload names with folders
(test_uploads), webhook signature replay older than 5 minutes (test_webhooks), signed requests (test_access).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from ipaddress import ip_network
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from tests.conftest import Account, add_account, create_order, wait_for_order
from yinzi.appkeys import DB, SETTINGS, SIGNER
from yinzi.declare import CLIENT
from yinzi.logs import AccessLogger
from yinzi.middleware import client_address
from yinzi.settings import Settings, SettingsError


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


PROXIES = (ip_network("10.0.0.0/8"), ip_network("127.0.0.1"), ip_network("::1"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("198.51.100.4", ["203.0.113.7"], "198.51.100.4"),  # not from a proxy: the header is anyone's word
        ("127.0.0.1", [], "127.0.0.1"),  # a proxy's own request
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["6.6.6.6, 203.0.113.7"], "203.0.113.7"),  # the client's forged entry stays left
        ("127.0.0.1", ["6.6.6.6", "203.0.113.7, 10.1.2.3"], "203.0.113.7"),  # two proxies, two headers
        ("::1", ["2001:db8::5"], "2001:db8::5"),
        ("127.0.0.1", ["10.1.2.3, 10.4.5.6"], "10.1.2.3"),  # only proxies: the farthest one
        ("127.0.0.1", ["nonsense"], "nonsense"),  # what the proxy wrote, not trusted any further
    ],
)
def test_the_client_address_behind_trusted_proxies(peer: str, forwarded_for: list[str], client: str) -> None:
    assert client_address(peer, forwarded_for, PROXIES) == client
    assert client_address(peer, forwarded_for, ()) == peer


def test_the_access_log_names_the_client(caplog: pytest.LogCaptureFixture) -> None:
    request = make_mocked_request("GET", "/healthz?apiKey=secret", headers={"X-Request-Id": "r1"})
    request[CLIENT] = "203.0.113.7"
    response = web.Response(headers={"X-Request-Id": "r1"})
    with caplog.at_level(logging.INFO, "yinzi.access"):
        AccessLogger(logging.getLogger("yinzi.access"), "").log(request, response, 0.002)
    assert [r.getMessage() for r in caplog.records] == ['203.0.113.7 "GET /healthz?apiKey=***" 200 0 2.0ms']


def test_trusted_proxies_setting() -> None:
    settings = Settings.from_env({"YINZI_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1,::1"})
    assert settings.trusted_proxies == PROXIES
    with pytest.raises(SettingsError, match="YINZI_TRUSTED_PROXIES takes IP addresses or CIDRs"):
        Settings.from_env({"YINZI_TRUSTED_PROXIES": "proxy.internal"})
