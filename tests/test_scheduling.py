"""Priority (lightning before queue, in both queue modes), the per-user cap on running orders, idempotent
create, and retention of results."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Account, add_account, wait_for_order, wait_until
from yinzi.appkeys import DB, SETTINGS
from yinzi.settings import Settings
from yinzi.store import Database, Order

CREATE = "/api/open/v1/order/create"


async def create(
    client: TestClient, account: Account, path_key: str, headers: dict[str, str] | None = None, **fields: Any
) -> tuple[int, dict[str, Any]]:
    body = {"orderType": "extract-text", "stuff": {"pathKey": path_key}, **fields}
    resp = await client.post(CREATE, json=body, headers={**account.headers, **(headers or {})})
    return resp.status, await resp.json()


async def create_ok(client: TestClient, account: Account, path_key: str, **fields: Any) -> str:
    status, body = await create(client, account, path_key, **fields)
    assert status == 200, body
    order_no: str = body["data"]["orderNo"]
    return order_no


async def started_at(db: Database, order_no: str) -> float:
    rows = await db._all("SELECT started_at FROM orders WHERE order_no = ?", (order_no,))
    return float(rows[0]["started_at"])


async def test_lightning_starts_before_queued_orders_embedded(
    make_client: Callable[[Settings], Any],
    settings: Settings,
    media_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YINZI_TEST_ENGINE_SECONDS", "0.5")
    client = await make_client(settings.replace(worker_concurrency=1))
    account = await add_account(client.app[DB])
    url = media_url("/m/tone.wav")
    blocker = await create_ok(client, account, url)  # occupies the one worker
    queued = [await create_ok(client, account, url) for _ in range(2)]
    lightning = await create_ok(client, account, url, priority="lightning")
    db = client.app[DB]
    for order_no in (blocker, *queued, lightning):
        assert (await wait_for_order(db, order_no)).status == "finish"
    assert await started_at(db, lightning) < min([await started_at(db, q) for q in queued])
    lightning_order = await db.order(lightning)
    assert lightning_order is not None and lightning_order.cost == 2 * 5  # one minute at twice the price


async def test_lightning_starts_first_in_arq(
    make_client: Callable[[Settings], Any],
    arq_settings: Settings,
    run_worker: Callable[[Settings], Any],
    media_url: Callable[[str], str],
) -> None:
    settings = arq_settings.replace(worker_concurrency=1)
    client = await make_client(settings)
    account = await add_account(client.app[DB])
    url = media_url("/m/tone.wav")
    queued = [await create_ok(client, account, url) for _ in range(2)]
    lightning = await create_ok(client, account, url, priority="lightning")
    await run_worker(settings)  # burst: runs the queue dry, one job at a time
    db = client.app[DB]
    assert await started_at(db, lightning) < min([await started_at(db, q) for q in queued])


async def test_running_cap_holds_orders_back_and_loses_none(
    make_client: Callable[[Settings], Any],
    settings: Settings,
    media_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YINZI_TEST_ENGINE_SECONDS", "0.3")
    client = await make_client(settings.replace(max_running_per_user=1, worker_concurrency=3))
    db = client.app[DB]
    busy, other = await add_account(db), await add_account(db)
    url = media_url("/m/tone.wav")
    mine = [await create_ok(client, busy, url) for _ in range(3)]
    theirs = await create_ok(client, other, url)
    most_running = 0
    while True:
        orders = await db.orders_of(busy.user_id, len(mine))  # one statement: one moment, not three
        assert sorted(o.order_no for o in orders) == sorted(mine)
        most_running = max(most_running, sum(o.status == "processing" for o in orders))
        if all(o.terminal for o in orders):
            break
        await asyncio.sleep(0.02)
    assert most_running == 1
    assert [o.status for o in orders] == ["finish"] * 3
    assert (await wait_for_order(db, theirs)).status == "finish"  # another user is not held up by the cap


async def test_idempotent_create(
    client: TestClient, account: Account, media_url: Callable[[str], str]
) -> None:
    url = media_url("/m/tone.wav")
    key = {"Idempotency-Key": "invoice-42"}
    first_status, first = await create(client, account, url, key)
    again_status, again = await create(client, account, url, key)
    assert first_status == again_status == 200 and first == again
    rows = await client.app[DB]._all("SELECT count(*) AS n FROM orders WHERE user_id = ?", (account.user_id,))
    assert rows[0]["n"] == 1
    status, body = await create(client, account, media_url("/m/long.mp3"), key)
    assert (status, body["msg"]) == (
        422,
        "Idempotency-Key 'invoice-42' was already used with a different request body",
    )
    # Another user's identical key is theirs alone.
    other = await add_account(client.app[DB])
    status, body = await create(client, other, url, key)
    assert status == 200 and body["data"]["orderNo"] != first["data"]["orderNo"]


async def test_idempotent_create_while_the_first_is_running(
    client: TestClient, account: Account, media_url: Callable[[str], str]
) -> None:
    results = await asyncio.gather(
        *(create(client, account, media_url("/m/tone.wav"), {"Idempotency-Key": "k1"}) for _ in range(8))
    )
    statuses = sorted(status for status, _ in results)
    created = {body["data"]["orderNo"] for status, body in results if status == 200}
    assert len(created) == 1 and set(statuses) <= {200, 409}
    for status, body in results:
        if status == 409:
            assert body["msg"].startswith(
                "the first request with Idempotency-Key 'k1' is still being handled"
            )


async def test_idempotent_replay_of_a_refusal(client: TestClient, media_url: Callable[[str], str]) -> None:
    poor = await add_account(client.app[DB], points=0)
    key = {"Idempotency-Key": "k2"}
    assert (await create(client, poor, media_url("/m/tone.wav"), key))[0] == 402
    await client.app[DB].grant_points(poor.user_id, 100)
    assert (await create(client, poor, media_url("/m/tone.wav"), key))[0] == 402  # the first answer stands
    assert (await create(client, poor, media_url("/m/tone.wav"), {"Idempotency-Key": "k3"}))[0] == 200


async def test_results_expire_and_unpaid_orders_are_never_charged(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(settings.replace(result_retention=0, sweep_interval=0.02))
    db = client.app[DB]
    account = await add_account(db)
    order_no = await create_ok(client, account, media_url("/m/tone.wav"))
    order: Order = await wait_for_order(db, order_no, lambda o: o.expired)
    assert order.status == "finish" and order.reason == "results expired"
    await wait_until(
        lambda: not (client.app[SETTINGS].results_dir / order_no).exists(), "expired results deleted"
    )
    resp = await client.get("/api/open/v1/order/query", params={"orderNo": order_no}, headers=account.headers)
    data = (await resp.json())["data"]
    assert (data["status"], data["stuffs"], data["reason"], data["cost"]) == (
        "finish",
        [],
        "results expired",
        0,
    )
    assert data["payStatus"] == "waiting" and data["balance"] == 1000
    assert [row["kind"] for row in await db.ledger(account.user_id)] == ["grant"]
