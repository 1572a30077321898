"""A large upload through a real `yinzi serve`: how much the server's memory grows, and how fast it goes.

    python bench/uploads.py --gib 2
    python bench/uploads.py --gib 2 --s3      the same into an S3 store (moto's server, a process of its own)

Opens a session, PUTs a WAV file of the asked size in two ranges (the second as if resuming), completes it
(size check, sha256, ffprobe) and reports the server's resident-memory growth (VmHWM after minus RSS
before) with the throughput. The body is generated on the fly, so the client needs no disk for it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.processes import free_port, peak_rss_gib, wait_healthy  # noqa: E402
from tests.support.s3 import start_s3_server  # noqa: E402
from yinzi.accounts import create_key  # noqa: E402
from yinzi.store import Database  # noqa: E402

CHUNK = 1024 * 1024
RATE, CHANNELS, WIDTH = 48_000, 2, 2


def wav_header(total: int) -> bytes:
    data = total - 44
    return (
        b"RIFF"
        + struct.pack("<I", total - 8)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * CHANNELS * WIDTH, CHANNELS * WIDTH, WIDTH * 8)
        + b"data"
        + struct.pack("<I", data)
    )


async def body(start: int, end: int, total: int) -> AsyncIterator[bytes]:
    """Bytes start..end of a WAV of ``total`` bytes: the header, then a quiet noise pattern."""
    pattern = os.urandom(CHUNK)
    header = wav_header(total)
    position = start
    while position <= end:
        size = min(CHUNK, end + 1 - position)
        chunk = bytearray(pattern[:size])
        if position < len(header):
            head = header[position : position + size]
            chunk[: len(head)] = head
        yield bytes(chunk)
        position += size


def rss_gib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match
    return int(match.group(1)) / 1024**2


async def run(total: int, data: Path, s3: bool) -> None:
    db = await Database.open(data / "yinzi.db")
    user = await db.create_user("bench", 10)
    key = (await create_key(db, user, rate_limit=0)).key
    await db.close()
    port = free_port()
    env = {**os.environ, "YINZI_DATA_DIR": str(data), "YINZI_PORT": str(port)}
    store = None
    if s3:
        store, endpoint = start_s3_server(data / "s3.log", "yinzi-bench")
        env.update(
            os.environ,
            YINZI_STORAGE_URL="s3://yinzi-bench/uploads-bench",
            YINZI_S3_ENDPOINT_URL=endpoint,
            YINZI_SECRET_KEY="bench",
        )
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "yinzi", "serve", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_healthy, base)
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=None)) as http:
            resp = await http.post(
                "/api/open/v1/uploads",
                json={"fileName": "big.wav", "mimeType": "audio/wav", "sizeBytes": total},
                headers=headers,
            )
            session = (await resp.json())["data"]
            before = rss_gib(server.pid)
            started = time.monotonic()
            half = total // 2
            for first, last in ((0, half - 1), (half, total - 1)):
                resp = await http.put(
                    session["uploadUrl"],
                    data=body(first, last, total),
                    headers={
                        "Content-Range": f"bytes {first}-{last}/{total}",
                        "Content-Length": str(last - first + 1),
                    },
                )
                assert resp.status == 200, await resp.text()
            put_s = time.monotonic() - started
            started = time.monotonic()
            resp = await http.post(f"/api/open/v1/uploads/{session['uploadId']}/complete", headers=headers)
            done = await resp.json()
            complete_s = time.monotonic() - started
            assert resp.status == 200, done
        growth_mib = (peak_rss_gib(server.pid) - before) * 1024
        print(
            f"upload of {total / 1024**3:.2f} GiB in two ranges: {put_s:.1f} s ({total / put_s / 1024**2:.0f} MiB/s)"
        )
        print(
            f"complete (size, sha256, ffprobe): {complete_s:.1f} s; duration {done['data']['durationSeconds']:.0f} s"
        )
        print(
            f"server RSS before {before * 1024:.0f} MiB; peak growth during the upload {growth_mib:.1f} MiB"
        )
    finally:
        server.terminate()
        await server.wait()
        if store is not None:
            store.terminate()
            store.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gib", type=float, default=2.0, help="upload size in GiB (at most 2)")
    parser.add_argument("--s3", action="store_true", help="YINZI_STORAGE_URL on moto's S3 server")
    args = parser.parse_args()
    total = int(args.gib * 1024**3)
    with tempfile.TemporaryDirectory(prefix="yinzi-bench-") as tmp:
        asyncio.run(run(total, Path(tmp), args.s3))


if __name__ == "__main__":
    main()
