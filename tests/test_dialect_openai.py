"""OpenAI's audio API as its customers call it: the official ``openai`` package pointed at a running yinzi.

Where the words matter, real Whisper weights (tiny.en as whisper-1, base for translation) on real speech: the
JFK clip and one short Mandarin sentence, through one server that every format test shares, so each model
loads once. Money and errors use the tiny random Whisper (words do not matter there) on servers of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
import openai
import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient
from openai import AsyncOpenAI, OpenAI

from tests.conftest import PATIENCE, Account, add_account, wait_for_order
from tests.support.speech_eval import EVAL, read_16k, wer, write_wav
from workers.engines.whisper_backends import Decoding, load_backend
from yinzi.app import create_app
from yinzi.appkeys import DB, SETTINGS
from yinzi.declare import openapi_document
from yinzi.dialects import openai_audio
from yinzi.settings import WHISPER_ENGINES, Settings

JFK = EVAL / "jfk.flac"
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
# "Sometimes I can't say it clearly, you know?" (2 s), for translation into English.
MANDARIN = EVAL / "fireredasr_zh/TEST_NET_Y0000000000_-KTKHdZ2fb8_S00000.wav"
HAN = re.compile(r"[\u4e00-\u9fff]")
SRT_TIME = re.compile(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)")
VTT_TIME = re.compile(r"\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d")
MAX_WER = 0.1  # tiny.en gets JFK word for word but for punctuation; a little room for a busy machine's luck
T = TypeVar("T")


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject is the API; the order core's database tests run on both


@dataclass
class Served:
    """A yinzi running on its own event loop in a thread, so blocking clients can call it."""

    url: str
    app: web.Application
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def whisper_server(tmp_path_factory: pytest.TempPathFactory, real_models: Path) -> Iterator[Served]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("openai") / "data",
        secret_key=b"test-secret",
        model_dir=real_models,
        whisper_model="tiny.en",
        whisper_engine="faster-whisper",
        engine_threads=1,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="yinzi-openai-test", daemon=True)
    thread.start()
    runner = web.AppRunner(create_app(settings))

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    url = asyncio.run_coroutine_threadsafe(start(), loop).result()
    try:
        yield Served(url, runner.app, loop)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.fixture(scope="module")
def customer(whisper_server: Served) -> Account:
    return whisper_server.call(add_account(whisper_server.app[DB], points=10_000))


@pytest.fixture(scope="module")
def oai(whisper_server: Served, customer: Account) -> Iterator[OpenAI]:
    """The client as the package's README writes it, with only the base URL and the key changed."""
    with OpenAI(base_url=f"{whisper_server.url}/v1", api_key=customer.key) as client:
        yield client


def transcribe(oai: OpenAI, path: Path = JFK, **options: Any) -> Any:
    with path.open("rb") as audio:
        return oai.audio.transcriptions.create(model="whisper-1", file=audio, **options)


def cue_times(srt: str) -> list[tuple[float, float]]:
    times = []
    for m in SRT_TIME.finditer(srt):
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in m.groups())
        times.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000))
    return times


# ---- every response format, real weights --------------------------------------------------------------


def test_json_is_the_words_and_is_charged_once(
    whisper_server: Served, customer: Account, oai: OpenAI
) -> None:
    db = whisper_server.app[DB]
    before = whisper_server.call(db.balance(customer.user_id))
    with JFK.open("rb") as audio:
        raw = oai.audio.transcriptions.with_raw_response.create(model="whisper-1", file=audio)
    result = raw.parse()
    assert isinstance(result, openai.types.audio.Transcription)
    assert wer(JFK_TEXT, result.text) <= MAX_WER, result.text
    assert result.usage is not None and result.usage.type == "duration" and result.usage.seconds == 11
    assert raw.headers["x-request-id"]
    # The order is an ordinary one: charged once (one started minute of extract-text), visible natively.
    order_no = raw.headers["x-order-no"]
    assert whisper_server.call(db.balance(customer.user_id)) == before - 5
    for _ in range(2):
        native = httpx.get(
            f"{whisper_server.url}/api/open/v1/order/query",
            params={"orderNo": order_no},
            headers=customer.headers,
        ).json()["data"]
        assert (native["status"], native["payStatus"], native["cost"]) == ("finish", "paid", 5)
        assert native["balance"] == before - 5
    order = whisper_server.call(db.order(order_no))
    assert order is not None and order.api == "openai" and order.priority == "queue"


def test_text(oai: OpenAI) -> None:
    text = transcribe(oai, response_format="text")
    assert isinstance(text, str) and text.endswith("\n") and "\n" not in text.strip()
    assert wer(JFK_TEXT, text) <= MAX_WER, text


def test_srt(oai: OpenAI) -> None:
    srt = transcribe(oai, response_format="srt")
    times = cue_times(srt)
    assert times and all(0 <= start < end <= 11.0 for start, end in times)
    assert [start for start, _ in times] == sorted(start for start, _ in times)
    assert srt.lstrip().startswith("1\n")
    spoken = " ".join(line for line in srt.splitlines() if line and not line.isdigit() and "-->" not in line)
    assert wer(JFK_TEXT, spoken) <= MAX_WER, srt


def test_vtt(oai: OpenAI) -> None:
    vtt = transcribe(oai, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n")
    cues = vtt.removeprefix("WEBVTT\n\n").strip().split("\n\n")
    assert cues and all(VTT_TIME.fullmatch(cue.split("\n")[0]) for cue in cues), vtt
    spoken = " ".join(" ".join(cue.split("\n")[1:]) for cue in cues)
    assert wer(JFK_TEXT, spoken) <= MAX_WER, vtt


def test_verbose_json_with_words_and_segments(oai: OpenAI) -> None:
    result = transcribe(oai, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert isinstance(result, openai.types.audio.TranscriptionVerbose)
    assert result.language == "english" and result.model_extra and result.model_extra["task"] == "transcribe"
    assert result.duration == pytest.approx(11.0, abs=0.05)
    assert wer(JFK_TEXT, result.text) <= MAX_WER, result.text
    assert result.segments and result.words
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    for segment in result.segments:
        assert 0 <= segment.start < segment.end <= result.duration
        assert segment.tokens and segment.seek >= 0 and segment.avg_logprob < 0
        assert 0 <= segment.no_speech_prob <= 1 and segment.compression_ratio > 0 and segment.temperature >= 0
    assert " ".join(w.word for w in result.words) == " ".join(result.text.split())
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and all(w.start <= w.end <= result.duration for w in result.words)
    # The words where they are said: "ask not" is over at about 3.9 s, "country." at about 10.5 s.
    ask = next(w for w in result.words if w.word.lower().startswith("ask"))
    assert 3.0 < ask.end < 5.0 and 9.0 < result.words[-1].end <= 11.0, result.words


def test_temperature_starts_the_schedule(oai: OpenAI) -> None:
    """Above 0 every pass samples, from the asked temperature up; at 0 (the default) beam search decodes."""
    sampled = transcribe(oai, response_format="verbose_json", temperature=0.6)
    assert sampled.segments and all(s.temperature >= 0.6 for s in sampled.segments), sampled.segments
    assert wer(JFK_TEXT, sampled.text) <= 0.35, (
        sampled.text
    )  # sampled: looser than beam search, still the speech
    default = transcribe(oai, response_format="verbose_json")
    assert default.segments and all(s.temperature == 0 for s in default.segments)


def test_verbose_json_with_words_only(oai: OpenAI) -> None:
    result = transcribe(oai, response_format="verbose_json", timestamp_granularities=["word"])
    assert result.words and result.segments is None
    assert wer(JFK_TEXT, " ".join(w.word for w in result.words)) <= MAX_WER, result.words


def test_translation_is_english(oai: OpenAI) -> None:
    """Mandarin in, English out, with segments (the default granularity) and no words."""
    with MANDARIN.open("rb") as audio:
        english = oai.audio.translations.create(model="base", file=audio, response_format="verbose_json")
    assert isinstance(english, openai.types.audio.TranslationVerbose)
    assert english.language == "english" and english.model_extra == {"task": "translate"}
    assert not HAN.search(english.text) and len(re.findall(r"[A-Za-z]+", english.text)) >= 3, english.text
    assert english.segments and " ".join(s.text for s in english.segments) == english.text


def test_models_list_what_can_run(oai: OpenAI) -> None:
    ids = [m.id for m in oai.models.list()]
    assert ids == ["whisper-1", "base", "tiny.en"]
    assert oai.models.retrieve("whisper-1").owned_by == "yinzi"
    with pytest.raises(openai.NotFoundError) as caught:
        oai.models.retrieve("large-v3")
    assert caught.value.code == "model_not_found"
    with JFK.open("rb") as audio, pytest.raises(openai.NotFoundError) as caught:
        oai.audio.transcriptions.create(model="large-v3", file=audio)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"  # type: ignore[attr-defined]


def test_a_bad_key_is_401(whisper_server: Served) -> None:
    with OpenAI(base_url=f"{whisper_server.url}/v1", api_key="yz_not-a-key") as stranger:
        with pytest.raises(openai.AuthenticationError) as caught:
            stranger.models.list()
        assert caught.value.code == "invalid_api_key"
        assert caught.value.body == {
            "message": caught.value.body["message"],  # type: ignore[index]
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
        with JFK.open("rb") as audio, pytest.raises(openai.AuthenticationError):
            stranger.audio.transcriptions.create(model="whisper-1", file=audio)
    reply = httpx.get(f"{whisper_server.url}/v1/models")
    assert reply.status_code == 401 and "didn't provide an API key" in reply.json()["error"]["message"]


def test_the_task_option_reaches_both_whisper_engines(real_models: Path) -> None:
    """Mandarin, named as such: without the task reaching the decoder the text would be Chinese."""
    audio = read_16k(MANDARIN).copy()  # writable, as the engine's own reader gives it
    for engine in WHISPER_ENGINES:
        whisper = load_backend(engine, real_models, "base", 1)
        english = " ".join(s["text"] for s in whisper.transcribe(audio, Decoding("zh", None, 1, "translate")))
        assert not HAN.search(english) and len(re.findall(r"[A-Za-z]+", english)) >= 3, (engine, english)


# ---- limits, money and errors, tiny models ------------------------------------------------------------


def async_client(client: TestClient, account: Account, **options: Any) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=account.key, **options)


@pytest.fixture
async def tiny(
    make_client: Callable[[Settings], Any], engine_settings: Settings
) -> Callable[..., Awaitable[tuple[TestClient, Account]]]:
    async def make(points: int = 1000, **changes: Any) -> tuple[TestClient, Account]:
        client: TestClient = await make_client(engine_settings.replace(**changes))
        return client, await add_account(client.app[DB], points=points)

    return make


def tone(path: Path, seconds: float) -> Path:
    import numpy as np

    t = np.arange(int(seconds * 16_000)) / 16_000
    return write_wav(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))


async def orders_of(client: TestClient, account: Account) -> list[Any]:
    return await client.app[DB].orders_of(account.user_id, 100)


async def test_a_file_over_the_synchronous_limit_is_413(tiny: Any, tmp_path: Path) -> None:
    client, account = await tiny(openai_max_file_bytes=100_000)
    async with async_client(client, account) as oai:
        # Far over: refused on its Content-Length; just over: refused as its bytes pass the limit.
        for seconds in (30.0, 3.2):
            audio = tone(tmp_path / f"{seconds}.wav", seconds)
            with pytest.raises(openai.APIStatusError) as caught:
                await oai.audio.transcriptions.create(model="whisper-1", file=audio)
            error = caught.value
            assert error.status_code == 413 and error.code == "file_too_large"
            assert "97.7 KiB (100000 bytes)" in error.message and "/api/open/v1/uploads" in error.message
    assert await orders_of(client, account) == []
    uploads = client.app[SETTINGS].uploads_dir
    assert not uploads.exists() or [p for p in uploads.rglob("*") if p.is_file()] == []  # nothing left


async def test_a_short_balance_is_insufficient_quota_and_results_wait_for_a_top_up(
    tiny: Any, tmp_path: Path
) -> None:
    client, account = await tiny(points=4)  # one minute of extract-text costs 5
    db = client.app[DB]
    audio = tone(tmp_path / "long.wav", 65.0)  # two started minutes: 10 points
    async with async_client(client, account) as oai:
        with pytest.raises(openai.RateLimitError) as caught:
            await oai.audio.transcriptions.create(model="whisper-1", file=audio)
        assert caught.value.code == "insufficient_quota" and caught.value.type == "insufficient_quota"
        assert await orders_of(client, account) == []  # refused before anything was made, and not retried

        await db.grant_points(account.user_id, 3)  # 7: enough to start, not enough to pay for two minutes
        with pytest.raises(openai.RateLimitError) as caught:
            await oai.audio.transcriptions.create(model="whisper-1", file=audio)
        assert caught.value.code == "insufficient_quota"
        order_no = caught.value.response.headers["x-order-no"]
        assert order_no in caught.value.message
    (order,) = await orders_of(client, account)  # one order: the package did not retry
    assert (order.order_no, order.status, order.pay_status) == (order_no, "finish", "waiting")
    assert await db.balance(account.user_id) == 7  # nothing charged

    await db.grant_points(account.user_id, 3)
    resp = await client.get("/api/open/v1/order/query", params={"orderNo": order_no}, headers=account.headers)
    data = (await resp.json())["data"]
    assert (data["payStatus"], data["cost"], data["balance"]) == ("paid", 10, 0)
    assert {s["name"] for s in data["stuffs"]} >= {"transcript.json", "caption.srt"}


async def test_a_wait_that_runs_out_is_504_and_the_order_runs_on(tiny: Any, tmp_path: Path) -> None:
    client, account = await tiny(openai_wait=0.0)
    async with async_client(client, account) as oai:
        with pytest.raises(openai.APIStatusError) as caught:
            await oai.audio.transcriptions.create(model="whisper-1", file=tone(tmp_path / "a.wav", 2.0))
    error = caught.value
    assert error.status_code == 504 and error.code == "timeout" and error.type == "server_error"
    order_no = error.response.headers["x-order-no"]
    assert f"orderNo={order_no}" in error.message
    (order,) = await orders_of(client, account)  # x-should-retry: false kept the package from trying again
    assert order.order_no == order_no
    await wait_for_order(client.app[DB], order_no)
    resp = await client.get("/api/open/v1/order/query", params={"orderNo": order_no}, headers=account.headers)
    data = (await resp.json())["data"]
    assert (data["status"], data["payStatus"], data["cost"]) == ("finish", "paid", 5)


async def test_a_client_that_hangs_up_is_not_charged(
    engine_settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Served as `yinzi serve` serves (a request outlives its client: aiohttp's default), not as aiohttp's test
    server does (which cancels it)."""
    monkeypatch.setattr(openai_audio, "CLIENT_CHECK_S", 0.05)
    caplog.set_level(logging.INFO, logger=openai_audio.__name__)
    runner = web.AppRunner(create_app(engine_settings))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        db = runner.app[DB]
        account = await add_account(db)
        form = FormData({"model": "whisper-1"})
        form.add_field(
            "file", tone(tmp_path / "a.wav", 2.0).read_bytes(), filename="a.wav", content_type="audio/wav"
        )
        async with aiohttp.ClientSession(f"http://{host}:{port}") as session:
            asking = asyncio.ensure_future(
                session.post("/v1/audio/transcriptions", data=form, headers=account.headers)
            )
            deadline = time.monotonic() + PATIENCE
            while not (placed := await db.orders_of(account.user_id, 1)):
                assert time.monotonic() < deadline and not asking.done(), "no order was placed"
                await asyncio.sleep(0.02)
            asking.cancel()  # hangs up while the order runs (its engine process is still starting)
            with contextlib.suppress(asyncio.CancelledError):
                await asking
            order = await wait_for_order(db, placed[0].order_no)
            # Until the request has noticed, or (wrongly) delivered the results to nobody.
            while "went away before its answer" not in caplog.text and order.pay_status == "waiting":
                assert time.monotonic() < deadline, "the request neither noticed nor delivered"
                await asyncio.sleep(0.02)
                order = await wait_for_order(db, order.order_no)
            assert (order.status, order.pay_status) == ("finish", "waiting")
            assert await db.balance(account.user_id) == 1000
            query = await session.get(
                "/api/open/v1/order/query", params={"orderNo": order.order_no}, headers=account.headers
            )
            data = (await query.json())["data"]
            assert (data["payStatus"], data["cost"], data["balance"]) == ("paid", 5, 995)
    finally:
        await runner.cleanup()


async def test_past_the_keys_rate_limit_is_429_with_retry_after(tiny: Any) -> None:
    client, account = await tiny(rate_limit=1)
    async with async_client(client, account, max_retries=0) as oai:  # the package would wait and retry
        listed = [m.id async for m in oai.models.list()]
        assert listed[0] == "whisper-1"
        with pytest.raises(openai.RateLimitError) as caught:
            await oai.models.list()
    error = caught.value
    assert (error.type, error.code) == ("requests", "rate_limit_exceeded")
    assert 0 < int(error.response.headers["Retry-After"]) <= 60


async def test_bad_requests_name_their_param(tiny: Any, tmp_path: Path) -> None:
    client, account = await tiny()
    audio = tone(tmp_path / "a.wav", 1.0)
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    async with async_client(client, account) as oai:
        for options, param in [
            ({"language": "klingon"}, "language"),
            ({"extra_body": {"response_format": "xml"}}, "response_format"),
            ({"temperature": 1.5}, "temperature"),
            ({"timestamp_granularities": ["sentence"]}, "timestamp_granularities"),
            ({"extra_body": {"speed": "2"}}, "speed"),
            ({"file": notes}, "file"),
        ]:
            with pytest.raises(openai.BadRequestError) as caught:
                await oai.audio.transcriptions.create(**{"model": "whisper-1", "file": audio, **options})
            assert caught.value.param == param, (options, caught.value.body)  # type: ignore[attr-defined]
            assert caught.value.type == "invalid_request_error"
        # Audio by its name though labelled otherwise is taken; a full language name is taken too.
        found = await oai.audio.transcriptions.create(
            model="whisper-1",
            file=("a.wav", audio.read_bytes(), "application/octet-stream"),
            language="English",
        )
        assert isinstance(found.text, str)
    no_file = FormData({"model": "whisper-1"}, default_to_multipart=True)
    resp = await client.post("/v1/audio/transcriptions", data=no_file, headers=account.headers)
    body = await resp.json()
    assert resp.status == 400 and body["error"]["param"] == "file", body
    resp = await client.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, headers=account.headers)
    assert resp.status == 400 and "multipart/form-data" in (await resp.json())["error"]["message"]
    # A file that says it is audio but is not: ffprobe decides, and nothing is ordered.
    form = FormData({"model": "whisper-1"})
    form.add_field("file", b"not audio at all", filename="song.mp3", content_type="audio/mpeg")
    resp = await client.post("/v1/audio/transcriptions", data=form, headers=account.headers)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_file_format"
    assert len(await orders_of(client, account)) == 1


def test_language_names_are_whispers() -> None:
    from whisper.tokenizer import LANGUAGES

    assert openai_audio.LANGUAGE_NAMES == LANGUAGES


def test_the_openapi_document_declares_the_form_and_the_answers() -> None:
    doc = openapi_document([openai_audio.endpoints], title="t", version="1", description="")
    operation = doc["paths"]["/v1/audio/transcriptions"]["post"]
    form = doc["components"]["schemas"]["OpenAITranscriptionForm"]
    assert operation["requestBody"]["content"]["multipart/form-data"]
    assert {"file", "model"} <= set(form["required"]) and form["properties"]["file"]["format"] == "binary"
    assert "timestamp_granularities[]" in form["properties"]
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/plain"}
    assert {"401", "413", "429", "504"} <= set(operation["responses"])
