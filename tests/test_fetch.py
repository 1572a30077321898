"""Fetching pathKey: only public addresses, every redirect hop checked after DNS, size and time limits."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import add_account, create_order, wait_for_order
from yinzi.appkeys import DB
from yinzi.errors import OrderFailed
from yinzi.fetch import AddressPolicy, BlockedAddress, Fetcher, download
from yinzi.settings import Settings


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject here is fetching, not the database


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::",
    ],
)
def test_non_public_addresses_are_refused(ip: str) -> None:
    with pytest.raises(BlockedAddress):
        AddressPolicy().check_ip(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(ip: str) -> None:
    AddressPolicy().check_ip(ipaddress.ip_address(ip))


def test_allow_list_takes_cidrs_and_host_names() -> None:
    policy = AddressPolicy(["10.0.0.0/8", "media.internal"])
    policy.check_ip(ipaddress.ip_address("10.9.9.9"))
    policy.check_url("http://media.internal/a.wav")
    with pytest.raises(BlockedAddress):
        policy.check_ip(ipaddress.ip_address("192.168.0.1"))


@pytest.fixture
def strict(settings: Settings) -> Settings:
    """No allow-list: loopback, where the stand-in hosts live, is off limits like any private address."""
    return settings.replace(fetch_allow=())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.mp3",
        "http://10.0.0.8/a.mp3",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/a.mp3",
        "http://[::ffff:127.0.0.1]/a.mp3",
        "http://2130706433/a.mp3",  # decimal, hex, octal and short spellings of 127.0.0.1
        "http://0x7f000001/a.mp3",
        "http://017700000001/a.mp3",
        "http://127.1/a.mp3",
    ],
)
async def test_literal_private_addresses_are_refused_at_create(
    make_client: Callable[[Settings], Any], strict: Settings, url: str
) -> None:
    client: TestClient = await make_client(strict)
    account = await add_account(client.app[DB])
    resp = await client.post(
        "/api/open/v1/order/create",
        json={"orderType": "extract-text", "stuff": {"pathKey": url}},
        headers=account.headers,
    )
    body = await resp.json()
    assert resp.status == 400 and "is not a public address" in body["msg"], body
    # ... and says what to do instead: upload the file, or allow the address.
    assert "/api/open/v1/uploads" in body["msg"] and "YINZI_FETCH_ALLOW" in body["msg"], body
    assert await client.app[DB].unfinished_orders() == []


async def fetch_reason(client: TestClient, path_key: str) -> str:
    account = await add_account(client.app[DB])
    order_no = await create_order(client, account, path_key)
    order = await wait_for_order(client.app[DB], order_no)
    assert order.status == "failed" and order.cost == 0
    return order.reason or ""


def test_odd_spelling_of_a_public_address_asks_for_the_usual_one() -> None:
    with pytest.raises(BlockedAddress, match=re.escape("write the address as 8.8.8.8")):
        AddressPolicy().check_url("http://134744072/")


@pytest.mark.parametrize("url", ["http://..a/x", "http://a..b/x", f"http://{'a' * 64}.com/x"])
def test_a_host_that_is_no_host_name_is_refused_before_anything_is_made(url: str) -> None:
    with pytest.raises(BlockedAddress, match="is not a host name"):
        AddressPolicy().check_url(url)


async def test_names_resolving_to_private_addresses_are_refused(
    make_client: Callable[[Settings], Any], strict: Settings, media_server: TestServer
) -> None:
    client = await make_client(strict)
    reason = await fetch_reason(client, f"http://localhost:{media_server.port}/m/tone.wav")
    assert reason.startswith("refused to fetch pathKey") and "not a public address" in reason, reason


async def test_redirect_to_loopback_is_refused(
    make_client: Callable[[Settings], Any], settings: Settings, media_server: TestServer
) -> None:
    # "localhost" stands in for a public host (allowed by name); it redirects to a literal loopback address.
    client = await make_client(settings.replace(fetch_allow=("localhost",)))
    target = f"http://127.0.0.1:{media_server.port}/m/tone.wav"
    reason = await fetch_reason(client, f"http://localhost:{media_server.port}/redirect?to={target}")
    assert "127.0.0.1 is not a public address" in reason


async def test_redirect_limit(client: TestClient, media_url: Callable[[str], str]) -> None:
    account = await add_account(client.app[DB])
    ok_order = await create_order(client, account, media_url("/chain/5"))
    assert (await wait_for_order(client.app[DB], ok_order)).status == "finish"
    assert "more than 5 redirects" in await fetch_reason(client, media_url("/chain/6"))


async def test_size_cap(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(settings.replace(max_download_bytes=10_000))
    assert (await fetch_reason(client, media_url("/m/tone.wav"))).startswith("file too large")
    # a gzip bomb is counted after decompression
    assert (await fetch_reason(client, media_url("/bomb"))).startswith("file too large")


async def test_stalled_download_times_out(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(settings.replace(fetch_read_timeout=0.5))
    assert (
        await fetch_reason(client, media_url("/hang")) == "download failed: the server stopped sending data"
    )


async def test_total_download_time_is_capped(media_url: Callable[[str], str], tmp_path: Path) -> None:
    fetcher = Fetcher(AddressPolicy(["127.0.0.1/32"]), connect_timeout=5, read_timeout=60)
    try:
        with pytest.raises(OrderFailed, match=re.escape("download timed out after 0.5 s")):
            await download(
                fetcher,
                media_url("/hang"),
                tmp_path / "x",
                max_bytes=10**9,
                max_redirects=5,
                total_timeout=0.5,
            )
    finally:
        await fetcher.close()


async def test_unreachable_host(client: TestClient) -> None:
    reason = await fetch_reason(client, "http://127.0.0.1:9/a.wav")  # discard port: nothing listens
    assert reason.startswith("could not connect to 127.0.0.1:9")
