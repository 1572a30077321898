"""The aiesa transcription API (seed 003) as its customers use it: a client written from the seed's curl lines (the
``printf "%s\\n%s" | openssl dgst -sha256 -hmac`` signature turned into code, the status polled until it is
done) against a running yinzi, with tiny random Whisper weights, a fixed-script engine where the words must be
known, and the real Whisper base weights on Mandarin speech once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdf
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from tests.conftest import BACKENDS, wait_for_order
from tests.support.llm import MODEL, StandInLlm
from tests.support.speech_eval import EVAL, cer
from yinzi.accounts import create_key
from yinzi.appkeys import DB, SETTINGS, SIGNER
from yinzi.settings import Settings
from yinzi.store import Database

SCRIPT_ENGINE = "tests.support.engines:ScriptEngine"
POLL_S = 0.2  # the seed's flow: create, then GET until completed or failed
PROMPT = "Ключевые моменты разговора"


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the dialect is the subject; the charge-once test below runs on both databases


class Aiesa:
    """What an aiesa customer writes from the seed: every request signed, the transcription polled."""

    def __init__(self, http: TestClient, public: str, secret: str) -> None:
        self.http = http
        self.public = public
        self.secret = secret

    def signed(self, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        # SIG=$(printf "%s\n%s" "$API_PUBLIC" "$TS" | openssl dgst -sha256 -hmac "$API_SECRET" -hex | sed 's/^.* //')
        sig = hmac.new(self.secret.encode(), f"{self.public}\n{ts}".encode(), hashlib.sha256).hexdigest()
        return {"X-Public-Key": self.public, "X-Timestamp": ts, "X-Signature": sig}

    async def calculate(self, priority: str, duration: Any) -> tuple[int, dict[str, Any]]:
        body = {"priority": priority, "duration": duration}
        resp = await self.http.post("/api/v1/transcriptions/calculate", json=body, headers=self.signed())
        return resp.status, await resp.json()

    async def create(self, fields: dict[str, str], file: Path | None = None) -> tuple[int, dict[str, Any]]:
        form = FormData(default_to_multipart=True)  # curl -F
        if file is not None:
            form.add_field(
                "file",
                io.BytesIO(file.read_bytes()),
                filename=file.name,
                content_type="application/octet-stream",
            )
        for name, value in fields.items():
            form.add_field(name, value)
        resp = await self.http.post("/api/v1/transcriptions", data=form, headers=self.signed())
        return resp.status, await resp.json()

    async def get(self, transcription_id: str) -> tuple[int, dict[str, Any]]:
        resp = await self.http.get(f"/api/v1/transcriptions/{transcription_id}", headers=self.signed())
        return resp.status, await resp.json()

    async def wait(self, transcription_id: str, timeout: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.get(transcription_id)
            assert status == 200, body
            if body["data"]["status"] in ("completed", "failed"):
                return dict(body["data"])
            assert time.monotonic() < deadline, body
            await asyncio.sleep(POLL_S)

    async def download(self, url: str) -> bytes:
        resp = await self.http.get(url.removeprefix(str(self.http.make_url(""))))
        assert resp.status == 200, url
        return await resp.read()


async def customer(client: TestClient, points: int = 1000, rate_limit: int | None = None) -> Aiesa:
    db: Database = client.app[DB]
    user = await db.create_user(f"aiesa-{uuid.uuid4().hex[:8]}", points)
    pair = await create_key(db, user, signer=client.app[SIGNER], rate_limit=rate_limit)
    assert pair.secret is not None
    return Aiesa(client, pair.key, pair.secret)


async def user_id(client: Aiesa) -> int:
    db: Database = client.http.app[DB]
    row = [k for k in await db.list_keys() if client.public.startswith(k.prefix)]
    user = await db.user_by_name(row[0].user_name)
    assert user is not None
    return user.id


@pytest.fixture
def script_settings(settings: Settings, llm_url: str) -> Settings:
    return settings.replace(engines={"extract-text": SCRIPT_ENGINE}, llm_url=llm_url)


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


async def order_of(client: Aiesa, transcription_id: str) -> str:
    db: Database = client.http.app[DB]
    order_no = await db.order_for_ref("aiesa", await user_id(client), transcription_id)
    assert order_no is not None
    return order_no


# ---- the flow -------------------------------------------------------------------------------------------------


async def test_an_uploaded_file_is_transcribed_reported_analysed_and_charged_once(
    make_client: Callable[[Settings], Any],
    script_settings: Settings,
    media_dir: Path,
    llm: StandInLlm,
) -> None:
    aiesa = await customer(await make_client(script_settings))
    status, created = await aiesa.create(
        {"language": "en", "priority": "queue", "enable_diarization": "true", "ai_prompt": PROMPT},
        media_dir / "long.mp3",
    )
    assert status == 201, created
    transcription_id = created.pop("transcription_id")
    assert uuid.UUID(transcription_id).version == 4
    assert created == {
        "status": "pending",
        "model": script_settings.whisper_model,
        "language": "en",
        "priority_type": "queue",
        "need_confirm": False,
        "message": "Transcription created. File processing started in background.",
    }
    data = await aiesa.wait(transcription_id)
    assert data["status"] == "completed" and data["progress"] == 100, data
    db: Database = aiesa.http.app[DB]
    uid = await user_id(aiesa)
    assert await db.balance(uid) == 1000 - 10  # 65 s: two started minutes at 5 points
    assert data["cost"] == 10 and data["minutes_billed"] == 2
    assert data["duration_seconds"] == pytest.approx(65, abs=0.1) and data["duration_minutes"] == 1.08
    assert data["filename"] == "long.mp3" and data["file_size"] == (media_dir / "long.mp3").stat().st_size
    assert data["source_type"] == "upload" and data["priority_type"] == "queue" and data["language"] == "en"
    assert data["error_message"] is None and data["model"] == script_settings.whisper_model
    for stamp in ("created_at", "started_at", "completed_at", "billed_at"):
        assert data[stamp].endswith("Z") and len(data[stamp]) == 20, data
    assert data["created_at"] <= data["started_at"] <= data["completed_at"] <= data["billed_at"]
    assert data["ai_analysis"] == {"model": MODEL, "prompt": PROMPT, "text": "answer 1", "error": None}
    assert "Good morning." in llm.user_messages()[0] and PROMPT in llm.user_messages()[0]

    results = data["results"]
    assert set(results) == {"text", "json", "pdf"}
    assert "Good morning." in (await aiesa.download(results["text"])).decode()
    assert json.loads(await aiesa.download(results["json"]))["speakers"] == ["S1", "S2"]
    report = pdf_text(await aiesa.download(results["pdf"]))
    for expected in (
        "long.mp3",
        "Duration: 00:01:05",
        "Speakers: S1, S2",
        "[00:00:21]  S2",
        "answer 1",
        PROMPT,
    ):
        assert expected in report, (expected, report)

    # Polled again: the same answer, nothing charged twice.
    status, again = await aiesa.get(transcription_id)
    assert status == 200 and again["data"]["billed_at"] == data["billed_at"]
    assert await db.balance(uid) == 990
    assert [e["delta"] for e in await db.ledger(uid) if e["kind"] == "order"] == [-10]


async def test_a_url_on_lightning_completes_when_the_model_fails_and_the_month_adds_up(
    make_client: Callable[[Settings], Any],
    script_settings: Settings,
    media_url: Callable[[str], str],
    llm: StandInLlm,
) -> None:
    llm.fail_status = 500
    aiesa = await customer(await make_client(script_settings))
    status, created = await aiesa.create(
        {
            "source_type": "url",
            "source_url": media_url("/m/tone.wav"),
            "priority": "lightning",
            "enable_diarization": "false",
            "ai_prompt": PROMPT,
        }
    )
    assert status == 201 and created["language"] == "auto" and created["priority_type"] == "lightning"
    data = await aiesa.wait(created["transcription_id"])
    assert data["status"] == "completed", data
    analysis = data["ai_analysis"]
    assert analysis["text"] is None and analysis["prompt"] == PROMPT
    assert "answered HTTP 500" in analysis["error"] and "the model crashed" in analysis["error"]
    assert data["source_type"] == "url" and data["filename"] == "tone.wav" and data["file_size"] is None
    assert data["language"] == "en"  # detected: none was asked for
    assert data["cost"] == 10 and data["minutes_billed"] == 1  # one minute, lightning at twice the price
    report = " ".join(pdf_text(await aiesa.download(data["results"]["pdf"])).split())  # lines unwrapped
    assert "Not available: the language model at" in report and "answered HTTP 500" in report

    status, quote = await aiesa.calculate("queue", "00:05")
    assert status == 200
    assert quote["balance"] == {
        "balance": 990,
        "currency": "points",
        "credit_limit": 0,
        "overdraft_enabled": False,
        "overdraft_used": 0,
        "available_credit": 990,
        "tariff_plan": "standard",
        "usage_current_month": {"minutes_lightning": 1, "minutes_queue": 0, "total_cost": 10},
    }


async def test_a_quote_reads_every_duration_form(client: TestClient) -> None:
    aiesa = await customer(client, points=42)
    for priority, duration, seconds, minutes, billed, cost in (
        ("queue", "00:05", 5, 0.08, 1, 5),  # the seed's own example: MM:SS
        ("queue", 120.5, 120.5, 2.01, 3, 15),
        ("lightning", "01:02:03", 3723, 62.05, 63, 630),
        ("queue", "90", 90, 1.5, 2, 10),
        ("queue", 60, 60, 1.0, 1, 5),
    ):
        status, quote = await aiesa.calculate(priority, duration)
        assert status == 200, quote
        balance = quote.pop("balance")
        assert quote == {
            "durationSeconds": seconds,
            "durationMinutes": minutes,
            "minutesBilled": billed,
            "cost": cost,
        }
        assert balance["balance"] == 42 and balance["usage_current_month"]["total_cost"] == 0
    for duration, words in (
        ("five minutes", "must look like MM:SS"),
        ("00:75", "below 60"),
        ("1:60:00", "below 60"),
        ("00:00", "above 0"),
        (-3, "above 0"),
        (10 * 3600 + 1, "at most 36000"),
        (True, "duration"),
    ):
        status, body = await aiesa.calculate("queue", duration)
        assert status == 400 and body["error"]["code"] == "validation_error", (duration, body)
        assert words in body["error"]["message"], (duration, body)
    status, body = await aiesa.calculate("express", "00:05")
    assert status == 400 and "priority" in body["error"]["message"]
    resp = await client.post(
        "/api/v1/transcriptions/calculate", json={"priority": "queue"}, headers=aiesa.signed()
    )
    assert resp.status == 400 and (await resp.json())["error"]["message"] == "duration is required"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_polls_at_once_charge_once(
    make_client: Callable[[Settings], Any], script_settings: Settings, media_dir: Path
) -> None:
    aiesa = await customer(await make_client(script_settings))
    status, created = await aiesa.create({"priority": "queue"}, media_dir / "tone.wav")
    assert status == 201, created
    db: Database = aiesa.http.app[DB]
    await wait_for_order(db, await order_of(aiesa, created["transcription_id"]))
    answers = await asyncio.gather(*(aiesa.get(created["transcription_id"]) for _ in range(2)))
    assert [status for status, _ in answers] == [200, 200]
    first, second = (body["data"] for _, body in answers)
    assert first["billed_at"] is not None and first["billed_at"] == second["billed_at"]
    assert first["cost"] == second["cost"] == 5
    uid = await user_id(aiesa)
    assert [e["delta"] for e in await db.ledger(uid) if e["kind"] == "order"] == [-5]
    assert await db.balance(uid) == 995


async def test_a_short_balance_withholds_the_results_until_topped_up(
    make_client: Callable[[Settings], Any], script_settings: Settings, media_dir: Path
) -> None:
    client = await make_client(script_settings)
    broke = await customer(client, points=4)
    status, body = await broke.create({}, media_dir / "tone.wav")
    assert status == 402 and body["error"]["code"] == "insufficient_funds"
    assert "needs at least 5 points to start; the balance is 4" in body["error"]["message"]

    aiesa = await customer(client, points=5)
    status, created = await aiesa.create({}, media_dir / "tone.wav")
    assert status == 201, created
    db: Database = client.app[DB]
    await wait_for_order(db, await order_of(aiesa, created["transcription_id"]))
    uid = await user_id(aiesa)
    await db.grant_points(uid, -3)
    status, body = await aiesa.get(created["transcription_id"])
    assert status == 402 and body == {
        "error": {
            "code": "insufficient_funds",
            "message": "Insufficient funds: the transcription costs 5 points and the balance is 2; "
            "top up and request it again",
        }
    }
    await db.grant_points(uid, 3)
    data = await aiesa.wait(created["transcription_id"])
    assert data["cost"] == 5 and data["billed_at"] is not None and data["results"] is not None
    assert await db.balance(uid) == 0

    # Past the retention the files go; the charge stays on record.
    assert await db.expire_results(time.time() + 1) == [await order_of(aiesa, created["transcription_id"])]
    status, body = await aiesa.get(created["transcription_id"])
    expired = body["data"]
    assert status == 200 and expired["status"] == "completed" and expired["results"] is None
    assert expired["error_message"] == "results expired" and expired["cost"] == 5
    assert expired["billed_at"] == data["billed_at"]


async def test_tiny_whisper_weights_make_every_result(
    make_client: Callable[[Settings], Any], engine_settings: Settings, media_dir: Path
) -> None:
    """The real engine's files feed the report. A tone holds no voice, so nothing is decoded (a random model
    decoding real speech runs for minutes) and the report says so."""
    aiesa = await customer(await make_client(engine_settings))
    status, created = await aiesa.create(
        {"language": "", "enable_diarization": "false"}, media_dir / "phone.wav"
    )
    assert status == 201 and created["model"] == engine_settings.whisper_model, created
    data = await aiesa.wait(created["transcription_id"])
    assert data["status"] == "completed" and data["ai_analysis"] is None, data
    transcript = json.loads(await aiesa.download(data["results"]["json"]))
    assert transcript["language"] is None and transcript["segments"] == []
    assert data["language"] == "auto"  # none asked for, none detected
    report = pdf_text(await aiesa.download(data["results"]["pdf"]))
    assert "phone.wav" in report and "Language: -" in report and "No speech was recognised." in report


# ---- errors and limits ------------------------------------------------------------------------------------------


def assert_error(status: int, body: dict[str, Any], expected: int, code: str, words: str) -> None:
    assert status == expected, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code and words in body["error"]["message"], body


async def test_requests_must_be_signed_by_a_live_key_within_five_minutes(client: TestClient) -> None:
    aiesa = await customer(client)
    url = "/api/v1/transcriptions/calculate"
    body = {"priority": "queue", "duration": "00:05"}
    now = int(time.time())
    forged = Aiesa(client, aiesa.public, "yzsk_" + "0" * 64)
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "X-Public-Key, X-Timestamp, X-Signature are required"),
        ({"Authorization": "Bearer yz_whatever"}, "X-Public-Key, X-Timestamp, X-Signature are required"),
        ({"X-Public-Key": aiesa.public}, "X-Timestamp and X-Signature are required"),
        (forged.signed(), "Invalid signature"),
        (aiesa.signed(now - 301), "more than 5 minutes"),
        (aiesa.signed(now + 301), "more than 5 minutes"),
        ({**aiesa.signed(), "X-Timestamp": "yesterday"}, "Unix time in seconds"),
    ]
    for headers, words in cases:
        resp = await client.post(url, json=body, headers=headers)
        assert_error(resp.status, await resp.json(), 401, "unauthorized", words)
    resp = await client.post(url, json=body, headers=aiesa.signed(now - 290))  # inside the window
    assert resp.status == 200
    db: Database = client.app[DB]
    await db.revoke_key(aiesa.public[:11])
    status, answer = await aiesa.calculate("queue", "00:05")
    assert_error(status, answer, 401, "unauthorized", "Invalid API Key")


async def test_past_the_keys_rate_the_answer_is_429_with_retry_after(client: TestClient) -> None:
    aiesa = await customer(client, rate_limit=2)
    for _ in range(2):
        assert (await aiesa.calculate("queue", 30))[0] == 200
    resp = await client.get("/api/v1/ai/models", headers=aiesa.signed())
    assert_error(
        resp.status, await resp.json(), 429, "too_many_requests", "rate limit of 2 requests per minute"
    )
    assert int(resp.headers["Retry-After"]) > 0


async def test_an_unknown_or_anothers_transcription_is_not_found(
    make_client: Callable[[Settings], Any], script_settings: Settings, media_dir: Path
) -> None:
    client = await make_client(script_settings)
    owner, stranger = await customer(client), await customer(client)
    status, created = await owner.create({}, media_dir / "tone.wav")
    assert status == 201
    for who, tid in ((stranger, created["transcription_id"]), (owner, str(uuid.uuid4())), (owner, "nope")):
        status, body = await who.get(tid)
        assert_error(status, body, 404, "not_found", f"transcription {tid} not found")


async def test_every_bad_form_is_refused_in_words_and_leaves_nothing_behind(
    client: TestClient, media_dir: Path
) -> None:
    aiesa = await customer(client)
    tone = media_dir / "tone.wav"
    cases: list[tuple[dict[str, str], Path | None, int, str, str]] = [
        ({}, None, 400, "validation_error", "file is required (or source_type=url with source_url)"),
        ({"source_type": "url", "source_url": "https://example.com/a.mp3"}, tone, 400, "validation_error", "not both"),
        ({"source_type": "url"}, None, 400, "validation_error", "source_url is required with source_type=url"),
        ({"source_url": "https://example.com/a.mp3"}, tone, 400, "validation_error", "goes with source_type=url"),
        ({"source_type": "url", "source_url": "ftp://example.com/a.mp3"}, None, 400, "validation_error", "source_url must be an http or https URL"),
        ({"source_type": "url", "source_url": "http://10.1.2.3/a.mp3"}, None, 400, "validation_error", "source_url: "),
        ({"source_type": "ftp"}, tone, 400, "validation_error", "source_type"),
        ({"language": "xx"}, tone, 400, "validation_error", "language must be auto or a language code"),
        ({"priority": "express"}, tone, 400, "validation_error", "priority"),
        ({"enable_diarization": "maybe"}, tone, 400, "validation_error", "enable_diarization"),
        ({"ai_prompt": "x" * 4001}, tone, 400, "validation_error", "ai_prompt"),
        ({"model": "large"}, tone, 400, "validation_error", "unknown field: model"),
        ({}, media_dir / "notes.mp3", 415, "unsupported_media_type", ""),
        ({}, media_dir / "empty.mp3", 415, "unsupported_media_type", ""),
    ]  # fmt: skip
    for fields, file, expected, code, words in cases:
        status, body = await aiesa.create(fields, file)
        assert_error(status, body, expected, code, words)
    resp = await client.post(
        "/api/v1/transcriptions", json={"source_type": "url", "source_url": "x"}, headers=aiesa.signed()
    )
    assert_error(resp.status, await resp.json(), 415, "unsupported_media_type", "multipart/form-data")
    resp = await client.post(
        "/api/v1/transcriptions",
        data={"source_type": "url", "source_url": "https://example.com/" + "a" * 70_000},
        headers=aiesa.signed(),
    )
    assert_error(resp.status, await resp.json(), 413, "file_too_large", "a form without a file is limited")
    db: Database = client.app[DB]
    assert await db.orders_of(await user_id(aiesa), 10) == []
    assert await db.balance(await user_id(aiesa)) == 1000
    settings: Settings = client.app[SETTINGS]
    leftovers = [p.name for p in settings.uploads_dir.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers  # refused files are deleted at once, not left to expire


async def test_a_file_past_the_size_cap_is_refused_while_it_streams(
    make_client: Callable[[Settings], Any], settings: Settings, media_dir: Path
) -> None:
    client = await make_client(settings.replace(max_download_bytes=50_000))
    aiesa = await customer(client)
    status, body = await aiesa.create({}, media_dir / "long.mp3")  # about 260 kB
    assert_error(status, body, 413, "file_too_large", "the limit is 50000 bytes")
    assert [p for p in settings.uploads_dir.rglob("*") if p.is_file()] == []


async def test_a_url_may_come_urlencoded(
    make_client: Callable[[Settings], Any], script_settings: Settings, media_url: Callable[[str], str]
) -> None:
    aiesa = await customer(await make_client(script_settings))
    form = {"source_type": "url", "source_url": media_url("/m/whole.mp3"), "language": "ru"}
    resp = await aiesa.http.post("/api/v1/transcriptions", data=form, headers=aiesa.signed())
    created = await resp.json()
    assert resp.status == 201 and created["language"] == "ru", created
    data = await aiesa.wait(created["transcription_id"])
    assert data["status"] == "completed" and data["filename"] == "whole.mp3" and data["language"] == "ru"


async def test_a_media_url_that_fails_ends_failed_and_costs_nothing(
    make_client: Callable[[Settings], Any], script_settings: Settings, media_url: Callable[[str], str]
) -> None:
    aiesa = await customer(await make_client(script_settings))
    status, created = await aiesa.create({"source_type": "url", "source_url": media_url("/m/missing.mp3")})
    assert status == 201
    data = await aiesa.wait(created["transcription_id"])
    assert data["status"] == "failed" and data["progress"] == 100 and data["cost"] == 0
    assert data["results"] is None and data["billed_at"] is None and data["completed_at"] is None
    assert "404" in data["error_message"], data
    assert await aiesa.http.app[DB].balance(await user_id(aiesa)) == 1000


# ---- AI models ---------------------------------------------------------------------------------------------------


async def test_ai_models_are_the_endpoints_or_none_with_a_note(
    make_client: Callable[[Settings], Any], settings: Settings, llm_url: str, llm: StandInLlm
) -> None:
    client = await make_client(settings.replace(llm_url=llm_url, llm_api_key="secret-llm-key"))
    aiesa = await customer(client)
    resp = await client.get("/api/v1/ai/models", headers=aiesa.signed())
    assert resp.status == 200 and await resp.json() == {
        "data": [{"id": MODEL, "owned_by": "tests"}],
        "default_model": MODEL,
        "note": None,
    }
    assert llm.authorizations == ["Bearer secret-llm-key"]
    llm.fail_status = 503
    resp = await client.get("/api/v1/ai/models", headers=aiesa.signed())
    assert_error(resp.status, await resp.json(), 502, "bad_gateway", "answered HTTP 503")


async def test_without_a_language_model_the_list_is_empty_and_says_why(client: TestClient) -> None:
    aiesa = await customer(client)
    resp = await client.get("/api/v1/ai/models", headers=aiesa.signed())
    assert resp.status == 200 and await resp.json() == {
        "data": [],
        "default_model": None,
        "note": "no language model is configured on this server (the operator sets YINZI_LLM_URL)",
    }


# ---- real weights ------------------------------------------------------------------------------------------------

MANDARIN = EVAL / "fireredasr_zh" / "BAC009S0764W0121.wav"  # AISHELL-1, read news
MANDARIN_TEXT = "甚至出现交易几乎停滞的情况"


async def test_mandarin_on_real_weights_gets_its_words_and_a_chinese_report(
    make_client: Callable[[Settings], Any], settings: Settings, real_models: Path, tmp_path: Path
) -> None:
    real = settings.replace(
        engines={}, model_dir=real_models, whisper_model="base", whisper_engine="faster-whisper"
    )
    aiesa = await customer(await make_client(real))
    status, created = await aiesa.create({"language": "auto", "priority": "queue"}, MANDARIN)
    assert status == 201 and created["model"] == "base" and created["language"] == "auto", created
    data = await aiesa.wait(created["transcription_id"])
    assert data["status"] == "completed" and data["language"] == "zh", data
    text = (await aiesa.download(data["results"]["text"])).decode()
    assert cer([(MANDARIN_TEXT, text)]) <= 0.2, text  # the quality tests' gate for Mandarin
    pdf = await aiesa.download(data["results"]["pdf"])
    (tmp_path / "mandarin.pdf").write_bytes(pdf)  # kept for a look at the rendering
    report = "".join(pdf_text(pdf).split())  # lines wrapped at any character: joined again
    assert MANDARIN.name in report and "Language:zh" in report and "Duration:00:00:04" in report
    assert "".join(text.split()) in report  # every recognised character, in order
    assert sum("\u4e00" <= c <= "\u9fff" for c in report) >= 10
