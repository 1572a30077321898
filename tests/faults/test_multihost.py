"""The production shape on one machine: one `yinzi serve` and two `yinzi worker` processes, each with its own
empty data directory, sharing only PostgreSQL, Redis and the S3 stand-in, as if each ran on its own host.

Every order type finishes (tiny random models, real engines); an upload goes up through the API and down to a
worker through the store; a worker SIGKILLed mid-job leaves its order to the other; 100 concurrent first
queries on a finished order charge it once; and no process writes a file outside the store but its scratch,
which is empty when it is idle.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import PATIENCE, REPO, S3_REGION, S3Server, add_account, wait_for_order
from tests.faults.conftest import assert_books_balance
from tests.support.models import DEMUCS_NAME, WHISPER_NAME
from tests.support.processes import alive, children_of, free_port, stop
from yinzi.store import Database

pytestmark = pytest.mark.slow

# arq hands a dead worker's job to another once its in-progress mark expires: this + 15 s after it started.
JOB_TIMEOUT_S = 30
CONCURRENT_QUERIES = 100
# prometheus-client's live counters of each running process (yinzi/multiproc.py): runtime state, not data.
METRICS = "metrics/"
TEXT_OPTIONS = {"vad": False, "beamSize": 1}  # a random Whisper hears no speech in a tone: decode it all


@pytest.fixture
def backend() -> str:
    return "postgresql"  # the shared database of the production shape


class Hosts:
    """Processes that stand for separate machines: each its own data directory and log."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.env['YINZI_PORT']}"

    def data_dir(self, name: str) -> Path:
        return self.root / name

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def start(self, name: str, command: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "YINZI_DATA_DIR": str(self.data_dir(name))}
        with (self.root / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "yinzi", command],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        for proc in self.procs.values():
            stop(proc)

    def files(self, name: str) -> list[str]:
        root = self.data_dir(name)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def hosts(
    tmp_path: Path,
    s3_server: S3Server,
    database_url: str | None,
    redis_url: str,
    queue_name: str,
    model_dir: Path,
) -> Iterator[Hosts]:
    assert database_url is not None
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "YINZI_PORT": str(free_port()),
        "YINZI_DATABASE_URL": database_url,
        "YINZI_REDIS_URL": redis_url,
        "YINZI_QUEUE_NAME": queue_name,
        "YINZI_STORAGE_URL": s3_server.fresh_url(),
        "YINZI_S3_ENDPOINT_URL": s3_server.endpoint,
        "YINZI_S3_REGION": S3_REGION,
        "YINZI_SECRET_KEY": "multi-host-test",
        "YINZI_FETCH_ALLOW": "127.0.0.1/32",
        "YINZI_MODEL_DIR": str(model_dir),  # installed software, read only: not data
        "YINZI_DEMUCS_MODEL": DEMUCS_NAME,
        "YINZI_WHISPER_MODEL": WHISPER_NAME,
        "YINZI_WHISPER_ENGINE": "openai-whisper",
        "YINZI_JOB_TIMEOUT": str(JOB_TIMEOUT_S),
    }
    found = Hosts(tmp_path, env)
    yield found
    found.stop_all()


async def wait_healthy(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            async with http.get(f"{base}/healthz") as resp:
                if resp.status == 200:
                    data: dict[str, Any] = (await resp.json())["data"]
                    return data
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "the API did not start"
        await asyncio.sleep(0.1)


async def create(http: aiohttp.ClientSession, base: str, order_type: str, stuff: dict[str, Any]) -> str:
    async with http.post(
        f"{base}/api/open/v1/order/create", json={"orderType": order_type, "stuff": stuff}
    ) as r:
        body = await r.json()
        assert r.status == 200, body
        order_no: str = body["data"]["orderNo"]
        return order_no


async def upload(http: aiohttp.ClientSession, base: str, data: bytes, name: str) -> str:
    """Through the API's resumable upload: in two ranges, then completed with its hash."""
    session = {"fileName": name, "mimeType": "audio/mpeg", "sizeBytes": len(data)}
    async with http.post(f"{base}/api/open/v1/uploads", json=session) as r:
        opened = (await r.json())["data"]
    half = len(data) // 2
    for first, last in ((0, half - 1), (half, len(data) - 1)):
        headers = {"Content-Range": f"bytes {first}-{last}/{len(data)}"}
        async with http.put(opened["uploadUrl"], data=data[first : last + 1], headers=headers) as r:
            assert r.status == 200, await r.text()
    done = {"sha256": hashlib.sha256(data).hexdigest()}
    async with http.post(f"{base}/api/open/v1/uploads/{opened['uploadId']}/complete", json=done) as r:
        assert r.status == 200, await r.text()
    upload_id: str = opened["uploadId"]
    return upload_id


async def test_api_and_workers_share_nothing_but_the_services(
    hosts: Hosts, media_url: Callable[[str], str], media_dir: Path, s3_server: S3Server
) -> None:
    started = time.monotonic()
    db = await Database.open(hosts.env["YINZI_DATABASE_URL"])
    try:
        account = await add_account(db, points=100_000)
        hosts.start("api", "serve")
        workers = {name: hosts.start(name, "worker") for name in ("worker-a", "worker-b")}
        base = hosts.base
        async with aiohttp.ClientSession(headers=account.headers) as http:
            health = await wait_healthy(http, base)
            assert health["storage"]["kind"] == "s3" and health["storage"]["ok"], health

            # An order of each type, and one on an upload, which reaches its worker through the store.
            orders = {
                "track-separation": await create(
                    http, base, "track-separation", {"pathKey": media_url("/m/tone.wav")}
                ),
                "extract-voice": await create(
                    http, base, "extract-voice", {"pathKey": media_url("/m/whole.mp3")}
                ),
                "extract-music": await create(
                    http, base, "extract-music", {"pathKey": media_url("/m/whole.mp3")}
                ),
                "extract-text": await create(
                    http, base, "extract-text", {"pathKey": media_url("/m/tone.wav"), **TEXT_OPTIONS}
                ),
            }
            victim_input = (media_dir / "long.mp3").read_bytes()
            victim_upload = await upload(http, base, victim_input, "long.mp3")
            for order_type, order_no in orders.items():
                order = await wait_for_order(db, order_no)
                assert order.status == "finish", (order_type, order.reason)
            assert all(proc.poll() is None for proc in workers.values())

            # A worker dies mid-job; the other finishes the order once arq gives the job up for lost.
            victim = await create(http, base, "track-separation", {"uploadId": victim_upload})
            await wait_for_order(db, victim, lambda o: o.status == "processing" and o.progress >= 5)
            [holder] = [name for name in workers if f"order:{victim}" in hosts.log(name)]
            deadline = time.monotonic() + PATIENCE
            while not children_of(workers[holder].pid):  # its engine process is at work
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            engines = children_of(workers[holder].pid)
            assert (await db.order(victim)).status == "processing"  # type: ignore[union-attr]
            workers[holder].send_signal(signal.SIGKILL)
            workers[holder].wait()
            killed_at = time.monotonic()
            while any(alive(pid) for pid in engines):
                assert time.monotonic() < deadline, "engine processes outlived their worker"
                await asyncio.sleep(0.05)

            # Meanwhile: 100 first queries at once on a finished, unpaid order charge it once.
            paid = orders["track-separation"]
            query = f"{base}/api/open/v1/order/query"

            async def first_query() -> dict[str, Any]:
                async with http.get(query, params={"orderNo": paid}) as r:
                    assert r.status == 200
                    data: dict[str, Any] = (await r.json())["data"]
                    return data

            answers = await asyncio.gather(*(first_query() for _ in range(CONCURRENT_QUERIES)))
            cost = (await db.order(paid)).cost  # type: ignore[union-attr]
            assert {(a["status"], a["payStatus"], a["balance"]) for a in answers} == {
                ("finish", "paid", 100_000 - cost)
            }
            charges = [row for row in await db.ledger(account.user_id) if row["kind"] == "order"]
            assert [(row["ref"], row["delta"]) for row in charges] == [(paid, -cost)]

            # Result URLs redirect to the store, from which anyone holding them downloads the file.
            stuff = answers[0]["stuffs"][0]
            async with aiohttp.ClientSession() as anyone, anyone.get(stuff["url"]) as r:
                assert r.status == 200 and r.url.host == "127.0.0.1" and "X-Amz-Signature" in r.url.query
                assert len(await r.read()) > 1000

            order = await wait_for_order(db, victim)
            assert order.status == "finish" and order.attempts == 2, order.reason
            survivor = next(name for name in workers if name != holder)
            assert f"order:{victim}" in hosts.log(survivor)
            recovered_after = time.monotonic() - killed_at

        # Idle now: every process's scratch is empty, and nothing else was written outside the store. The
        # killed worker left only scratch behind.
        for name in ("api", survivor):
            assert [f for f in hosts.files(name) if not f.startswith(METRICS)] == [], name
        assert all(f.startswith(("work/", METRICS)) for f in hosts.files(holder)), hosts.files(holder)
        stored = s3_server.keys(hosts.env["YINZI_STORAGE_URL"])
        assert f"uploads/{victim_upload}" in stored
        assert any(k.startswith(f"results/{victim}/") for k in stored)
        assert any(k.startswith("cache/stems/") for k in stored)
        assert s3_server.multipart_uploads(hosts.env["YINZI_STORAGE_URL"]) == []
        await assert_books_balance(db)
        print(
            f"multi-host: {time.monotonic() - started:.0f} s in all; killed job finished {recovered_after:.0f} s after"
        )
    finally:
        await db.close()
