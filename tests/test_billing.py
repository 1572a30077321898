"""Money is exact: one finished order is debited once, whatever runs at the same time or twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Account, add_account, create_order, wait_for_order
from yinzi.appkeys import DB, QUEUE
from yinzi.errors import InsufficientBalance
from yinzi.settings import Settings
from yinzi.store import Database, IntegrityError, ResultFile

CONCURRENT_QUERIES = 120


async def test_concurrent_first_queries_debit_once(
    client: TestClient, account: Account, media_url: Callable[[str], str]
) -> None:
    db = client.app[DB]
    order_no = await create_order(client, account, media_url("/m/tone.wav"), "track-separation")
    await wait_for_order(db, order_no)

    async def first_query() -> tuple[int, int]:
        resp = await client.get(
            "/api/open/v1/order/query", params={"orderNo": order_no}, headers=account.headers
        )
        body = await resp.json()
        return resp.status, body["data"]["balance"]

    answers = await asyncio.gather(*(first_query() for _ in range(CONCURRENT_QUERIES)))
    assert {status for status, _ in answers} == {200}
    assert {balance for _, balance in answers} == {990}
    assert await db.balance(account.user_id) == 990
    charges = [row for row in await db.ledger(account.user_id) if row["kind"] == "order"]
    assert len(charges) == 1 and charges[0]["delta"] == -10


async def finished_order(db: Database, user_id: int, cost: int) -> str:
    order_no = f"order{cost:013d}"
    assert await db.create_order(
        order_no, user_id, "extract-text", {"pathKey": "https://example.com/a.wav"}, min_balance=0
    )
    assert await db.claim_order(order_no) is not None
    assert await db.finish_order(order_no, cost, 1.0, [ResultFile("a.txt", "text")])
    return order_no


async def test_charges_from_separate_connections_race_safely(settings: Settings) -> None:
    """Several Database objects on one database behave like several API processes."""
    dbs = [await Database.open(settings.database) for _ in range(4)]
    try:
        user = await dbs[0].create_user("racer", 100)
        order_no = await finished_order(dbs[0], user.id, 30)
        await asyncio.gather(*(db.charge_order(order_no, user.id) for db in dbs for _ in range(10)))
        assert await dbs[0].balance(user.id) == 70
        ledger = await dbs[1].ledger(user.id)
        assert [row["delta"] for row in ledger] == [100, -30]
    finally:
        for db in dbs:
            await db.close()


async def test_short_charge_changes_nothing(settings: Settings) -> None:
    db = await Database.open(settings.database)
    try:
        user = await db.create_user("short", 5)
        order_no = await finished_order(db, user.id, 6)
        with pytest.raises(InsufficientBalance):
            await db.charge_order(order_no, user.id)
        order = await db.order(order_no)
        assert order is not None and order.pay_status == "waiting"
        assert await db.balance(user.id) == 5 and len(await db.ledger(user.id)) == 1
    finally:
        await db.close()


async def test_ledger_is_the_balance_and_unique_per_order(settings: Settings) -> None:
    db = await Database.open(settings.database)
    try:
        user = await db.create_user("sum", 50)
        await db.grant_points(user.id, 25, "bonus")
        await db.grant_points(user.id, -5, "correction")
        order_no = await finished_order(db, user.id, 20)
        await db.charge_order(order_no, user.id)
        await db.charge_order(order_no, user.id)
        assert sum(row["delta"] for row in await db.ledger(user.id)) == await db.balance(user.id) == 50
        with pytest.raises(InsufficientBalance):
            await db.grant_points(user.id, -51)
        # The database itself refuses a second charge row for one order and a negative balance.
        with pytest.raises(IntegrityError):
            await db._backend.write(
                "INSERT INTO ledger (user_id, delta, balance_after, kind, ref, created_at) VALUES (?, -1, 0, 'order', ?, 0)",
                (user.id, order_no),
            )
        with pytest.raises(IntegrityError):
            await db._backend.write("UPDATE users SET balance = -1 WHERE id = ?", (user.id,))
    finally:
        await db.close()


async def test_job_run_twice_changes_nothing(
    client: TestClient, account: Account, media_url: Callable[[str], str]
) -> None:
    db = client.app[DB]
    order_no = await create_order(client, account, media_url("/m/tone.wav"))
    first = await wait_for_order(db, order_no)
    await client.app[QUEUE].enqueue(order_no)  # a duplicate delivery
    await asyncio.sleep(0.5)
    again = await db.order(order_no)
    assert again == first and again.attempts == 1


async def test_failed_orders_never_charge(client: TestClient, media_url: Callable[[str], str]) -> None:
    db = client.app[DB]
    account = await add_account(db, points=10)
    order_no = await create_order(client, account, media_url("/m/notes.mp3"))
    assert (await wait_for_order(db, order_no)).status == "failed"
    for _ in range(3):
        resp = await client.get(
            "/api/open/v1/order/query", params={"orderNo": order_no}, headers=account.headers
        )
        assert (await resp.json())["data"]["balance"] == 10
    assert len(await db.ledger(account.user_id)) == 1
