"""Files in the store: results served from it (presigned, or streamed through yinzi), a large upload going up in
parts and resumed by another API process, expiry deleting from it, health checks that reach it, and no file
written outside it but scratch (the stem cache shared through it: tests/test_engines.py). Each runs on local disk and on the S3
stand-in (moto's server mode on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.conftest import (
    PATIENCE,
    STORAGES,
    Account,
    S3Server,
    add_account,
    create_order,
    wait_for_order,
    wait_until,
    with_storage,
)
from tests.support.hosts import another_host, outside_scratch, scratch_files
from yinzi.appkeys import DB, SERVICE, UPLOADS
from yinzi.cli import main
from yinzi.doctor import run_checks
from yinzi.settings import Settings
from yinzi.storage.s3 import UPLOAD_PART_BYTES

QUERY = "/api/open/v1/order/query"
SESSIONS = "/api/open/v1/uploads"
MIB = 1024**2


@pytest.fixture(params=STORAGES)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return with_storage(settings, request.param, request)


def wav(size: int) -> bytes:
    """A WAV file of exactly ``size`` bytes of noise (48 kHz, 16-bit stereo)."""
    header = (
        b"RIFF"
        + struct.pack("<I", size - 8)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 2, 48_000, 192_000, 4, 16)
        + b"data"
        + struct.pack("<I", size - 44)
    )
    return header + os.urandom(size - 44)


async def query(client: TestClient, account: Account, order_no: str) -> dict[str, Any]:
    resp = await client.get(QUERY, params={"orderNo": order_no}, headers=account.headers)
    data: dict[str, Any] = (await resp.json())["data"]
    return data


async def test_results_are_served_from_the_store(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(settings)
    account = await add_account(client.app[DB])
    order_no = await create_order(client, account, media_url("/m/tone.wav"))
    order = await wait_for_order(client.app[DB], order_no)
    assert order.status == "finish"
    data = await query(client, account, order_no)
    signed = URL(next(s for s in data["stuffs"] if s["name"] == "audio.wav")["url"])
    expected = await client.app[SERVICE].result_bytes(order, "audio.wav")
    assert expected[:4] == b"RIFF" and len(expected) > 50_000
    disposition = 'attachment; filename="audio.wav"'

    resp = await client.get(signed.path_qs, allow_redirects=False)
    tampered = signed.path_qs.replace("sig=", "sig=0")
    assert (await client.get(tampered, allow_redirects=False)).status == 403
    if settings.storage_url is None:
        assert resp.status == 200 and await resp.read() == expected
        assert resp.headers["Content-Disposition"] == disposition
        return
    # Redirected to the store's own URL, which dies when the signed one does.
    assert resp.status == 302
    presigned = URL(resp.headers["Location"])
    life = int(presigned.query["X-Amz-Expires"])
    assert abs(life - (int(signed.query["expires"]) - time.time())) <= 5
    async with aiohttp.ClientSession() as http, http.get(presigned) as stored:
        assert stored.status == 200 and await stored.read() == expected
        assert stored.headers["Content-Disposition"] == disposition
    # A store the clients cannot reach: the same signed URL streams the file through yinzi.
    proxy = await make_client(settings.replace(storage_proxy=True))
    resp = await proxy.get(signed.path_qs, allow_redirects=False)
    assert resp.status == 200 and await resp.read() == expected
    assert resp.headers["Content-Disposition"] == disposition and resp.content_type == "audio/x-wav"
    assert outside_scratch(settings) == [] and scratch_files(settings) == []


async def _held_body(first: bytes, rest: bytes, release: asyncio.Event) -> AsyncIterator[bytes]:
    yield first
    await release.wait()
    yield rest


async def test_a_large_upload_goes_up_in_parts_and_another_process_resumes_it(
    make_client: Callable[[Settings], Any], settings: Settings, request: pytest.FixtureRequest
) -> None:
    """Two API processes: one takes a part and a half, the other the rest, while a third request on the first
    is refused because the session is being written. The bytes the worker reads come from the store."""
    size = 2 * UPLOAD_PART_BYTES + 3 * MIB // 2
    data = wav(size)
    first = await make_client(settings)
    # Beside an object store the second process shares nothing but the database and the store.
    other = (
        settings if settings.storage_url is None else another_host(settings, settings.data_dir.parent / "b")
    )
    second = await make_client(other)
    account = await add_account(first.app[DB])
    resp = await first.post(
        SESSIONS,
        json={"fileName": "long.wav", "mimeType": "audio/wav", "sizeBytes": size},
        headers=account.headers,
    )
    session = (await resp.json())["data"]
    url = URL(session["uploadUrl"]).path_qs
    cut = UPLOAD_PART_BYTES + 3 * MIB
    resp = await first.put(
        url, data=io.BytesIO(data[:cut]), headers={"Content-Range": f"bytes 0-{cut - 1}/{size}"}
    )
    assert resp.status == 200 and (await resp.json())["data"]["received"] == cut
    resp = await second.get(f"{SESSIONS}/{session['uploadId']}", headers=account.headers)
    assert (await resp.json())["data"]["received"] == cut  # every process sees the count
    if settings.storage_url is not None:
        s3: S3Server = request.getfixturevalue("s3_server")
        key = f"uploads/{session['uploadId']}"
        assert s3.keys(settings.storage_url) == [f"{key}.tail"] and s3.multipart_uploads(
            settings.storage_url
        ) == [key]
        assert scratch_files(settings) == []

    release = asyncio.Event()
    resuming = asyncio.create_task(
        second.put(
            url,
            data=_held_body(data[cut : cut + MIB], data[cut + MIB :], release),
            headers={"Content-Range": f"bytes {cut}-{size - 1}/{size}"},
        )
    )
    deadline = time.monotonic() + PATIENCE
    upload_id = session["uploadId"]

    async def resume_holds_the_session() -> bool:
        if settings.storage_url is None:  # its bytes are landing in the part file
            upload = await first.app[DB].upload(upload_id)
            return upload is not None and first.app[UPLOADS].received(upload) > cut
        rows = await first.app[DB]._all("SELECT writer FROM uploads WHERE id = ?", (upload_id,))
        return rows[0]["writer"] is not None

    while not await resume_holds_the_session():
        assert time.monotonic() < deadline and not resuming.done()
        await asyncio.sleep(0.02)
    resp = await first.post(f"{SESSIONS}/{upload_id}/complete", headers=account.headers)
    body = await resp.json()
    assert resp.status == 409 and body["msg"].startswith("another request is writing"), body
    # A range that cannot fit is refused at once, without waiting for the session.
    resp = await first.put(url, data=b"x", headers={"Content-Range": f"bytes {cut + 1}-{cut + 1}/{size}"})
    # (On local disk the count includes the bytes the resuming request has written so far.)
    assert resp.status == 409 and cut <= int(resp.headers["Upload-Offset"]) < size
    release.set()
    resp = await resuming
    assert resp.status == 200 and (await resp.json())["data"]["received"] == size

    resp = await first.post(
        f"{SESSIONS}/{session['uploadId']}/complete",
        json={"sha256": hashlib.sha256(data).hexdigest()},
        headers=account.headers,
    )
    done = await resp.json()
    assert resp.status == 200 and done["data"]["durationSeconds"] == pytest.approx(
        (size - 44) / 192_000, abs=0.01
    )
    if settings.storage_url is not None:
        assert s3.keys(settings.storage_url) == [key] and s3.multipart_uploads(settings.storage_url) == []

    resp = await second.post(
        "/api/open/v1/order/create",
        json={"orderType": "extract-text", "stuff": {"uploadId": session["uploadId"]}},
        headers=account.headers,
    )
    order_no = (await resp.json())["data"]["orderNo"]
    order = await wait_for_order(second.app[DB], order_no)
    assert order.status == "finish", order.reason
    produced = await second.app[SERVICE].result_bytes(order, "audio.wav")
    assert produced.endswith(data[44:])  # the engine re-encoded exactly the uploaded samples
    if settings.storage_url is not None:
        for side in (settings, other):
            assert outside_scratch(side) == [] and scratch_files(side) == []


async def test_expired_results_and_uploads_leave_the_store(
    make_client: Callable[[Settings], Any],
    settings: Settings,
    media_url: Callable[[str], str],
    request: pytest.FixtureRequest,
) -> None:
    client = await make_client(settings.replace(result_retention=0, sweep_interval=0.05))
    account = await add_account(client.app[DB])
    order_no = await create_order(client, account, media_url("/m/tone.wav"))
    order = await wait_for_order(client.app[DB], order_no, lambda o: o.expired)
    assert order.status == "finish"

    def stored() -> list[str]:
        if settings.storage_url is None:
            folder = settings.results_dir / order_no
            return [p.name for p in folder.iterdir()] if folder.exists() else []
        s3: S3Server = request.getfixturevalue("s3_server")
        return [k for k in s3.keys(settings.storage_url) if k.startswith(f"results/{order_no}/")]

    await wait_until(lambda: stored() == [], "expired results deleted from the store")
    with pytest.raises(Exception, match="no such result"):
        await client.app[SERVICE].result_bytes(order, "audio.wav")


async def test_health_and_doctor_report_the_store(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    client = await make_client(settings)
    health = (await (await client.get("/healthz")).json())["data"]
    kind = "local" if settings.storage_url is None else "s3"
    assert health["storage"]["kind"] == kind and health["storage"]["ok"] is True, health
    checks = {c.name: c for c in await run_checks(settings, network=False)}
    assert checks["storage"].ok, checks["storage"]
    if settings.storage_url is None:
        return
    assert "bucket reachable" in checks["storage"].detail and "secret key" not in checks
    checks = {c.name: c for c in await run_checks(settings.replace(secret_key=None), network=False)}
    assert not checks["secret key"].ok and "same long random value on every" in checks["secret key"].fix
    missing = settings.replace(storage_url="s3://no-such-bucket-here/x")
    broken = await make_client(missing)
    health = (await (await broken.get("/healthz")).json())["data"]
    assert health["status"] == "degraded" and health["storage"]["ok"] is False
    assert "no such bucket" in health["storage"]["detail"]
    checks = {c.name: c for c in await run_checks(missing, network=False)}
    assert not checks["storage"].ok and "the bucket exists" in checks["storage"].fix


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_hosts_sharing_a_store_must_share_the_secret_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    monkeypatch.setenv("YINZI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("YINZI_STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.delenv("YINZI_SECRET_KEY", raising=False)
    assert main([command]) == 2
    assert "YINZI_STORAGE_URL needs YINZI_SECRET_KEY" in capsys.readouterr().err
    monkeypatch.setenv("YINZI_STORAGE_URL", "bucket/prefix")
    assert main([command]) == 2
    assert "must look like s3://bucket/prefix" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written
