"""arq mode against the real Redis: the API enqueues, a worker (the same code `yinzi worker` runs) processes."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from arq.connections import RedisSettings, create_pool

from tests.conftest import add_account, create_order
from tests.support.processes import free_port
from yinzi.appkeys import DB
from yinzi.settings import Settings


async def test_order_flows_through_redis_to_a_worker(
    make_client: Callable[[Settings], Any],
    arq_settings: Settings,
    run_worker: Callable[[Settings], Any],
    media_url: Callable[[str], str],
) -> None:
    client = await make_client(arq_settings)
    db = client.app[DB]
    account = await add_account(db)
    order_no = await create_order(client, account, media_url("/m/tone.wav"), "extract-voice")
    assert (await db.order(order_no)).status == "pending"  # type: ignore[union-attr]

    worker = await run_worker(arq_settings)
    assert worker.jobs_complete == 1 and worker.jobs_failed == 0
    resp = await client.get("/api/open/v1/order/query", params={"orderNo": order_no}, headers=account.headers)
    data = (await resp.json())["data"]
    assert data["status"] == "finish" and data["balance"] == 990 and len(data["stuffs"]) == 2
    health = await (await client.get("/healthz")).json()
    assert health["data"]["queue"] == "arq"


async def test_orders_the_queue_lost_are_enqueued_again(
    make_client: Callable[[Settings], Any],
    arq_settings: Settings,
    run_worker: Callable[[Settings], Any],
    media_url: Callable[[str], str],
) -> None:
    client = await make_client(arq_settings)
    db = client.app[DB]
    account = await add_account(db)
    order_no = await create_order(client, account, media_url("/m/tone.wav"))
    # Redis forgets the job (say, a restart without persistence)...
    redis = await create_pool(RedisSettings.from_dsn(arq_settings.redis_url or ""))
    assert await redis.delete(arq_settings.queue_name, f"arq:job:{order_no}") == 2
    await redis.aclose()
    # ...and the worker's start-up finds the order in the database and runs it.
    worker = await run_worker(arq_settings)
    assert worker.jobs_complete == 1
    assert (await db.order(order_no)).status == "finish"  # type: ignore[union-attr]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis of this test's own, so the test can stop it without disturbing anything else."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.kill()
    proc.wait()


async def test_redis_down_gives_503_and_leaves_no_order_behind(
    make_client: Callable[[Settings], Any],
    settings: Settings,
    private_redis: tuple[str, subprocess.Popen[bytes]],
    media_url: Callable[[str], str],
) -> None:
    url, redis_proc = private_redis
    client = await make_client(settings.replace(redis_url=url))
    db = client.app[DB]
    account = await add_account(db)
    redis_proc.kill()
    redis_proc.wait()
    resp = await client.post(
        "/api/open/v1/order/create",
        json={"orderType": "extract-text", "stuff": {"pathKey": media_url("/m/tone.wav")}},
        headers=account.headers,
    )
    body = await resp.json()
    assert resp.status == 503 and body == {
        "code": 503,
        "data": None,
        "msg": "the job queue is unavailable right now; please retry shortly",
    }
    # nothing is left pending for a job that will never come; the attempt is on record, free
    assert await db.unfinished_orders() == []
    assert await db.balance(account.user_id) == 1000
