"""Authentication, the envelope and request validation, exactly as the public contract words them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Account, add_account
from yinzi.appkeys import DB
from yinzi.console import is_page

CREATE = "/api/open/v1/order/create"
QUERY = "/api/open/v1/order/query"


def order_body(
    path_key: Any = "https://example.com/a.mp3", order_type: Any = "track-separation"
) -> dict[str, Any]:
    return {"orderType": order_type, "stuff": {"pathKey": path_key}}


async def assert_error(resp: Any, status: int, msg: str | None = None, contains: str | None = None) -> None:
    body = await resp.json()
    assert resp.status == status, body
    assert body["code"] == status and body["data"] is None, body
    if msg is not None:
        assert body["msg"] == msg
    if contains is not None:
        assert contains in body["msg"], body["msg"]
    assert resp.headers["X-Request-Id"]


async def test_missing_key(client: TestClient) -> None:
    await assert_error(await client.post(CREATE, json=order_body()), 401, "API Key is required")
    await assert_error(await client.get(QUERY, params={"orderNo": "x"}), 401, "API Key is required")


async def test_wrong_key(client: TestClient, account: Account) -> None:
    headers = {"Authorization": "Bearer yz_not-a-key"}
    await assert_error(await client.post(CREATE, json=order_body(), headers=headers), 401, "Invalid API Key")
    await assert_error(
        await client.get(QUERY, params={"orderNo": "x", "apiKey": "nope"}), 401, "Invalid API Key"
    )


async def test_revoked_key(client: TestClient, account: Account) -> None:
    db = client.app[DB]
    [key] = await db.list_keys(account.name)
    assert await db.revoke_key(key.prefix) == 1
    await assert_error(
        await client.post(CREATE, json=order_body(), headers=account.headers), 401, "Invalid API Key"
    )


async def test_bearer_and_query_parameter_both_authenticate(client: TestClient, account: Account) -> None:
    resp = await client.post(CREATE, json=order_body(), headers=account.headers)
    assert resp.status == 200
    order_no = (await resp.json())["data"]["orderNo"]
    resp = await client.get(QUERY, params={"orderNo": order_no, "apiKey": account.key})
    assert resp.status == 200
    assert (await resp.json())["data"]["orderNo"] == order_no


async def test_create_response_shape(client: TestClient, account: Account) -> None:
    resp = await client.post(CREATE, json=order_body(), headers=account.headers)
    body = await resp.json()
    assert body["code"] == 0 and body["msg"] == "success"
    data = body["data"]
    assert set(data) == {"orderNo", "orderType", "orderStatus", "payStatus", "messageId", "priority"}
    assert data["priority"] == "queue"
    assert len(data["orderNo"]) == 18 and data["orderNo"].isalnum()
    assert data["orderType"] == "track-separation"
    assert data["orderStatus"] == "pending" and data["payStatus"] == "waiting"
    assert data["messageId"] == data["orderNo"]


async def test_order_numbers_are_unique(client: TestClient, account: Account) -> None:
    numbers = set()
    for _ in range(20):
        resp = await client.post(CREATE, json=order_body(), headers=account.headers)
        numbers.add((await resp.json())["data"]["orderNo"])
    assert len(numbers) == 20


async def test_request_id_on_every_response_and_caller_id_kept(client: TestClient) -> None:
    resp = await client.get("/healthz", headers={"X-Request-Id": "caller-123"})
    assert resp.headers["X-Request-Id"] == "caller-123"
    resp = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert resp.headers["X-Request-Id"] != "bad id\twith spaces" and len(resp.headers["X-Request-Id"]) == 32
    resp = await client.get("/nowhere")
    await assert_error(resp, 404, contains="no such endpoint")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"stuff": {"pathKey": "https://x.org/a.mp3"}}, "orderType is required"),
        (order_body(order_type=7), "orderType must be a string"),
        (order_body(order_type="karaoke"), "orderType must be one of: track-separation, extract-voice"),
        ({"orderType": "extract-text"}, "pathKey is required"),
        ({"orderType": "extract-text", "stuff": "https://x.org/a.mp3"}, "stuff must be an object"),
        ({"orderType": "extract-text", "stuff": {}}, "pathKey is required"),
        (order_body(path_key=""), "pathKey is required"),
        (order_body(path_key=["https://x.org"]), "stuff.pathKey must be a string"),
        (order_body(path_key="ftp://x.org/a.mp3"), "stuff.pathKey must be an http or https URL"),
        (order_body(path_key="not a url"), "stuff.pathKey must be an http or https URL"),
        ({**order_body(), "colour": "red"}, "unknown field: colour"),
        (
            {"orderType": "extract-text", "stuff": {"pathKey": "https://x.org/a", "lang": "en"}},
            "unknown field: stuff.lang",
        ),
    ],
)
async def test_invalid_fields_are_named(
    client: TestClient, account: Account, body: Any, message: str
) -> None:
    resp = await client.post(CREATE, json=body, headers=account.headers)
    await assert_error(resp, 400, contains=message)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{bad json", "malformed JSON"),
        (b"", "request body is empty"),
        (b"[1, 2]", "must be a JSON object, not list"),
        (b'"text"', "must be a JSON object, not str"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
async def test_malformed_bodies(client: TestClient, account: Account, raw: bytes, message: str) -> None:
    headers = {**account.headers, "Content-Type": "application/json"}
    await assert_error(await client.post(CREATE, data=raw, headers=headers), 400, contains=message)


async def test_wrong_content_type_is_415(client: TestClient, account: Account) -> None:
    headers = {**account.headers, "Content-Type": "text/plain"}
    resp = await client.post(CREATE, data=json.dumps(order_body()), headers=headers)
    await assert_error(resp, 415, contains="application/json")
    # A real form is refused too; only a JSON object labelled as a form (curl -d's default) is taken.
    headers = {**account.headers, "Content-Type": "application/x-www-form-urlencoded"}
    resp = await client.post(CREATE, data="orderType=extract-text", headers=headers)
    await assert_error(resp, 415, contains="application/json")


async def test_json_sent_as_curls_default_form_type_is_accepted(client: TestClient, account: Account) -> None:
    headers = {**account.headers, "Content-Type": "application/x-www-form-urlencoded"}
    resp = await client.post(CREATE, data=json.dumps(order_body()), headers=headers)
    assert resp.status == 200, await resp.text()


async def test_huge_body_is_413(client: TestClient, account: Account) -> None:
    body = order_body(path_key="https://x.org/" + "a" * 200_000)
    await assert_error(
        await client.post(CREATE, json=body, headers=account.headers), 413, "request body too large"
    )


async def test_wrong_method_is_405_in_envelope(client: TestClient) -> None:
    resp = await client.get(CREATE)
    await assert_error(resp, 405, "method not allowed")
    assert "POST" in resp.headers["Allow"]


async def test_short_balance_creates_nothing(client: TestClient) -> None:
    db = client.app[DB]
    poor = await add_account(db, points=9)  # separation costs 10 per started minute
    resp = await client.post(CREATE, json=order_body(), headers=poor.headers)
    await assert_error(resp, 402, "ErrorCode.USER_BLANCE_NOT_ENOUGH")
    assert await db.unfinished_orders() == []
    # extract-text costs 5 a minute, so the same balance may order it
    resp = await client.post(CREATE, json=order_body(order_type="extract-text"), headers=poor.headers)
    assert resp.status == 200


async def test_query_validation_and_ownership(client: TestClient, account: Account) -> None:
    await assert_error(await client.get(QUERY, headers=account.headers), 400, "orderNo is required")
    await assert_error(
        await client.get(QUERY, params={"orderNo": "nope"}, headers=account.headers), 404, "Order not found"
    )
    resp = await client.post(CREATE, json=order_body(), headers=account.headers)
    order_no = (await resp.json())["data"]["orderNo"]
    stranger = await add_account(client.app[DB])
    resp = await client.get(QUERY, params={"orderNo": order_no}, headers=stranger.headers)
    await assert_error(resp, 404, "Order not found")


async def test_health_and_openapi(client: TestClient) -> None:
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 200 and body["data"]["status"] == "ok" and body["data"]["queue"] == "embedded"
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    routes = {
        r.resource.canonical
        for r in client.app.router.routes()
        if r.resource is not None and not is_page(r.resource.canonical)
    }
    documented = {path.replace("{orderNo}", "{order_no}") for path in doc["paths"]}
    assert routes == documented
    create_codes = set(doc["paths"][CREATE]["post"]["responses"])
    assert {"200", "400", "401", "402", "413", "415", "500"} <= create_codes
