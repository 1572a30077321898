"""Resumable upload sessions: whole and ranged PUTs, resuming after a broken connection, completion checks,
orders and prices from an upload, expiry. Each runs on local disk and on the S3 stand-in."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.conftest import STORAGES, Account, S3Server, add_account, wait_for_order, wait_until, with_storage
from yinzi.appkeys import DB, SETTINGS
from yinzi.settings import Settings
from yinzi.uploads import INCOMING

UPLOADS = "/api/open/v1/uploads"


async def open_session(
    client: TestClient, account: Account, size: int, mime: str = "audio/wav", name: str = "tone.wav"
) -> dict[str, Any]:
    resp = await client.post(
        UPLOADS, json={"fileName": name, "mimeType": mime, "sizeBytes": size}, headers=account.headers
    )
    body = await resp.json()
    assert resp.status == 200, body
    data: dict[str, Any] = body["data"]
    return data


def local(url: str) -> str:
    """The uploadUrl's path and query, for the test client."""
    return str(URL(url).relative())


async def put(client: TestClient, url: str, data: bytes, content_range: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "audio/wav"}
    if content_range:
        headers["Content-Range"] = content_range
    resp = await client.put(local(url), data=data, headers=headers)
    return resp.status, await resp.json()


async def state(client: TestClient, account: Account, upload_id: str) -> dict[str, Any]:
    resp = await client.get(f"{UPLOADS}/{upload_id}", headers=account.headers)
    data: dict[str, Any] = (await resp.json())["data"]
    return data


async def complete(client: TestClient, account: Account, upload_id: str, **body: Any) -> tuple[int, Any]:
    resp = await client.post(f"{UPLOADS}/{upload_id}/complete", json=body or None, headers=account.headers)
    return resp.status, await resp.json()


@pytest.fixture(params=STORAGES)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return with_storage(settings, request.param, request)


@pytest.fixture
def tone(media_dir: Path) -> bytes:
    return (media_dir / "tone.wav").read_bytes()


async def test_whole_upload_then_order_and_price(client: TestClient, account: Account, tone: bytes) -> None:
    session = await open_session(client, account, len(tone))
    assert session["state"] == "open" and session["received"] == 0
    assert session["uploadId"].startswith("up_") and session["expiresAt"] > time.time()
    status, body = await put(client, session["uploadUrl"], tone)
    assert (status, body["data"]["received"]) == (200, len(tone))
    status, body = await complete(
        client, account, session["uploadId"], sha256=hashlib.sha256(tone).hexdigest()
    )
    assert status == 200, body
    done = body["data"]
    assert done["state"] == "complete" and done["sha256"] == hashlib.sha256(tone).hexdigest()
    assert done["durationSeconds"] == pytest.approx(2.0, abs=0.05) and "uploadUrl" not in done
    # Completing again changes nothing and answers the same.
    assert (await complete(client, account, session["uploadId"]))[1]["data"] == done

    resp = await client.post(
        "/api/open/v1/order/calculate",
        json={"orderType": "extract-text", "uploadId": session["uploadId"], "priority": "lightning"},
        headers=account.headers,
    )
    price = (await resp.json())["data"]
    assert price == {
        "orderType": "extract-text",
        "priority": "lightning",
        "durationSeconds": done["durationSeconds"],
        "minutesBilled": 1,
        "cost": 10,  # 5 points a minute, doubled
        "balance": 1000,
    }
    resp = await client.post(
        "/api/open/v1/order/create",
        json={"orderType": "extract-text", "stuff": {"uploadId": session["uploadId"]}},
        headers=account.headers,
    )
    order_no = (await resp.json())["data"]["orderNo"]
    order = await wait_for_order(client.app[DB], order_no)
    assert (order.status, order.duration) == ("finish", pytest.approx(2.0, abs=0.05))


async def test_ranged_upload_resumes_after_a_broken_connection(
    client: TestClient, account: Account, tone: bytes
) -> None:
    session = await open_session(client, account, len(tone))
    url = URL(session["uploadUrl"])
    status, body = await put(client, session["uploadUrl"], tone[:1000], f"bytes 0-999/{len(tone)}")
    assert (status, body["data"]["received"]) == (200, 1000)

    # The next range breaks off: the client promised 20,000 bytes and sends 5,000 before its connection dies.
    _, writer = await asyncio.open_connection(client.host, client.port)
    head = (
        f"PUT {url.path_qs} HTTP/1.1\r\nHost: {client.host}\r\nContent-Type: audio/wav\r\n"
        f"Content-Range: bytes 1000-20999/{len(tone)}\r\nContent-Length: 20000\r\n\r\n"
    )
    writer.write(head.encode() + tone[1000:6000])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    for _ in range(50):  # the server notices the broken body on its own schedule
        if (await state(client, account, session["uploadId"]))["received"] == 6000:
            break
        await asyncio.sleep(0.05)
    assert (await state(client, account, session["uploadId"]))["received"] == 6000

    # Resuming anywhere else is refused with the offset to resume from.
    resp = await client.put(
        local(session["uploadUrl"]), data=b"x", headers={"Content-Range": f"bytes 5000-5000/{len(tone)}"}
    )
    assert resp.status == 409 and resp.headers["Upload-Offset"] == "6000"
    assert "resume from byte 6000" in (await resp.json())["msg"]
    status, _ = await put(
        client, session["uploadUrl"], tone[6000:], f"bytes 6000-{len(tone) - 1}/{len(tone)}"
    )
    assert status == 200
    status, body = await complete(client, account, session["uploadId"])
    assert status == 200 and body["data"]["sha256"] == hashlib.sha256(tone).hexdigest()


async def test_completion_checks_size_hash_and_media(
    client: TestClient, account: Account, tone: bytes, media_dir: Path
) -> None:
    session = await open_session(client, account, len(tone))
    await put(client, session["uploadUrl"], tone[:100], f"bytes 0-99/{len(tone)}")
    status, body = await complete(client, account, session["uploadId"])
    assert (status, body["msg"]) == (409, f"received 100 of {len(tone)} bytes: PUT the rest first")
    await put(client, session["uploadUrl"], tone)  # no Content-Range: the whole file again, from byte 0
    status, body = await complete(client, account, session["uploadId"], sha256="0" * 64)
    assert status == 422 and body["msg"].startswith("sha256 does not match the uploaded bytes")
    assert (await state(client, account, session["uploadId"]))[
        "state"
    ] == "open"  # nothing lost: fix and retry

    text = (media_dir / "notes.mp3").read_bytes()
    fake = await open_session(client, account, len(text), "audio/mpeg", "notes.mp3")
    await put(client, fake["uploadUrl"], text)
    status, body = await complete(client, account, fake["uploadId"])
    assert status == 415 and body["msg"].startswith("unsupported media")
    assert fake["uploadId"] not in body["msg"] and "/" not in body["msg"], body  # no server path shown


@pytest.mark.parametrize(
    ("body", "status", "msg"),
    [
        (
            {"fileName": "a.txt", "mimeType": "text/plain", "sizeBytes": 10},
            415,
            "mimeType text/plain is not audio or video",
        ),
        (
            {"fileName": "a.wav", "mimeType": "audio/wav", "sizeBytes": 2 * 1024**3 + 1},
            413,
            "file too large: the limit is 2 GiB",
        ),
        (
            {"fileName": "../a.wav", "mimeType": "audio/wav", "sizeBytes": 10},
            400,
            "fileName must be a plain file name, without folders",
        ),
        (
            {"fileName": "a.wav", "mimeType": "audio/wav", "sizeBytes": "10"},
            400,
            "sizeBytes must be a whole number of bytes, at least 1",
        ),
        (
            {"fileName": "a.wav", "mimeType": "audio/wav"},
            400,
            "sizeBytes must be a whole number of bytes, at least 1",
        ),
    ],
)
async def test_session_requests_are_checked(
    client: TestClient, account: Account, body: dict[str, Any], status: int, msg: str
) -> None:
    resp = await client.post(UPLOADS, json=body, headers=account.headers)
    assert (resp.status, await resp.json()) == (status, {"code": status, "data": None, "msg": msg})


async def test_bytes_beyond_the_declared_size_are_refused(client: TestClient, account: Account) -> None:
    session = await open_session(client, account, 10)
    status, body = await put(client, session["uploadUrl"], b"x" * 11)
    assert (status, body["msg"]) == (413, "more bytes than the range or sizeBytes allows (10)")
    status, body = await put(client, session["uploadUrl"], b"x", "bytes 0-0/11")
    assert (status, body["msg"]) == (400, "Content-Range total 11 differs from the session's sizeBytes 10")


async def test_upload_urls_are_signed_and_sessions_private(client: TestClient, account: Account) -> None:
    session = await open_session(client, account, 10)
    tampered = session["uploadUrl"].replace("sig=", "sig=0")
    status, body = await put(client, tampered, b"x" * 10)
    assert status == 403 and body["msg"].startswith("invalid signature")
    stranger = await add_account(client.app[DB])
    resp = await client.get(f"{UPLOADS}/{session['uploadId']}", headers=stranger.headers)
    assert (resp.status, (await resp.json())["msg"]) == (404, "upload not found")
    resp = await client.post(
        "/api/open/v1/order/create",
        json={"orderType": "extract-text", "stuff": {"uploadId": session["uploadId"]}},
        headers=account.headers,
    )
    assert resp.status == 409 and "is not complete" in (await resp.json())["msg"]


async def test_incomplete_sessions_expire_and_their_files_go(
    make_client: Callable[[Settings], Any], settings: Settings, request: pytest.FixtureRequest
) -> None:
    client = await make_client(settings.replace(upload_ttl=2, sweep_interval=0.05))
    account = await add_account(client.app[DB])
    session = await open_session(client, account, 10)
    status, _ = await put(client, session["uploadUrl"], b"x" * 4, "bytes 0-3/10")
    assert status == 200

    def stored() -> list[str]:
        if settings.storage_url is None:
            part = client.app[SETTINGS].uploads_dir / f"{session['uploadId']}.part"
            return [part.name] if part.exists() else []
        s3: S3Server = request.getfixturevalue("s3_server")
        return s3.keys(settings.storage_url) + s3.multipart_uploads(settings.storage_url)

    assert stored()
    await wait_until(lambda: stored() == [], "an abandoned upload deleted")
    resp = await client.get(f"{UPLOADS}/{session['uploadId']}", headers=account.headers)
    assert resp.status == 404


async def test_scratch_files_a_dead_process_left_are_deleted_when_the_service_starts(
    make_client: Callable[[Settings], Any], settings: Settings
) -> None:
    incoming = settings.uploads_dir / INCOMING
    incoming.mkdir(parents=True)
    stale, fresh = incoming / "stale", incoming / "fresh"
    for path in (stale, fresh):
        path.write_bytes(b"half a form's file")
    old = time.time() - settings.upload_ttl - 60
    os.utime(stale, (old, old))
    await make_client(settings)
    assert not stale.exists() and fresh.exists()  # a file still arriving in another process is kept
