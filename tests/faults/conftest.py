"""Real `yinzi serve`, `yinzi worker` and `redis-server` processes, started, killed and started again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import COPY_ENGINE, REPO
from tests.support.processes import free_port, stop
from yinzi.store import TERMINAL, Database

pytestmark = pytest.mark.slow


class Processes:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.env['YINZI_PORT']}"

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """``yinzi <args>``, or any command when the first argument is a path."""
        command = list(args) if "/" in args[0] else [sys.executable, "-m", "yinzi", *args]
        with (self.logs / f"{Path(args[0]).name}-{len(self.running)}.log").open("wb") as log:
            proc = subprocess.Popen(command, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.running.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.running:
            stop(proc)

    async def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{self.base}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.base} did not become healthy")
                await asyncio.sleep(0.1)


@pytest.fixture
def processes(
    tmp_path: Path, media_url: Callable[[str], str], database_url: str | None
) -> Iterator[Processes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "YINZI_DATA_DIR": str(tmp_path / "data"),
        "YINZI_PORT": str(free_port()),
        "YINZI_FETCH_ALLOW": "127.0.0.1/32",
        "YINZI_ENGINES": f"extract-text={COPY_ENGINE}",
        "YINZI_SECRET_KEY": "fault-test",
        "YINZI_JOB_TIMEOUT": "10",  # arq retries a dead worker's job after this + ~15 s
    }
    if database_url is not None:
        env["YINZI_DATABASE_URL"] = database_url
    procs = Processes(env, tmp_path)
    yield procs
    procs.stop_all()


async def open_database(env: dict[str, str]) -> Database:
    """The database the processes started with ``env`` use."""
    return await Database.open(env.get("YINZI_DATABASE_URL") or Path(env["YINZI_DATA_DIR"]) / "yinzi.db")


async def assert_books_balance(db: Database) -> None:
    """Nothing lost, nothing charged twice: every order is finished or still on its way, every balance is
    the sum of its ledger, and each paid order has exactly one charge of its cost."""
    orders = await db._all("SELECT order_no, status, pay_status, cost FROM orders")
    assert all(o["status"] in (*TERMINAL, "pending", "processing") for o in orders)
    users = await db._all(
        "SELECT u.id, u.balance, coalesce(sum(l.delta), 0) AS total FROM users u "
        "LEFT JOIN ledger l ON l.user_id = u.id GROUP BY u.id"
    )
    assert all(u["balance"] == u["total"] for u in users), [dict(u) for u in users]
    charges = {
        row["ref"]: row["n"]
        for row in await db._all("SELECT ref, count(*) AS n FROM ledger WHERE kind = 'order' GROUP BY ref")
    }
    for o in orders:
        assert charges.get(o["order_no"], 0) == (1 if o["pay_status"] == "paid" else 0), dict(o)
