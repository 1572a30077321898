"""SIGKILL a process mid-job, start it again: the order finishes and is charged once, in both queue modes.

These run the real `yinzi serve` and `yinzi worker` commands as separate processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import COPY_ENGINE, REPO, add_account, wait_for_order
from tests.support.processes import alive, children_of, free_port
from yinzi.db import Database

pytestmark = pytest.mark.slow

ENGINE_SECONDS = "3"
JOB_TIMEOUT = "10"  # arq retries a dead worker's job after this + ~15 s


class Processes:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{args[0]}-{len(self.running)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "yinzi", *args],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def processes(tmp_path: Path, media_url: Callable[[str], str]) -> Iterator[Processes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "YINZI_DATA_DIR": str(tmp_path / "data"),
        "YINZI_PORT": str(free_port()),
        "YINZI_FETCH_ALLOW": "127.0.0.1/32",
        "YINZI_ENGINES": f"extract-text={COPY_ENGINE}",
        "YINZI_SECRET_KEY": "crash-test",
        "YINZI_TEST_ENGINE_SECONDS": ENGINE_SECONDS,
        "YINZI_JOB_TIMEOUT": JOB_TIMEOUT,
    }
    procs = Processes(env, tmp_path)
    yield procs
    procs.stop_all()


async def wait_healthy(base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{base} did not become healthy")
            await asyncio.sleep(0.1)


async def run_crash_scenario(processes: Processes, media_url: Callable[[str], str], victim: str) -> None:
    env = processes.env
    db = await Database.open(Path(env["YINZI_DATA_DIR"]) / "yinzi.db")
    try:
        account = await add_account(db)
        base = f"http://127.0.0.1:{env['YINZI_PORT']}"
        server = processes.start("serve")
        worker = processes.start("worker") if victim == "worker" else None
        await wait_healthy(base)

        async with aiohttp.ClientSession(base, headers=account.headers) as http:
            body = {"orderType": "extract-text", "stuff": {"pathKey": media_url("/m/tone.wav")}}
            async with http.post("/api/open/v1/order/create", json=body) as resp:
                assert resp.status == 200, await resp.text()
                order_no = (await resp.json())["data"]["orderNo"]

            # Wait until the engine is mid-job, then kill the process running it.
            await wait_for_order(db, order_no, lambda o: o.status == "processing" and o.progress > 5)
            target = worker if worker is not None else server
            engine_processes = children_of(target.pid)
            assert engine_processes, "the engine should run in a child process"
            target.send_signal(signal.SIGKILL)
            target.wait()
            deadline = time.monotonic() + 10
            while any(alive(pid) for pid in engine_processes) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not any(alive(pid) for pid in engine_processes), "engine processes outlived their parent"
            assert (await db.order(order_no)).status == "processing"  # type: ignore[union-attr]

            processes.start(victim)
            if victim == "serve":
                await wait_healthy(base)
            order = await wait_for_order(db, order_no, timeout=60)
            assert order.status == "finish", order.reason
            assert order.attempts == 2

            balances = []
            for _ in range(3):
                async with http.get("/api/open/v1/order/query", params={"orderNo": order_no}) as resp:
                    data = (await resp.json())["data"]
                    assert resp.status == 200 and data["status"] == "finish" and data["payStatus"] == "paid"
                    balances.append(data["balance"])
        assert balances == [995, 995, 995]
        charges = [row for row in await db.ledger(account.user_id) if row["kind"] == "order"]
        assert [(row["ref"], row["delta"]) for row in charges] == [(order_no, -5)]
    finally:
        await db.close()


async def test_api_process_killed_mid_job_resumes_on_restart(
    processes: Processes, media_url: Callable[[str], str]
) -> None:
    await run_crash_scenario(processes, media_url, "serve")


async def test_arq_worker_killed_mid_job_is_retried_by_a_new_worker(
    processes: Processes, media_url: Callable[[str], str], redis_url: str, queue_name: str
) -> None:
    processes.env.update(YINZI_REDIS_URL=redis_url, YINZI_QUEUE_NAME=queue_name)
    await run_crash_scenario(processes, media_url, "worker")
