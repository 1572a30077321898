"""Redis stops for 30 s while orders flow, then comes back empty (no persistence: the worst case).

Creates during the outage either succeed or get a clear 503; every accepted order finishes once Redis is back:
the worker starts itself again, and its sweeper puts back the jobs Redis forgot.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable

import aiohttp
import pytest

from tests.conftest import add_account, wait_for_order
from tests.faults.conftest import Processes, assert_books_balance, open_database
from tests.support.processes import free_port


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject here is Redis going away, not the database


OUTAGE_SECONDS = 30


def start_redis(processes: Processes, port: int) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: apt-get install -y redis-server")
    return processes.start(server, "--port", str(port), "--save", "", "--appendonly", "no")


async def wait_redis(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError("redis-server did not start")


async def test_orders_survive_a_redis_outage(processes: Processes, media_url: Callable[[str], str]) -> None:
    port = free_port()
    processes.env.update(
        YINZI_REDIS_URL=f"redis://127.0.0.1:{port}/0",
        YINZI_REQUEUE_INTERVAL="2",
        YINZI_TEST_ENGINE_SECONDS="0.3",
    )
    redis = start_redis(processes, port)
    await wait_redis(port)
    db = await open_database(processes.env)
    try:
        account = await add_account(db, points=10**6)
        processes.start("serve")
        processes.start("worker")
        await processes.wait_healthy()
        accepted: list[str] = []
        refused: list[str] = []

        async def create(http: aiohttp.ClientSession) -> None:
            body = {"orderType": "extract-text", "stuff": {"pathKey": media_url("/m/tone.wav")}}
            async with http.post("/api/open/v1/order/create", json=body) as resp:
                answer = await resp.json()
                if resp.status == 200:
                    accepted.append(answer["data"]["orderNo"])
                else:
                    assert (resp.status, answer["data"]) == (503, None), answer
                    refused.append(answer["msg"])

        async with aiohttp.ClientSession(processes.base, headers=account.headers) as http:
            for _ in range(10):
                await create(http)
            redis.kill()
            redis.wait()
            loop = asyncio.get_running_loop()
            back_at = loop.time() + OUTAGE_SECONDS
            while loop.time() < back_at:
                await create(http)
                await asyncio.sleep(0.5)
            redis = start_redis(processes, port)
            await wait_redis(port)
            for _ in range(10):
                await create(http)
                await asyncio.sleep(0.1)

            assert refused and set(refused) == {
                "the job queue is unavailable right now; please retry shortly"
            }
            assert len(accepted) >= 20
            for order_no in accepted:
                order = await wait_for_order(db, order_no)
                assert order.status == "finish", (order_no, order.reason)
            for order_no in accepted:
                async with http.get("/api/open/v1/order/query", params={"orderNo": order_no}) as resp:
                    assert resp.status == 200 and (await resp.json())["data"]["payStatus"] == "paid"
        await assert_books_balance(db)
        # A refused create leaves no order waiting: it was ended at once, free.
        waiting = await db._all("SELECT count(*) AS n FROM orders WHERE status IN ('pending', 'processing')")
        assert waiting[0]["n"] == 0
    finally:
        await db.close()
