"""Soak: many orders created and followed to the end by concurrent clients, through real processes.

    python bench/soak.py --orders 10000 --clients 32 --mode embedded
    python bench/soak.py --orders 10000 --clients 32 --mode arq        (needs Redis on 127.0.0.1:6379)

Each client creates an `extract-voice` order for a 1 s clip served by a local web server, queries it every
0.2 s until it ends (the first query after `finish` charges it), and starts the next. The engine is the real
Demucs code with a tiny random model; after the first order the stems come from the cache, so each job is a
download, a probe, a cache lookup and an MP3 encode. At the end the database is audited: every order
finished and was charged exactly once, and the balance equals the grant minus the charges. Memory is the
resident set of every yinzi process (API, worker, engine processes), sampled every 2 s: the figure after
warm-up (the first 10 % of orders) beside the one at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.models import DEMUCS_NAME, save_tiny_demucs  # noqa: E402
from tests.support.processes import children_of, free_port, wait_healthy  # noqa: E402
from yinzi.accounts import create_key  # noqa: E402
from yinzi.store import Database  # noqa: E402

GRANT = 10**9
POLL_S = 0.2


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

    db = await Database.open(data / "yinzi.db")
    user = await db.create_user("soak", GRANT)
    key = (await create_key(db, user, rate_limit=0)).key
    port = free_port()
    env = {
        **os.environ,
        "YINZI_DATA_DIR": str(data),
        "YINZI_PORT": str(port),
        "YINZI_FETCH_ALLOW": "127.0.0.1/32",
        "YINZI_MODEL_DIR": str(models),
        "YINZI_DEMUCS_MODEL": DEMUCS_NAME,
        "YINZI_WORKER_CONCURRENCY": "4",
    }
    if mode == "arq":
        env.update(YINZI_REDIS_URL="redis://127.0.0.1:6379/0", YINZI_QUEUE_NAME=f"yinzi-soak:{port}")
    logs = (data / "serve.log").open("wb")
    services = [subprocess.Popen([sys.executable, "-m", "yinzi", "serve"], env=env, stdout=logs, stderr=logs)]
    if mode == "arq":
        services.append(
            subprocess.Popen([sys.executable, "-m", "yinzi", "worker"], env=env, stdout=logs, stderr=logs)
        )
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
            "SELECT count(*) AS n, sum(status = 'finish') AS done, sum(pay_status = 'paid') AS paid, "
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
    finally:
        for service in services:
            service.terminate()
            service.wait()
        await db.close()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--mode", choices=["embedded", "arq"], default="embedded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yinzi-soak-") as tmp:
        asyncio.run(soak(args.mode, args.orders, args.clients, Path(tmp)))


if __name__ == "__main__":
    main()
