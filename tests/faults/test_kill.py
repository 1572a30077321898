"""SIGKILL a process mid-job or mid-request, start it again: nothing is lost and nothing is charged twice.

These run the real `yinzi serve` and `yinzi worker` commands as separate processes.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import PATIENCE, add_account, wait_for_order
from tests.faults.conftest import Processes, assert_books_balance, open_database
from tests.support.models import DEMUCS_NAME, WHISPER_NAME
from tests.support.processes import alive, children_of


async def crash_mid_job(
    processes: Processes,
    media_url: Callable[[str], str],
    victim: str,
    order_type: str,
    media: str,
    options: dict[str, Any] | None = None,
) -> None:
    env = processes.env
    db = await open_database(env)
    try:
        account = await add_account(db)
        server = processes.start("serve")
        worker = processes.start("worker") if victim == "worker" else None
        await processes.wait_healthy()

        async with aiohttp.ClientSession(processes.base, headers=account.headers) as http:
            body = {"orderType": order_type, "stuff": {"pathKey": media_url(media), **(options or {})}}
            async with http.post("/api/open/v1/order/create", json=body) as resp:
                assert resp.status == 200, await resp.text()
                order_no = (await resp.json())["data"]["orderNo"]

            # Wait until the engine has the input, give it a moment into the work, then kill its parent.
            await wait_for_order(db, order_no, lambda o: o.status == "processing" and o.progress >= 5)
            target = worker if worker is not None else server
            await asyncio.sleep(0.5)
            engine_processes = children_of(target.pid)
            assert engine_processes, "the engine should run in a child process"
            assert (await db.order(order_no)).status == "processing"  # type: ignore[union-attr]
            target.send_signal(signal.SIGKILL)
            target.wait()
            deadline = time.monotonic() + PATIENCE
            while any(alive(pid) for pid in engine_processes) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not any(alive(pid) for pid in engine_processes), "engine processes outlived their parent"
            assert (await db.order(order_no)).status == "processing"  # type: ignore[union-attr]

            processes.start(victim)
            if victim == "serve":
                await processes.wait_healthy()
            order = await wait_for_order(db, order_no)
            assert order.status == "finish", order.reason
            assert order.attempts == 2

            balances = []
            for _ in range(3):
                async with http.get("/api/open/v1/order/query", params={"orderNo": order_no}) as resp:
                    data = (await resp.json())["data"]
                    assert resp.status == 200 and data["status"] == "finish" and data["payStatus"] == "paid"
                    balances.append(data["balance"])
        assert balances == [1000 - order.cost] * 3
        charges = [row for row in await db.ledger(account.user_id) if row["kind"] == "order"]
        assert [(row["ref"], row["delta"]) for row in charges] == [(order_no, -order.cost)]
        await assert_books_balance(db)
    finally:
        await db.close()


async def test_api_process_killed_mid_job_resumes_on_restart(
    processes: Processes, media_url: Callable[[str], str]
) -> None:
    processes.env["YINZI_TEST_ENGINE_SECONDS"] = "3"
    await crash_mid_job(processes, media_url, "serve", "extract-text", "/m/tone.wav")


async def test_arq_worker_killed_mid_job_is_retried_by_a_new_worker(
    processes: Processes, media_url: Callable[[str], str], redis_url: str, queue_name: str
) -> None:
    processes.env.update(
        YINZI_REDIS_URL=redis_url, YINZI_QUEUE_NAME=queue_name, YINZI_TEST_ENGINE_SECONDS="3"
    )
    await crash_mid_job(processes, media_url, "worker", "extract-text", "/m/tone.wav")


# One database: recovery and charging are the same code on both, shown by the test above on each; this one is
# about the real engines, and each run waits out arq's job timeout.
@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("order_type", ["track-separation", "extract-text"])
async def test_arq_worker_killed_mid_separation_or_transcription(
    processes: Processes,
    media_url: Callable[[str], str],
    redis_url: str,
    queue_name: str,
    model_dir: Path,
    order_type: str,
) -> None:
    """The real Demucs and Whisper code (tiny models) on a 65 s input, killed while it computes."""
    del processes.env["YINZI_ENGINES"]
    processes.env.update(
        YINZI_JOB_TIMEOUT="60",  # room for a fresh worker to load the model and work 65 s on a busy machine
        YINZI_REDIS_URL=redis_url,
        YINZI_QUEUE_NAME=queue_name,
        YINZI_MODEL_DIR=str(model_dir),
        YINZI_DEMUCS_MODEL=DEMUCS_NAME,
        YINZI_WHISPER_MODEL=WHISPER_NAME,
        YINZI_WHISPER_ENGINE="openai-whisper",
    )
    # Voice activity detection would find no speech in the tone and skip it: the random model decodes it all.
    options = {"vad": False, "beamSize": 1} if order_type == "extract-text" else None
    await crash_mid_job(processes, media_url, "worker", order_type, "/m/long.mp3", options)


async def test_api_killed_while_orders_are_created_loses_none(
    processes: Processes, media_url: Callable[[str], str]
) -> None:
    """Every order that got a 200 exists afterwards, exactly once, and finishes after the restart."""
    db = await open_database(processes.env)
    try:
        account = await add_account(db, points=10**6)
        server = processes.start("serve")
        await processes.wait_healthy()
        accepted: list[str] = []

        async def client(http: aiohttp.ClientSession) -> None:
            body = {"orderType": "extract-text", "stuff": {"pathKey": media_url("/m/tone.wav")}}
            while True:
                try:
                    async with http.post("/api/open/v1/order/create", json=body) as resp:
                        if resp.status != 200:
                            continue
                        accepted.append((await resp.json())["data"]["orderNo"])
                except aiohttp.ClientError:
                    return  # the server is gone

        async with aiohttp.ClientSession(processes.base, headers=account.headers) as http:
            clients = [asyncio.create_task(client(http)) for _ in range(8)]
            while len(accepted) < 60:  # mid-stream, with a backlog small enough to finish quickly
                await asyncio.sleep(0.01)
            server.send_signal(signal.SIGKILL)
            server.wait()
            await asyncio.wait_for(asyncio.gather(*clients), 10)

        processes.start("serve")
        await processes.wait_healthy()
        rows = await db._all("SELECT order_no FROM orders")
        stored = [row["order_no"] for row in rows]
        assert len(stored) == len(set(stored)) and set(accepted) <= set(stored)
        for order_no in stored:
            assert (await wait_for_order(db, order_no)).status == "finish"
        async with aiohttp.ClientSession(processes.base, headers=account.headers) as http:
            for order_no in stored:
                async with http.get("/api/open/v1/order/query", params={"orderNo": order_no}) as resp:
                    assert resp.status == 200
        await assert_books_balance(db)
        paid = await db._all("SELECT count(*) AS n FROM orders WHERE pay_status = 'paid'")
        assert paid[0]["n"] == len(stored)
    finally:
        await db.close()
