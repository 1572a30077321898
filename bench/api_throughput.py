"""Throughput and latency of order/create and order/query at 32 concurrent clients, beside /healthz.

Starts one real ``yinzi serve`` process on a fresh data directory, gives it a user, a key and finished
orders, then drives each endpoint with wrk (a C load generator, so the client is not the bottleneck) and
prints a Markdown table. Queries pick random finished orders, so the first query of each one charges it
(a write transaction) and later ones only read, as in real use.

    python bench/api_throughput.py [--seconds 10] [--connections 32] [--processes 2]
                                   [--databases sqlite,postgresql]

Three layouts: embedded (one process that also runs the created orders; with no engine installed they fail
right after being claimed), and arq with one and with ``--processes`` API processes (workers elsewhere, the
production layout; needs Redis on 127.0.0.1:6379), on each database: SQLite in the data directory, and
PostgreSQL on 127.0.0.1:5432 (user postgres, a fresh schema per layout, dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
from arq.connections import RedisSettings, create_pool  # noqa: E402

from tests.support.processes import free_port, wait_healthy  # noqa: E402
from yinzi.accounts import create_key  # noqa: E402
from yinzi.store import Database, ResultFile  # noqa: E402

FINISHED_ORDERS = 2000
# Created orders point at a loopback port where nothing listens (allowed by YINZI_FETCH_ALLOW): in embedded
# mode each job is claimed, tries the download and fails at once, instead of waiting on DNS with no network.
DEAD_END = "http://127.0.0.1:9/song.mp3"
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def database(kind: str, data: Path) -> Iterator[Path | str]:
    """What to pass as the database: the SQLite file, or a PostgreSQL URL on a fresh schema."""
    if kind == "sqlite":
        yield data / "yinzi.db"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_SERVER)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_SERVER}?search_path={schema}"
    finally:
        asyncio.run(admin(f"DROP SCHEMA {schema} CASCADE"))


async def seed(db_path: Path | str) -> tuple[str, list[str]]:
    db = await Database.open(db_path)
    try:
        user = await db.create_user("bench", 10**9)
        key = (await create_key(db, user)).key
        orders = []
        for i in range(FINISHED_ORDERS):
            order_no = f"bench{i:013d}"
            await db.create_order(
                order_no, user.id, "track-separation", {"pathKey": "https://example.com/a.mp3"}, min_balance=0
            )
            await db.claim_order(order_no)
            await db.finish_order(order_no, 10, 42.0, [ResultFile("vocals.mp3", "vocals")])
            orders.append(order_no)
        return key, orders
    finally:
        await db.close()


async def forget_queue(name: str) -> None:
    redis = await create_pool(RedisSettings())
    job_ids = await redis.zrange(name, 0, -1)
    await redis.delete(name, *[b"arq:job:" + job_id for job_id in job_ids])
    await redis.aclose()


async def drained(db_path: Path | str) -> None:
    db = await Database.open(db_path)
    try:
        while await db.unfinished_orders():
            await asyncio.sleep(0.2)
    finally:
        await db.close()


def wrk(url: str, script: str, seconds: int, connections: int, workdir: Path) -> dict[str, float]:
    lua = workdir / "script.lua"
    lua.write_text(script)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Non-2xx answers, and requests that timed out (wrk gives up after 2 s) or broke: counted, not hidden.
    failed = re.findall(r"Non-2xx or 3xx responses: (\d+)|(?:connect|read|write|timeout) (\d+)", out)
    errors = sum(int(a or b) for a, b in failed)

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    return {"rps": float(rps.group(1)), "p50": latency("50"), "p99": latency("99"), "errors": errors}


def scripts(key: str, orders: list[str]) -> dict[str, str]:
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    order_list = ",".join(f'"{o}"' for o in orders)
    return {
        "order/create": auth
        + 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        + f'wrk.body = \'{{"orderType":"track-separation","stuff":{{"pathKey":"{DEAD_END}"}}}}\'\n'
        + 'wrk.path = "/api/open/v1/order/create"\n',
        "order/query": auth
        + f"local orders = {{{order_list}}}\n"
        + "request = function()\n"
        + '  return wrk.format("GET", "/api/open/v1/order/query?orderNo=" .. orders[math.random(#orders)])\n'
        + "end\n",
        "healthz": 'wrk.path = "/healthz"\n',
    }


def run_mode(
    kind: str, mode: str, processes: int, seconds: int, connections: int
) -> list[tuple[str, str, dict[str, float]]]:
    label = f"{kind}, {mode}, {processes} process{'es' if processes > 1 else ''}"
    workdir = Path(tempfile.mkdtemp(prefix="yinzi-bench-"))
    try:
        data = workdir / "data"
        with database(kind, data) as target:
            return measure(target, data, label, mode, processes, seconds, connections, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure(
    target: Path | str,
    data: Path,
    label: str,
    mode: str,
    processes: int,
    seconds: int,
    connections: int,
    workdir: Path,
) -> list[tuple[str, str, dict[str, float]]]:
    key, orders = asyncio.run(seed(target))
    port = free_port()
    env = {
        **os.environ,
        "YINZI_DATA_DIR": str(data),
        "YINZI_PORT": str(port),
        "YINZI_PROCESSES": str(processes),
        "YINZI_FETCH_ALLOW": "127.0.0.1/32",
        "YINZI_RATE_LIMIT": "0",  # wrk sends one key thousands of times a second
    }
    if isinstance(target, str):
        env["YINZI_DATABASE_URL"] = target
    env.pop("YINZI_ENGINES", None)
    if mode == "arq":
        env.update(YINZI_REDIS_URL="redis://127.0.0.1:6379/0", YINZI_QUEUE_NAME=f"yinzi-bench:{port}")
    with (workdir / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "yinzi", "serve"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        rows = []
        for name, script in scripts(key, orders).items():
            rows.append((label, name, wrk(base, script, seconds, connections, workdir)))
            if mode == "embedded":  # the same process runs the created orders: let it drain first
                asyncio.run(drained(target))
        return rows
    finally:
        server.terminate()
        server.wait(10)
        if mode == "arq":  # the created jobs were never meant to run
            asyncio.run(forget_queue(f"yinzi-bench:{port}"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2, help="API processes in arq mode")
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    args = parser.parse_args()
    layouts = [
        (kind, mode, n)
        for kind in args.databases.split(",")
        for mode, n in [("embedded", 1), ("arq", 1), ("arq", args.processes)]
    ]
    rows = [
        row for kind, mode, n in layouts for row in run_mode(kind, mode, n, args.seconds, args.connections)
    ]
    print(f"\n{args.connections} connections, {args.seconds} s per endpoint, {os.cpu_count()} cores\n")
    print("| database, queue mode | endpoint | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|")
    for mode, name, r in rows:
        print(f"| {mode} | {name} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']:.0f} |")


if __name__ == "__main__":
    main()
