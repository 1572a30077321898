"""Soak: many orders created and followed to the end by concurrent clients, through real processes.

    python bench/soak.py --orders 10000 --clients 32 --mode embedded
    python bench/soak.py --orders 10000 --clients 32 --mode arq        (needs Redis on 127.0.0.1:6379)
    python bench/soak.py --orders 10000 --clients 32 --mode multihost  (Redis, PostgreSQL on 127.0.0.1:5432)

``multihost`` is the production shape: one API process and two workers, each with its own empty data
directory, sharing only PostgreSQL (a fresh schema), Redis and an S3 store (moto's server mode, in a process
of its own, standing in for it); the stem cache and the results travel through the store.

Each client creates an `extract-voice` order for a 1 s clip served by a local web server, queries it every
0.2 s until it ends (the first query after `finish` charges it), and starts the next. The engine is the real
Demucs code with a tiny random model; after the first order the stems come from the cache, so each job is a
download, a probe, a cache lookup and an MP3 encode. At the end the database is audited: every order
finished and was charged exactly once, and the balance equals the grant minus the charges. Memory is the
resident set of every yinzi process (API, worker, engine processes), sampled every 2 s: the figure after
warm-up (the first 10 % of orders) beside the one at the end (the S3 stand-in is not a yinzi process and
is left out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.models import DEMUCS_NAME, save_tiny_demucs  # noqa: E402
from tests.support.processes import children_of, free_port, wait_healthy  # noqa: E402
from tests.support.s3 import start_s3_server  # noqa: E402
from yinzi.accounts import create_key  # noqa: E402
from yinzi.multiproc import METRICS_DIR_NAME  # noqa: E402
from yinzi.store import Database  # noqa: E402

GRANT = 10**9
POLL_S = 0.2
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
S3_BUCKET = "yinzi-soak"
WORKERS = {"arq": 1, "multihost": 2}


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    import asyncpg

    schema = f"soak_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_SERVER)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_SERVER}?search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def soak(mode: str, orders: int, clients: int, data: Path) -> None:
    clip = data / "clip.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=1",
            "-ac",
            "2",
            str(clip),
        ],
        check=True,
    )
    models = data / "models"
    save_tiny_demucs(models)
    media = web.Application()
    media.router.add_static("/m", data)
    runner = web.AppRunner(media, access_log=None)
    await runner.setup()
    media_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", media_port).start()

    async with contextlib.AsyncExitStack() as stack:
        database: Path | str = data / "yinzi.db"
        env = {
            **os.environ,
            "YINZI_DATA_DIR": str(data),
            "YINZI_FETCH_ALLOW": "127.0.0.1/32",
            "YINZI_MODEL_DIR": str(models),
            "YINZI_DEMUCS_MODEL": DEMUCS_NAME,
            "YINZI_WORKER_CONCURRENCY": "4",
        }
        moto = None
        if mode != "embedded":
            env.update(
                YINZI_REDIS_URL="redis://127.0.0.1:6379/0", YINZI_QUEUE_NAME=f"yinzi-soak:{uuid.uuid4().hex}"
            )
        if mode == "multihost":
            database = await stack.enter_async_context(postgres_schema())
            moto, endpoint = start_s3_server(data / "s3.log", S3_BUCKET)
            stack.callback(moto.wait)
            stack.callback(moto.terminate)
            env.update(
                os.environ,
                YINZI_DATABASE_URL=str(database),
                YINZI_STORAGE_URL=f"s3://{S3_BUCKET}/soak",
                YINZI_S3_ENDPOINT_URL=endpoint,
                YINZI_S3_REGION="us-east-1",
                YINZI_SECRET_KEY=uuid.uuid4().hex,
            )
        await run_soak(mode, orders, clients, data, database, env, media_port)
        await runner.cleanup()


async def run_soak(
    mode: str,
    orders: int,
    clients: int,
    data: Path,
    database: Path | str,
    env: dict[str, str],
    media_port: int,
) -> None:
    db = await Database.open(database)
    user = await db.create_user("soak", GRANT)
    key = (await create_key(db, user, rate_limit=0)).key
    port = free_port()
    env = {**env, "YINZI_PORT": str(port)}

    def start(name: str, command: str) -> subprocess.Popen[bytes]:
        own = env
        if mode == "multihost":  # every process on its own empty data directory, as on its own host
            own = {**env, "YINZI_DATA_DIR": str(data / name)}
        logs = (data / f"{name}.log").open("wb")
        return subprocess.Popen([sys.executable, "-m", "yinzi", command], env=own, stdout=logs, stderr=logs)

    services = [start("api", "serve")]
    services += [start(f"worker-{n}", "worker") for n in range(WORKERS.get(mode, 0))]
    base = f"http://127.0.0.1:{port}"
    created = 0
    errors: Counter[str] = Counter()
    create_s: list[float] = []
    query_s: list[float] = []
    samples: list[tuple[int, float]] = []
    finished = 0

    def pids() -> list[int]:
        return [pid for service in services for pid in (service.pid, *children_of(service.pid))]

    async def sample() -> None:
        while True:
            samples.append((finished, rss_mib(pids())))
            await asyncio.sleep(2)

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal created, finished
        body = {
            "orderType": "extract-voice",
            "stuff": {"pathKey": f"http://127.0.0.1:{media_port}/m/clip.wav"},
        }
        while created < orders:
            created += 1
            started = time.monotonic()
            async with http.post("/api/open/v1/order/create", json=body) as resp:
                answer = await resp.json()
            create_s.append(time.monotonic() - started)
            if resp.status != 200:
                errors[f"create {resp.status}: {answer['msg']}"] += 1
                continue
            order_no = answer["data"]["orderNo"]
            while True:
                await asyncio.sleep(POLL_S)
                started = time.monotonic()
                async with http.get("/api/open/v1/order/query", params={"orderNo": order_no}) as resp:
                    answer = await resp.json()
                query_s.append(time.monotonic() - started)
                if resp.status != 200:
                    errors[f"query {resp.status}: {answer['msg']}"] += 1
                    break
                if answer["data"]["status"] not in ("pending", "processing"):
                    if answer["data"]["status"] != "finish":
                        errors[f"order {answer['data']['status']}: {answer['data']['reason']}"] += 1
                    finished += 1
                    break

    try:
        await asyncio.to_thread(wait_healthy, base)
        sampler = asyncio.create_task(sample())
        began = time.monotonic()
        headers = {"Authorization": f"Bearer {key}"}
        limits = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(base, headers=headers, connector=limits) as http:
            await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.monotonic() - began
        samples.append((finished, rss_mib(pids())))
        sampler.cancel()

        rows = await db._all(
            "SELECT count(*) AS n, sum(CASE WHEN status = 'finish' THEN 1 ELSE 0 END) AS done, "
            "sum(CASE WHEN pay_status = 'paid' THEN 1 ELSE 0 END) AS paid, "
            "sum(CASE WHEN pay_status = 'paid' THEN cost ELSE 0 END) AS charged FROM orders"
        )
        audit = dict(rows[0])
        charges = await db._all(
            "SELECT count(*) AS n, count(DISTINCT ref) AS refs FROM ledger WHERE kind = 'order'"
        )
        balance = await db.balance(user.id)
        warm = next(rss for done, rss in samples if done >= orders // 10)
        end = samples[-1][1]
        print(
            f"mode {mode}: {orders} orders, {clients} clients, {elapsed:.0f} s ({orders / elapsed:.1f} orders/s)"
        )
        print(f"errors: {dict(errors) or 'none'}")
        print(
            f"audit: {audit['n']} orders, {audit['done']} finished, {audit['paid']} paid; "
            f"{charges[0]['n']} charge rows for {charges[0]['refs']} orders; "
            f"balance {balance} = grant - charges: {balance == GRANT - audit['charged']}"
        )
        print(
            f"create p50 {percentile(create_s, 0.5):.1f} ms p99 {percentile(create_s, 0.99):.1f} ms; "
            f"query p50 {percentile(query_s, 0.5):.1f} ms p99 {percentile(query_s, 0.99):.1f} ms"
        )
        print(
            f"RSS of all yinzi processes: {warm:.0f} MiB after warm-up, {end:.0f} MiB at the end "
            f"({(end / warm - 1) * 100:+.1f} %)"
        )
        if mode == "multihost":
            left = {
                name: sorted(
                    str(p.relative_to(data / name))
                    for p in (data / name).rglob("*")
                    if p.is_file() and not p.relative_to(data / name).parts[0] == METRICS_DIR_NAME
                )
                for name in ("api", *(f"worker-{n}" for n in range(WORKERS[mode])))
            }
            print(f"files in the processes' data directories, live metrics aside: {left}")
    finally:
        for service in services:
            service.terminate()
            service.wait()
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--mode", choices=["embedded", "arq", "multihost"], default="embedded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yinzi-soak-") as tmp:
        asyncio.run(soak(args.mode, args.orders, args.clients, Path(tmp)))


if __name__ == "__main__":
    main()
