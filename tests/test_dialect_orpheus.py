"""The Orpheus async API, used the way an Orpheus customer's code uses it: Bearer key, the three-step flow
(create an upload, PUT its bytes, complete it, then create a job), polling, and a webhook receiver that checks
the signature with the document's own ``verify`` (turned into Python). Against a running yinzi, with tiny
random models (real Whisper weights where the words matter), local servers standing in for the customer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import PATIENCE, Account, add_account, wait_for_order, wait_until
from tests.support.processes import free_port
from tests.support.speech_eval import EVAL
from yinzi.accounts import create_key
from yinzi.appkeys import DB, SETTINGS
from yinzi.settings import GIB, Settings
from yinzi.store import Database

SIGNATURE_HEADER = "X-Orpheus-Signature"
REQUEST_ID_HEADER = "x-orpheus-request-id"


# ---- the customer's side ---------------------------------------------------------------------------------


def verify(raw_body: str, sig_header: str, secret: str) -> None:
    """The document's webhook ``verify``, in Python."""
    parts = dict(p.split("=", 1) for p in sig_header.split(","))
    timestamp = int(parts["t"])
    if abs(time.time() - timestamp) > 300:
        raise ValueError("timestamp too old")
    expected = hmac.new(secret.encode(), f"{timestamp}.{raw_body}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), parts["v1"].encode()):
        raise ValueError("bad signature")


class OrpheusError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.code: str = body["error"]["code"]
        self.message: str = body["error"]["message"]
        self.request_id: str = body["error"]["request_id"]
        self.headers = headers


class Orpheus:
    """A client as the document describes the API: base URL and an API key; nothing else changes."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str | None) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with self.session.request(method, self.base_url + path, headers=headers, **kwargs) as resp:
            body = await resp.json()
            # Every answer names its request, for support.
            assert resp.headers.get(REQUEST_ID_HEADER), resp.headers
            if resp.status >= 400:
                assert body["error"]["request_id"] == resp.headers[REQUEST_ID_HEADER]
                raise OrpheusError(resp.status, body, dict(resp.headers))
            assert resp.status == 200, body
            result: dict[str, Any] = body
            return result

    async def create_upload(self, file_name: str, mime_type: str, size_bytes: int) -> dict[str, Any]:
        return await self.call(
            "POST",
            "/v1/audio/uploads",
            json={"file_name": file_name, "mime_type": mime_type, "size_bytes": size_bytes},
        )

    async def put(
        self, upload_url: str, data: bytes | BinaryIO, mime_type: str, content_range: str | None = None
    ) -> int:
        """The presigned PUT: no key."""
        headers = {"Content-Type": mime_type}
        if content_range:
            headers["Content-Range"] = content_range
        async with self.session.put(upload_url, data=data, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def get_upload(self, upload_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/v1/audio/uploads/{upload_id}")

    async def complete(self, upload_id: str) -> dict[str, Any]:
        return await self.call("POST", f"/v1/audio/uploads/{upload_id}/complete")

    async def ingest(self, url: str) -> dict[str, Any]:
        return await self.call("POST", "/v1/audio/ingest", json={"url": url})

    async def upload_file(self, path: Path, mime_type: str) -> str:
        """The three steps of the document, less the job."""
        session = await self.create_upload(path.name, mime_type, path.stat().st_size)
        with path.open("rb") as f:  # streamed, as curl --data-binary @file does
            assert await self.put(session["upload_url"], f, mime_type) == 200
        await self.complete(session["upload_id"])
        upload_id: str = session["upload_id"]
        return upload_id

    async def create_job(
        self, upload_id: str, task: str, callback_url: str | None, **options: Any
    ) -> dict[str, Any]:
        body = {"upload_id": upload_id, "task": task, "callback_url": callback_url, **options}
        return await self.call("POST", "/v1/audio/jobs", json=body)

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/v1/audio/jobs/{job_id}")

    async def wait_job(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + PATIENCE
        while True:
            job = await self.get_job(job_id)
            if job["status"] in ("succeeded", "failed"):
                return job
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.1)

    async def wait_upload(self, upload_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + PATIENCE
        while True:
            upload = await self.get_upload(upload_id)
            if upload["state"] != "ingesting":
                return upload
            assert time.monotonic() < deadline, upload
            await asyncio.sleep(0.05)


@dataclass
class Receiver:
    """The customer's webhook endpoint: checks each signature, answers the next planned status."""

    secret: str
    plan: list[int]
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        raw = (await request.read()).decode()
        try:
            verify(raw, request.headers[SIGNATURE_HEADER], self.secret)
            verified = True
        except ValueError:
            verified = False
        self.calls.append(
            {"body": json.loads(raw), "raw": raw, "verified": verified, "headers": request.headers}
        )
        return web.Response(status=self.plan[min(len(self.calls), len(self.plan)) - 1])

    async def wait_calls(self, n: int) -> None:
        await wait_until(lambda: len(self.calls) >= n, f"{n} webhook calls")


# ---- fixtures --------------------------------------------------------------------------------------------


def quick_webhooks(settings: Settings) -> Settings:
    return settings.replace(webhook_retry_delays=(0.1, 0.1, 0.1), webhook_timeout=5.0, sweep_interval=0.05)


@dataclass
class Yinzi:
    client: TestClient
    db: Database
    account: Account
    orpheus: Orpheus

    def as_user(self, account: Account) -> Orpheus:
        return Orpheus(self.orpheus.session, self.orpheus.base_url, account.key)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def start_yinzi(
    database_url: str | None, make_client: Callable[[Settings], Any], http: aiohttp.ClientSession
) -> Callable[..., Any]:
    """Starts yinzi with the given settings. (Asking for the database first keeps it until the app stops.)"""

    async def start(settings: Settings, points: int = 1000) -> Yinzi:
        client: TestClient = await make_client(settings)
        account = await add_account(client.app[DB], points=points)
        base = str(client.server.make_url("/"))
        return Yinzi(client, client.app[DB], account, Orpheus(http, base, account.key))

    return start


@pytest.fixture
async def start_receiver(aiohttp_server: Callable[..., Any]) -> Callable[..., Any]:
    async def start(secret: str, plan: list[int]) -> tuple[Receiver, str]:
        receiver = Receiver(secret, plan)
        app = web.Application()
        app.router.add_post("/webhook", receiver.handle)
        server: TestServer = await aiohttp_server(app)
        return receiver, str(server.make_url("/webhook"))

    return start


async def settled_history(db: Database, number: str) -> list[dict[str, Any]]:
    """The webhook's attempts once it was delivered or given up (recorded after the receiver answered)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        history = await db.webhook_history(number)
        if history and (history[0]["delivered_at"] or history[0]["gave_up_at"]):
            return history
        assert time.monotonic() < deadline, history
        await asyncio.sleep(0.05)


async def charges(db: Database, account: Account, order_no: str) -> list[dict[str, Any]]:
    return [row for row in await db.ledger(account.user_id) if row["ref"] == order_no]


def order_no(job: dict[str, Any]) -> str:
    job_id: str = job["id"]
    assert job_id.startswith("job_")
    return job_id.removeprefix("job_")


# ---- tests -----------------------------------------------------------------------------------------------


async def test_resumed_upload_transcribed_webhook_retried_and_charged_once(
    start_yinzi: Callable[..., Any],
    start_receiver: Callable[..., Any],
    engine_settings: Settings,
    media_dir: Path,
) -> None:
    yz: Yinzi = await start_yinzi(quick_webhooks(engine_settings))
    orpheus, db, account = yz.orpheus, yz.db, yz.account
    receiver, hook = await start_receiver(await db.webhook_secret(account.user_id), [500, 503, 200])

    # Step 1 and 2, with the connection lost halfway: resume from bytes_received with Content-Range.
    data = (media_dir / "tone.wav").read_bytes()
    size, half = len(data), len(data) // 2
    session = await orpheus.create_upload("meeting.wav", "audio/wav", size)
    assert session["state"] == "pending" and session["bytes_received"] == 0
    assert session["expires_at"].endswith("Z") and session["upload_id"].startswith("up_")
    assert (
        await orpheus.put(session["upload_url"], data[:half], "audio/wav", f"bytes 0-{half - 1}/{size}")
        == 200
    )
    state = await orpheus.get_upload(session["upload_id"])
    assert (state["state"], state["bytes_received"]) == ("uploading", half)
    start = state["bytes_received"]
    assert (
        await orpheus.put(state["upload_url"], data[start:], "audio/wav", f"bytes {start}-{size - 1}/{size}")
        == 200
    )
    assert (await orpheus.get_upload(session["upload_id"]))["state"] == "uploaded"

    # Step 3: complete (idempotent), then the job.
    done = await orpheus.complete(session["upload_id"])
    assert done["state"] == "completed" and done["sha256"] == hashlib.sha256(data).hexdigest()
    assert done["upload_url"] is None and done["duration_seconds"] == pytest.approx(2.0, abs=0.05)
    assert await orpheus.complete(session["upload_id"]) == done
    job = await orpheus.create_job(session["upload_id"], "transcribe", hook, language="en")
    assert job["status"] in ("queued", "processing") and job["task"] == "transcribe"
    assert job["result"] is None and job["cost"] is None and job["error"] is None
    number = order_no(job)

    # One signed POST when it ends; two non-2xx answers are retried, the third attempt is taken.
    await receiver.wait_calls(3)
    assert all(call["verified"] for call in receiver.calls)
    history = await settled_history(db, number)
    assert [attempt["status"] for attempt in history] == [500, 503, 200]
    sent = receiver.calls[-1]["body"]
    assert sent["id"] == job["id"] and sent["status"] == "succeeded" and sent["progress"] == 100
    result = sent["result"]
    assert result["language"] == "en" and result["duration"] == pytest.approx(2.0, abs=0.05)
    assert isinstance(result["text"], str) and isinstance(result["segments"], list)
    assert isinstance(result["words"], list) and result["speakers"] is None
    assert set(result["files"]) == {"caption", "text", "json"}
    # The webhook carried the result, so it was the delivery that charged: once, over three attempts.
    [charge] = await charges(db, account, number)
    assert charge["delta"] == -sent["cost"] and sent["cost"] > 0
    # A receiver that tampers or replays gets a refusal from verify.
    raw, header = receiver.calls[-1]["raw"], receiver.calls[-1]["headers"][SIGNATURE_HEADER]
    with pytest.raises(ValueError, match="bad signature"):
        verify(raw.replace("succeeded", "failed"), header, await db.webhook_secret(account.user_id))

    # Polling the same job: the same result, and two polls at once still make one ledger row.
    first, second = await asyncio.gather(orpheus.get_job(job["id"]), orpheus.get_job(job["id"]))
    assert first["result"]["text"] == second["result"]["text"] == result["text"]
    assert first["cost"] == sent["cost"]
    assert len(await charges(db, account, number)) == 1
    async with orpheus.session.get(first["result"]["files"]["caption"]) as resp:  # signed: no key
        assert resp.status == 200

    # The native API sees the same order.
    resp = await yz.client.get(
        "/api/open/v1/order/query", params={"orderNo": number}, headers=account.headers
    )
    native = (await resp.json())["data"]
    assert (native["orderType"], native["status"], native["payStatus"]) == ("extract-text", "finish", "paid")
    assert native["cost"] == sent["cost"] and native["balance"] == 1000 - sent["cost"]


async def test_ingest_fills_an_upload_or_fails_with_a_reason(
    start_yinzi: Callable[..., Any],
    settings: Settings,
    media_url: Callable[[str], str],
    aiohttp_server: Callable[..., Any],
) -> None:
    yz: Yinzi = await start_yinzi(settings)
    orpheus = yz.orpheus

    ingest = await orpheus.ingest(media_url("/m/tone.wav"))
    assert ingest["state"] in ("ingesting", "completed") and ingest["upload_url"] is None
    upload = await orpheus.wait_upload(ingest["upload_id"])
    assert upload["state"] == "completed", upload
    assert upload["file_name"] == "tone.wav" and upload["mime_type"] == "audio/x-wav"
    assert upload["duration_seconds"] == pytest.approx(2.0, abs=0.05)
    assert upload["size_bytes"] == upload["bytes_received"] > 0
    assert await orpheus.complete(upload["upload_id"]) == upload  # idempotent for an ingest too
    job = await orpheus.create_job(upload["upload_id"], "transcribe", None)
    assert job["upload_id"] == upload["upload_id"] and job["status"] in ("queued", "processing")

    # Best effort: what cannot be fetched or is not media fails with a reason, read like any state.
    async def not_audio(request: web.Request) -> web.Response:
        return web.Response(text="meeting notes, not audio" * 40)

    notes = web.Application()
    notes.router.add_get("/notes.mp3", not_audio)
    notes_url = str((await aiohttp_server(notes)).make_url("/notes.mp3"))
    for url, reason in ((media_url("/m/missing.mp3"), "HTTP 404"), (notes_url, "unsupported media")):
        failed = await orpheus.wait_upload((await orpheus.ingest(url))["upload_id"])
        assert failed["state"] == "failed" and reason in failed["error"]["message"], failed
        with pytest.raises(OrpheusError) as refused:
            await orpheus.create_job(failed["upload_id"], "transcribe", None)
        assert refused.value.code == "invalid_request" and failed["upload_id"] in refused.value.message
        with pytest.raises(OrpheusError) as refused:
            await orpheus.complete(failed["upload_id"])
        assert refused.value.code == "invalid_request" and reason in refused.value.message
    await wait_for_order(yz.db, order_no(job))  # ended before the server stops


@pytest.mark.parametrize("backend", ["sqlite"])  # the subject is the stems; charging runs on both above
async def test_separation_jobs_give_signed_stems(
    start_yinzi: Callable[..., Any], engine_settings: Settings, media_dir: Path
) -> None:
    yz: Yinzi = await start_yinzi(engine_settings)
    orpheus = yz.orpheus
    upload_id = await orpheus.upload_file(media_dir / "tone.wav", "audio/wav")
    job = await orpheus.wait_job(
        (await orpheus.create_job(upload_id, "separate", None, output_format="wav"))["id"]
    )
    assert job["status"] == "succeeded" and job["error"] is None, job
    assert job["cost"] == engine_settings.prices["track-separation"]
    stems = {stem["name"]: stem for stem in job["result"]["stems"]}
    assert set(stems) == {"vocals", "accompaniment"}
    for stem in stems.values():
        assert stem["file_name"].endswith(".wav")
        async with orpheus.session.get(stem["url"]) as resp:  # signed: no key
            assert resp.status == 200 and (await resp.read())[:4] == b"RIFF"
    for task, stem in (("vocals", "vocals"), ("accompaniment", "accompaniment")):
        single = await orpheus.wait_job((await orpheus.create_job(upload_id, task, None))["id"])
        assert [(s["name"], s["file_name"]) for s in single["result"]["stems"]] == [(stem, f"{stem}.mp3")]


async def test_failed_job_costs_nothing_and_its_webhook_is_tried_four_times(
    start_yinzi: Callable[..., Any], start_receiver: Callable[..., Any], settings: Settings, media_dir: Path
) -> None:
    yz: Yinzi = await start_yinzi(quick_webhooks(settings.replace(max_duration=1)))
    receiver, hook = await start_receiver(await yz.db.webhook_secret(yz.account.user_id), [500])
    upload_id = await yz.orpheus.upload_file(media_dir / "tone.wav", "audio/wav")  # 2 s: over the limit
    job = await yz.orpheus.create_job(upload_id, "transcribe", hook)
    number = order_no(job)

    history = await settled_history(yz.db, number)
    assert [attempt["status"] for attempt in history] == [500] * 4  # the first try and three retries
    assert len(receiver.calls) == 4 and all(call["verified"] for call in receiver.calls)
    sent = receiver.calls[0]["body"]
    assert (sent["status"], sent["cost"], sent["result"]) == ("failed", 0, None)
    assert sent["error"]["code"] == "job_failed" and "longest" in sent["error"]["message"]
    polled = await yz.orpheus.get_job(job["id"])
    assert polled["status"] == "failed" and polled["cost"] == 0
    assert await charges(yz.db, yz.account, number) == []
    assert await yz.db.balance(yz.account.user_id) == 1000


async def test_a_short_balance_withholds_the_result_until_a_top_up(
    start_yinzi: Callable[..., Any], engine_settings: Settings, media_dir: Path
) -> None:
    price = engine_settings.prices["extract-text"]  # a 2 s file is one minute
    yz: Yinzi = await start_yinzi(engine_settings, points=price)
    upload_id = await yz.orpheus.upload_file(media_dir / "tone.wav", "audio/wav")
    # Both are admitted (the balance pays one minute); only one of them can be paid for.
    jobs = [await yz.orpheus.create_job(upload_id, "transcribe", None, diarize=d) for d in (True, False)]
    for job in jobs:
        await wait_for_order(yz.db, order_no(job))
    paid = await yz.orpheus.get_job(jobs[0]["id"])
    assert paid["status"] == "succeeded" and paid["cost"] == price and paid["result"] is not None
    assert paid["diarize"] is True and isinstance(paid["result"]["speakers"], list)
    with pytest.raises(OrpheusError) as short:
        await yz.orpheus.get_job(jobs[1]["id"])
    assert (short.value.status, short.value.code) == (402, "insufficient_credits")
    assert await charges(yz.db, yz.account, order_no(jobs[1])) == []
    await yz.db.grant_points(yz.account.user_id, price)
    # A result the server cannot read is a 500 naming the request, and is not charged for.
    transcript = yz.client.app[SETTINGS].results_dir / order_no(jobs[1]) / "transcript.json"
    kept = transcript.read_bytes()
    transcript.write_text("{not json")
    with pytest.raises(OrpheusError) as failed:
        await yz.orpheus.get_job(jobs[1]["id"])
    assert (failed.value.status, failed.value.code) == (500, "internal_error")
    assert failed.value.request_id in failed.value.message
    assert await charges(yz.db, yz.account, order_no(jobs[1])) == []
    transcript.write_bytes(kept)
    topped = await yz.orpheus.get_job(jobs[1]["id"])
    assert topped["result"] is not None and topped["result"]["speakers"] is None
    assert len(await charges(yz.db, yz.account, order_no(jobs[1]))) == 1
    assert await yz.db.balance(yz.account.user_id) == 0
    # With nothing left, a new job is refused at once and nothing is made.
    with pytest.raises(OrpheusError) as refused:
        await yz.orpheus.create_job(upload_id, "transcribe", None)
    assert (refused.value.status, refused.value.code) == (402, "insufficient_credits")


async def test_errors_speak_orpheus(
    start_yinzi: Callable[..., Any], settings: Settings, media_dir: Path
) -> None:
    yz: Yinzi = await start_yinzi(settings)
    orpheus = yz.orpheus

    async def error(call: Any) -> OrpheusError:
        with pytest.raises(OrpheusError) as caught:
            await call
        return caught.value

    # 401: no key, a wrong key.
    for key in (None, "ahk_not-a-key"):
        e = await error(yz.as_user(Account("x", 0, key or "")).create_upload("a.mp3", "audio/mpeg", 10))
        assert (e.status, e.code) == (401, "unauthorized")
    # 400: missing, mistyped, unknown and unsafe fields, each named.
    for body, words in (
        ({"file_name": "a.mp3", "mime_type": "audio/mpeg"}, "size_bytes is required"),
        ({"file_name": "a.mp3", "mime_type": "audio/mpeg", "size_bytes": "10"}, "size_bytes"),
        ({"file_name": "../a.mp3", "mime_type": "audio/mpeg", "size_bytes": 10}, "plain file name"),
        (
            {"file_name": "a.mp3", "mime_type": "audio/mpeg", "size_bytes": 10, "bucket": "x"},
            "unknown field: bucket",
        ),
    ):
        e = await error(orpheus.call("POST", "/v1/audio/uploads", json=body))
        assert (e.status, e.code) == (400, "invalid_request") and words in e.message, e.message
    e = await error(orpheus.call("POST", "/v1/audio/uploads", data=b"{"))
    assert (e.status, e.code) == (400, "invalid_request")
    # 413: over 2 GB; 415: not audio or video, declared or found out on completion.
    e = await error(orpheus.create_upload("big.wav", "audio/wav", 2 * GIB + 1))
    assert (e.status, e.code) == (413, "file_too_large") and "2 GiB" in e.message
    e = await error(orpheus.create_upload("notes.txt", "text/plain", 10))
    assert (e.status, e.code) == (415, "unsupported_media_type") and "mime_type" in e.message
    text = b"hello, not audio" * 8
    session = await orpheus.create_upload("fake.mp3", "audio/mpeg", len(text))
    assert await orpheus.put(session["upload_url"], text, "audio/mpeg") == 200
    e = await error(orpheus.complete(session["upload_id"]))
    assert (e.status, e.code) == (415, "unsupported_media_type")
    # A job on an upload that is not complete names it; unknown ids are 404.
    partial = await orpheus.create_upload("a.wav", "audio/wav", 100)
    e = await error(orpheus.create_job(partial["upload_id"], "transcribe", None))
    assert (e.status, e.code) == (400, "invalid_request") and partial["upload_id"] in e.message
    e = await error(orpheus.complete(partial["upload_id"]))
    assert (e.status, e.code) == (400, "invalid_request") and "0 of 100" in e.message
    upload_id = await orpheus.upload_file(media_dir / "tone.wav", "audio/wav")
    for body, words in (
        ({"task": "summarize"}, "task"),
        ({"task": "transcribe", "language": "xx"}, "language must be a language code"),
        ({"task": "transcribe", "callback_url": "ftp://example.com/hook"}, "callback_url"),
        ({"task": "transcribe", "callback_url": "http://10.0.0.1/hook"}, "callback_url"),
        ({"task": "vocals", "diarize": True}, "transcribe only"),
        ({"task": "transcribe", "upload_id": "nope"}, "upload_id"),
    ):
        e = await error(orpheus.call("POST", "/v1/audio/jobs", json={"upload_id": upload_id, **body}))
        assert (e.status, e.code) == (400, "invalid_request") and words in e.message, e.message
    e = await error(orpheus.ingest("http://169.254.169.254/latest/meta-data"))
    assert (e.status, e.code) == (400, "invalid_request") and e.message.startswith("url")
    for call in (
        orpheus.get_job("job_" + "A" * 18),
        orpheus.get_job("nope"),
        orpheus.get_upload("up_" + "A" * 24),
        orpheus.create_job("up_" + "A" * 24, "transcribe", None),
    ):
        e = await error(call)
        assert (e.status, e.code) == (404, "not_found")
    # Another user's upload and job look missing.
    job = await orpheus.create_job(upload_id, "transcribe", None)
    other = yz.as_user(await add_account(yz.db))
    for call in (other.get_job(job["id"]), other.get_upload(upload_id)):
        assert (await error(call)).status == 404
    # A native order is not an Orpheus job.
    resp = await yz.client.post(
        "/api/open/v1/order/create",
        json={"orderType": "extract-text", "stuff": {"uploadId": upload_id}},
        headers=yz.account.headers,
    )
    native = (await resp.json())["data"]["orderNo"]
    assert (await error(orpheus.get_job("job_" + native))).status == 404
    # The document of the server lists this API under its own tag, with its error shape.
    doc = await (await yz.client.get("/openapi.json")).json()
    orpheus_paths = {
        p: item for p, item in doc["paths"].items() if any(op["tags"] == ["orpheus"] for op in item.values())
    }
    assert len(orpheus_paths) == 6 and any(tag["name"] == "orpheus" for tag in doc["tags"])
    jobs = orpheus_paths["/v1/audio/jobs"]["post"]
    assert jobs["tags"] == ["orpheus"] and {"400", "401", "402", "404", "429", "500", "502"} <= set(
        jobs["responses"]
    )
    assert jobs["responses"]["402"]["content"]["application/json"]["schema"]["$ref"].endswith("/OrpheusError")
    # 429: over the key's requests per minute, with Retry-After.
    user = await yz.db.user_by_name(yz.account.name)
    assert user is not None
    limited = yz.as_user(Account(user.name, user.id, (await create_key(yz.db, user, rate_limit=2)).key))
    await limited.get_upload(upload_id)
    await limited.get_upload(upload_id)
    e = await error(limited.get_upload(upload_id))
    assert (e.status, e.code) == (429, "rate_limit_exceeded") and int(e.headers["Retry-After"]) > 0
    for number in (order_no(job), native):  # ended before the server stops
        await wait_for_order(yz.db, number)


async def test_a_queue_that_is_down_is_a_502(
    start_yinzi: Callable[..., Any], settings: Settings, media_dir: Path
) -> None:
    """Redis (the job queue) stops: creating a job is a 502 in Orpheus' shape, and the order made for it
    ends failed, costing nothing."""
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed"
    port = free_port()
    redis = await asyncio.create_subprocess_exec(
        server, "--port", str(port), "--save", "", "--appendonly", "no", stdout=asyncio.subprocess.DEVNULL
    )
    try:
        yz: Yinzi = await start_redis_yinzi(start_yinzi, settings, port)
        upload_id = await yz.orpheus.upload_file(media_dir / "tone.wav", "audio/wav")
        redis.terminate()
        await redis.wait()
        with pytest.raises(OrpheusError) as down:
            await yz.orpheus.create_job(upload_id, "transcribe", None)
        assert (down.value.status, down.value.code) == (502, "internal_error")
        [row] = await yz.db._all("SELECT order_no, status FROM orders")
        assert row["status"] == "failed" and await charges(yz.db, yz.account, row["order_no"]) == []
    finally:
        if redis.returncode is None:
            redis.kill()
            await redis.wait()


async def start_redis_yinzi(start_yinzi: Callable[..., Any], settings: Settings, port: int) -> Yinzi:
    deadline = time.monotonic() + 10
    while True:  # until redis-server listens
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            await asyncio.sleep(0.05)
    # No rate limit, so the request reaches the queue rather than failing at the (Redis) limiter first.
    yz: Yinzi = await start_yinzi(settings.replace(redis_url=f"redis://127.0.0.1:{port}/0", rate_limit=0))
    return yz


@pytest.mark.parametrize("backend", ["sqlite"])  # the subject is the words, not the database
async def test_real_whisper_words_reach_the_customer(
    start_yinzi: Callable[..., Any], settings: Settings, real_models: Path
) -> None:
    yz: Yinzi = await start_yinzi(
        settings.replace(
            engines={}, model_dir=real_models, whisper_model="tiny.en", whisper_engine="faster-whisper"
        )
    )
    upload_id = await yz.orpheus.upload_file(EVAL / "jfk.flac", "audio/flac")
    job = await yz.orpheus.wait_job((await yz.orpheus.create_job(upload_id, "transcribe", None))["id"])
    assert job["status"] == "succeeded", job
    result = job["result"]
    text = " ".join(result["text"].lower().replace(",", " ").split())
    assert "ask not what your country" in text, result["text"]
    words = [w["word"].strip(" ,.").lower() for w in result["words"]]
    assert "country" in words and all(
        0 <= w["start"] <= w["end"] <= result["duration"] for w in result["words"]
    )
    assert result["language"] == "en" and result["segments"]
