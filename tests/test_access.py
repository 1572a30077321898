"""Signed requests (X-Public-Key, X-Timestamp, X-Signature) and per-key rate limits."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Account, add_account
from yinzi.accounts import create_key
from yinzi.appkeys import DB, SIGNER
from yinzi.settings import Settings

CALCULATE = "/api/open/v1/order/calculate"
PRICE_BODY = {"orderType": "extract-text", "durationSeconds": 125}


def signed_headers(public: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """What a client computes: hex HMAC-SHA256 of "public_key\\ntimestamp" under its secret."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(secret.encode(), f"{public}\n{ts}".encode(), hashlib.sha256).hexdigest()
    return {"X-Public-Key": public, "X-Timestamp": ts, "X-Signature": signature}


async def test_signed_requests(client: TestClient) -> None:
    db = client.app[DB]
    user = await db.create_user("signer", 100)
    pair = await create_key(db, user, signer=client.app[SIGNER])
    assert pair.key.startswith("yzpk_") and pair.secret is not None and pair.secret.startswith("yzsk_")

    resp = await client.post(CALCULATE, json=PRICE_BODY, headers=signed_headers(pair.key, pair.secret))
    assert resp.status == 200 and (await resp.json())["data"]["balance"] == 100

    cases = [
        (signed_headers(pair.key, "yzsk_wrong"), "Invalid signature"),
        (
            signed_headers(pair.key, pair.secret, int(time.time()) - 301),
            "X-Timestamp is more than 5 minutes away",
        ),
        ({"X-Public-Key": pair.key}, "X-Timestamp and X-Signature are required with X-Public-Key"),
        (signed_headers("yzpk_unknown", client.app[SIGNER].pair_secret("yzpk_unknown")), "Invalid API Key"),
        ({"Authorization": f"Bearer {pair.key}"}, "Invalid API Key"),  # a public key is not a Bearer key
    ]
    for headers, msg in cases:
        resp = await client.post(CALCULATE, json=PRICE_BODY, headers=headers)
        body = await resp.json()
        assert resp.status == 401 and body["msg"].startswith(msg), (headers, body)

    await db.revoke_key(pair.prefix)
    resp = await client.post(CALCULATE, json=PRICE_BODY, headers=signed_headers(pair.key, pair.secret))
    assert (resp.status, (await resp.json())["msg"]) == (401, "Invalid API Key")


async def test_rate_limit_per_key_with_headers(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client = await make_client(settings.replace(rate_limit=3))
    account = await add_account(client.app[DB])
    for remaining in (2, 1, 0):
        resp = await client.post(CALCULATE, json=PRICE_BODY, headers=account.headers)
        assert resp.status == 200
        assert resp.headers["X-RateLimit-Limit"] == "3"
        assert resp.headers["X-RateLimit-Remaining"] == str(remaining)
        assert 1 <= int(resp.headers["X-RateLimit-Reset"]) <= 60
    resp = await client.post(CALCULATE, json=PRICE_BODY, headers=account.headers)
    body = await resp.json()
    assert (resp.status, body["code"], body["data"]) == (429, 429, None)
    assert body["msg"].startswith("rate limit of 3 requests per minute exceeded")
    assert 1 <= int(resp.headers["Retry-After"]) <= 60 and resp.headers["X-RateLimit-Remaining"] == "0"
    # Another key has its own count; a key's own limit overrides the default.
    other = await add_account(client.app[DB])
    assert (await client.post(CALCULATE, json=PRICE_BODY, headers=other.headers)).status == 200
    user = await client.app[DB].user_by_name(account.name)
    assert user is not None
    generous = await create_key(client.app[DB], user, rate_limit=100)
    resp = await client.post(CALCULATE, json=PRICE_BODY, headers={"Authorization": f"Bearer {generous.key}"})
    assert resp.status == 200 and resp.headers["X-RateLimit-Limit"] == "100"


async def test_rate_limits_are_shared_through_redis(
    make_client: Callable[[Settings], Any], arq_settings: Settings
) -> None:
    """Two API processes (two apps here) with one Redis count one key's requests together."""
    shared = arq_settings.replace(rate_limit=4)
    first = await make_client(shared)
    second = await make_client(shared)
    account = await add_account(first.app[DB])
    statuses = []
    for client in (first, second, first, second, first):
        statuses.append((await client.post(CALCULATE, json=PRICE_BODY, headers=account.headers)).status)
    assert statuses == [200, 200, 200, 200, 429]


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ({"orderType": "extract-text"}, "give durationSeconds or uploadId (one of them)"),
        (
            {"orderType": "extract-text", "durationSeconds": -1},
            "durationSeconds must be a number of seconds above 0",
        ),
        (
            {"orderType": "extract-text", "durationSeconds": True},
            "durationSeconds must be a number of seconds above 0",
        ),
        (
            {"orderType": "extract-text", "durationSeconds": 5, "priority": "urgent"},
            "priority must be one of: queue, lightning",
        ),
        ({"orderType": "karaoke", "durationSeconds": 5}, "orderType must be one of"),
    ],
)
async def test_calculate_validates(
    client: TestClient, account: Account, body: dict[str, Any], msg: str
) -> None:
    resp = await client.post(CALCULATE, json=body, headers=account.headers)
    assert resp.status == 400 and (await resp.json())["msg"].startswith(msg)


async def test_calculate_prices_without_creating(client: TestClient, account: Account) -> None:
    resp = await client.post(CALCULATE, json={**PRICE_BODY, "priority": "lightning"}, headers=account.headers)
    data = (await resp.json())["data"]
    assert (data["minutesBilled"], data["cost"], data["balance"]) == (3, 30, 1000)  # 3 minutes x 5 x 2
    assert await client.app[DB].unfinished_orders() == []
