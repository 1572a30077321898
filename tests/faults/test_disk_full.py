"""The disk under data/ fills up: orders fail with a clear reason, creates get a clear 503, the database stays
intact, and everything works again once there is room."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import add_account, create_order, wait_for_order
from tests.faults.conftest import assert_books_balance
from yinzi.appkeys import DB
from yinzi.settings import Settings


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject here is SQLite's own disk-full handling, not the database


DISK_BYTES = 16 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: mounting one needs root, which these machines and CI have."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Writes a filler file until only about ``leave`` bytes are free."""
    filler = folder / "filler"
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with filler.open("ab", buffering=0) as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


async def test_a_full_disk_fails_clearly_and_corrupts_nothing(
    make_client: Callable[[Settings], Any],
    settings: Settings,
    small_disk: Path,
    media_url: Callable[[str], str],
) -> None:
    client = await make_client(settings.replace(data_dir=small_disk / "data"))
    db = client.app[DB]
    account = await add_account(db)
    finished = await create_order(client, account, media_url("/m/tone.wav"))
    assert (await wait_for_order(db, finished)).status == "finish"

    # Room for the database, not for a 260 KB download: the order fails and says why.
    filler = fill(small_disk, leave=128 * 1024)
    order = await wait_for_order(db, await create_order(client, account, media_url("/m/long.mp3")))
    assert order.status == "failed"
    assert order.reason == "the server could not store the download: No space left on device"

    # No room at all: a create is refused with a clear 503 and leaves nothing behind.
    with filler.open("ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    orders_before = len(await db._all("SELECT id FROM orders"))
    resp = await client.post(
        "/api/open/v1/order/create",
        json={"orderType": "extract-text", "stuff": {"pathKey": media_url("/m/tone.wav")}},
        headers=account.headers,
    )
    assert (resp.status, await resp.json()) == (
        503,
        {
            "code": 503,
            "data": None,
            "msg": "the server's disk is full: nothing was changed; please retry later",
        },
    )

    filler.unlink()
    assert len(await db._all("SELECT id FROM orders")) == orders_before
    rows = await db._all("PRAGMA integrity_check")
    assert [row[0] for row in rows] == ["ok"]
    again = await create_order(client, account, media_url("/m/tone.wav"))
    assert (await wait_for_order(db, again)).status == "finish"
    resp = await client.get("/api/open/v1/order/query", params={"orderNo": again}, headers=account.headers)
    assert resp.status == 200
    await assert_books_balance(db)
