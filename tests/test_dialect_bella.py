"""Bella's transcriptions/file API against a running yinzi, driven the way a Bella customer's code drives it.

The customer's side is the document's own Python (``requests.post`` with a Bearer key and a JSON body), run in
a thread while yinzi serves on an aiohttp test server; the callback receiver is the document's Flask handler
as a local aiohttp app. The media comes from a local server too: a call made here with a Harvard sentence on
each channel. The engine runs the real Whisper tiny.en weights, so the words can be checked; they are also
the quick choice: random weights never reach a likely text, so Whisper decodes every window at all six
temperatures (a 1 s tone took minutes on a busy 2-core machine, where real tiny.en takes seconds).
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import PATIENCE, Account, add_account, wait_for_order
from tests.support.media import media_app
from tests.support.speech_eval import EVAL, HARVARD, RATE, read_16k, wer
from tests.test_arq_queue import private_redis  # noqa: F401  (a fixture: a Redis this test may stop)
from yinzi.accounts import create_key
from yinzi.appkeys import DB, SETTINGS
from yinzi.declare import openapi_document
from yinzi.dialects import bella
from yinzi.dialects.bella import BellaResult, BellaTranscriptionRequest, order_for
from yinzi.fetch import AddressPolicy
from yinzi.settings import Settings
from yinzi.store import Database

SUBMIT = "/v1/audio/transcriptions/file"
RESULT = "/v1/audio/transcriptions/file/result"
# Bella's names for models; only the mapped one is installed (the default, YINZI_WHISPER_MODEL, is not).
MAPPED, UNMAPPED = "whisper-large-v3", "whisper-medium"
ENVELOPE = {"task", "task_id", "status", "progress", "error", "model", "ignored_fields"}
WORD = {"word", "start", "end", "channel_id", "speaker_id"}
SEGMENT = {
    "id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio",
    "no_speech_prob", "channel_id", "speaker_id",
}  # fmt: skip


# ---- the customer's code ----------------------------------------------------------------------------------


class BellaCustomer:
    """A Bella customer's client, as the document writes it; only the base URL and the key are yinzi's."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def submit(self, data: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.base_url}{SUBMIT}", headers=self.headers, json=data, timeout=60)

    def result(self, task_id: str) -> requests.Response:
        return requests.post(
            f"{self.base_url}{RESULT}", headers=self.headers, json={"task_id": task_id}, timeout=60
        )

    def file_content(self, file_id: str) -> requests.Response:
        return requests.get(f"{self.base_url}/v1/files/{file_id}/content", headers=self.headers, timeout=60)

    # In the test's event loop, the blocking calls run in a thread, as the server shares the loop.
    async def asubmit(self, data: dict[str, Any]) -> requests.Response:
        return await asyncio.to_thread(self.submit, data)

    async def aresult(self, task_id: str) -> requests.Response:
        return await asyncio.to_thread(self.result, task_id)

    async def afile_content(self, file_id: str) -> requests.Response:
        return await asyncio.to_thread(self.file_content, file_id)


@dataclass
class CallbackReceiver:
    """The document's callback handler, which fails its first request (the service must try again)."""

    failures: int = 1
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.append((dict(request.headers), body))
        if len(self.calls) <= self.failures:
            return web.json_response({"error": "busy"}, status=500)
        data = json.loads(body)
        if not data.get("task_id"):
            return web.json_response({"error": "Missing task_id"}, status=400)
        self.arrived.set()
        return web.json_response({"status": "received"})

    def delivered(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.calls[-1][1])
        return body


# ---- fixtures ---------------------------------------------------------------------------------------------


def stereo_call(path: Path, left: np.ndarray, right: np.ndarray) -> Path:
    """A stereo WAV with each party on a channel, as a call centre records it."""
    length = max(len(left), len(right))
    both = np.zeros((length, 2), dtype=np.float32)
    both[: len(left), 0], both[: len(right), 1] = left, right
    raw = path.with_suffix(".f32")
    raw.write_bytes(both.astype("<f4").tobytes())
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "f32le",
            "-ar",
            str(RATE),
            "-ac",
            "2",
            "-i",
            str(raw),
            str(path),
        ],
        check=True,
    )
    raw.unlink()
    return path


class MediaHost:
    """Serves the test's files; /slow/... holds each answer until ``release`` is set."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.release = asyncio.Event()

    async def slow(self, request: web.Request) -> web.FileResponse:
        await self.release.wait()
        return web.FileResponse(self.folder / request.match_info["name"])

    def app(self) -> web.Application:
        app = media_app(self.folder)
        app.router.add_get("/slow/{name}", self.slow)
        return app


LEFT, RIGHT = "spk1_snt1", "spk2_snt1"  # the two parties' sentences


@pytest.fixture(scope="module")
def media_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The call: the left party speaks, then (after half a second) the right one answers."""
    folder = tmp_path_factory.mktemp("bella-media")
    left, right = (read_16k(EVAL / f"speechbrain_asr/{name}.wav") for name in (LEFT, RIGHT))
    gap = np.zeros(RATE // 2, dtype=np.float32)
    stereo_call(
        folder / "call.wav", np.concatenate([left, gap]), np.concatenate([np.zeros_like(left), gap, right])
    )
    return folder


def call_seconds() -> tuple[float, float]:
    """When the right party starts, and when the call ends."""
    left, right = (len(read_16k(EVAL / f"speechbrain_asr/{name}.wav")) / RATE for name in (LEFT, RIGHT))
    return left + 0.5, left + 0.5 + right


@dataclass
class Bella:
    client: TestClient
    db: Database
    account: Account
    customer: BellaCustomer
    media: MediaHost
    media_server: TestServer
    receiver: CallbackReceiver
    callback_url: str

    def media_url(self, path: str) -> str:
        return str(self.media_server.make_url(path))

    def body(self, path: str = "/m/call.wav", **fields: Any) -> dict[str, Any]:
        """The document's example request, for a file of the local media host."""
        return {
            "url": self.media_url(path),
            "model": MAPPED,
            "user": "user123",
            "callback_url": self.callback_url,
            "enable_words": True,
            **fields,
        }

    async def finished(self, task_id: str) -> None:
        await wait_for_order(self.db, task_id)


def bella_settings(settings: Settings, models: Path, **changes: Any) -> Settings:
    defaults: dict[str, Any] = {
        "engines": {},
        "model_dir": models,
        "whisper_engine": "faster-whisper",
        "engine_threads": 1,
        "whisper_model": "not-installed",
        "bella_models": {MAPPED: "tiny.en"},
        "webhook_retry_delays": (0.1, 0.1, 0.1),
        "webhook_timeout": 30.0,  # what Bella promises its receivers
        "sweep_interval": 0.05,
    }
    return settings.replace(**{**defaults, **changes})


async def start_bella(
    make_client: Callable[[Settings], Any],
    aiohttp_server: Callable[..., Any],
    settings: Settings,
    media_folder: Path,
    receiver: CallbackReceiver | None = None,
) -> Bella:
    client: TestClient = await make_client(settings)
    account = await add_account(client.app[DB])
    media = MediaHost(media_folder)
    media_server: TestServer = await aiohttp_server(media.app())
    receiver = receiver or CallbackReceiver()
    hooks = web.Application()
    hooks.router.add_post("/callback/transcription", receiver.handle)
    hook_server: TestServer = await aiohttp_server(hooks)
    base = str(client.make_url("")).rstrip("/")
    return Bella(
        client, client.app[DB], account, BellaCustomer(base, account.key), media, media_server, receiver,
        str(hook_server.make_url("/callback/transcription")),
    )  # fmt: skip


@pytest.fixture
async def bella_app(
    make_client: Callable[[Settings], Any],
    aiohttp_server: Callable[..., Any],
    settings: Settings,
    real_models: Path,
    media_folder: Path,
) -> Bella:
    return await start_bella(make_client, aiohttp_server, bella_settings(settings, real_models), media_folder)


@pytest.fixture
async def polled_app(
    make_client: Callable[[Settings], Any],
    aiohttp_server: Callable[..., Any],
    settings: Settings,
    real_models: Path,
    media_folder: Path,
) -> Bella:
    """No callback goes out (callbacks are swept once, at the start): the polls deliver the results."""
    polled = bella_settings(settings, real_models, sweep_interval=3600.0)
    return await start_bella(make_client, aiohttp_server, polled, media_folder)


def as_result(response: requests.Response) -> dict[str, Any]:
    """A result answer, checked against the declared shape (what /openapi.json documents)."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    data: dict[str, Any] = response.json()
    BellaResult.model_validate(data)
    return data


def assert_error(response: requests.Response, status: int, kind: str, code: str, says: str) -> None:
    """OpenAI's error shape, with the request id header every answer carries."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}, body
    assert (body["error"]["type"], body["error"]["code"]) == (kind, code), body
    assert says in body["error"]["message"], body
    assert response.headers["X-Request-Id"]


async def settled_history(db: Database, order_no: str) -> list[dict[str, Any]]:
    """The callback's attempts, once the delivered one is on record (it is written after the answer)."""
    deadline = time.monotonic() + PATIENCE
    while not (history := await db.webhook_history(order_no)) or not history[-1]["delivered_at"]:
        assert time.monotonic() < deadline, history
        await asyncio.sleep(0.05)
    return history


# ---- the tests -------------------------------------------------------------------------------------------


async def test_polled_result_in_bellas_format_charged_once(polled_app: Bella) -> None:
    """Runs on SQLite and PostgreSQL: a stereo call, one channel per party, polled while it runs and twice
    when done; the first poll that carries the result charges it, the second costs nothing."""
    bella = polled_app
    answer = await bella.customer.asubmit(
        bella.body(
            "/slow/call.wav",
            channel_number=2,
            language="en-US",
            hot_word="child,dog，war",
            speaker_diarization=True,
            speaker_number=1,
            enable_punctuation_prediction=True,
            # accepted, not honoured: listed in ignored_fields
            vocab_id="vocab-1",
            candidate=3,
            eng_rlang=1,
            sample_rate=16000,
            enable_semantic_sentence_detection=True,
            eng_smoothproc=False,
            a_field_from_a_newer_client={"x": 1},
        )
    )
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"task_id"}
    task_id = answer.json()["task_id"]
    order = await bella.db.order(task_id)
    assert order is not None and order.api == "bella"
    assert order.stuff == {
        "pathKey": bella.media_url("/slow/call.wav"),
        "model": "tiny.en",
        "language": "en",
        "prompt": "child, dog, war",
        "splitChannels": True,
        "diarize": True,
        "speakers": 1,
    }

    # still downloading: the envelope with its status, no duration, no segments
    running = as_result(await bella.customer.aresult(task_id))
    assert (
        set(running) == ENVELOPE
        and running["status"] in ("pending", "processing")
        and running["error"] is None
    )
    bella.media.release.set()
    await bella.finished(task_id)
    balance = await bella.db.balance(bella.account.user_id)

    first = as_result(await bella.customer.aresult(task_id))
    second = as_result(await bella.customer.aresult(task_id))
    assert first == second
    order = await bella.db.order(task_id)
    assert order is not None and order.status == "finish" and order.pay_status == "paid" and order.cost == 5
    assert await bella.db.balance(bella.account.user_id) == balance - order.cost
    assert [row["kind"] for row in await bella.db.ledger(bella.account.user_id)].count("order") == 1

    assert set(first) == ENVELOPE | {
        "language", "duration", "text", "words", "segments", "num_speakers", "speaker_embeddings"
    }  # fmt: skip
    assert first["task"] == "transcription" and first["task_id"] == task_id and first["status"] == "completed"
    assert (
        first["error"] is None
        and first["language"] == "en"
        and first["duration"] == pytest.approx(call_seconds()[1], abs=0.01)
    )
    assert first["model"] == "tiny.en"
    assert first["ignored_fields"] == [
        "vocab_id", "eng_rlang", "sample_rate", "enable_semantic_sentence_detection", "candidate",
        "a_field_from_a_newer_client",
    ]  # fmt: skip
    segments, words = first["segments"], first["words"]
    assert segments and words
    assert all(set(s) == SEGMENT for s in segments) and all(set(w) == WORD for w in words)
    assert [s["id"] for s in segments] == list(range(len(segments)))
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    # each party heard on its own channel, when they spoke, one speaker each, numbered across the call
    heard = {c: " ".join(w["word"] for w in words if w["channel_id"] == c) for c in (0, 1)}
    assert wer(HARVARD[LEFT], heard[0]) <= 0.2 and wer(HARVARD[RIGHT], heard[1]) <= 0.2, heard
    answer_at = call_seconds()[0]
    assert all(w["end"] <= answer_at for w in words if w["channel_id"] == 0), words
    assert all(w["start"] >= answer_at - 0.5 for w in words if w["channel_id"] == 1), words
    assert {(s["channel_id"], s["speaker_id"]) for s in segments} == {(0, 1), (1, 2)}
    assert first["num_speakers"] == "2"
    voices = json.loads(
        base64.b64decode(first["speaker_embeddings"])
    )  # as the document's example encodes them
    assert sorted(voices) == ["speaker_1", "speaker_2"] and all(len(v) == 256 for v in voices.values())
    assert first["text"] == " ".join(s["text"] for s in segments)
    assert wer(f"{HARVARD[LEFT]} {HARVARD[RIGHT]}", first["text"]) <= 0.2

    # the same order through the native API: finished, paid once, nothing charged again
    native = await bella.client.get(
        "/api/open/v1/order/query", params={"orderNo": task_id}, headers=bella.account.headers
    )
    data = (await native.json())["data"]
    assert (data["status"], data["payStatus"], data["cost"]) == ("finish", "paid", order.cost)
    assert await bella.db.balance(bella.account.user_id) == balance - order.cost


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_callback_is_retried_and_a_long_result_comes_as_a_file(
    make_client: Callable[[Settings], Any],
    aiohttp_server: Callable[..., Any],
    settings: Settings,
    real_models: Path,
    media_folder: Path,
) -> None:
    limited = bella_settings(settings, real_models, bella_result_limit=300)
    bella = await start_bella(make_client, aiohttp_server, limited, media_folder)
    balance = await bella.db.balance(bella.account.user_id)
    answer = await bella.customer.asubmit(bella.body())
    task_id = answer.json()["task_id"]
    await asyncio.wait_for(bella.receiver.arrived.wait(), PATIENCE)

    # refused once (500), then delivered: the same body twice, in Bella's headers
    assert len(bella.receiver.calls) == 2
    (first_headers, first_body), (headers, body) = bella.receiver.calls
    assert first_body == body and first_headers["User-Agent"] == headers["User-Agent"]
    assert headers["User-Agent"] == "Bella-OpenAPI-Callback/1.0"
    assert headers["Content-Type"] == "application/json"
    sent = bella.receiver.delivered()
    BellaResult.model_validate(sent)
    assert sent["task_id"] == task_id and sent["status"] == "completed" and sent["error"] is None
    assert sent["segments"] and sent["words"] and "file_id" not in sent  # a callback carries it all
    # the channels mixed down, as Bella does without channel_number; nobody told apart
    assert all(s["channel_id"] == 0 and s["speaker_id"] == 0 for s in sent["segments"] + sent["words"])
    assert wer(f"{HARVARD[LEFT]} {HARVARD[RIGHT]}", sent["text"]) <= 0.2, sent["text"]
    assert "num_speakers" not in sent and "speaker_embeddings" not in sent
    history = await settled_history(bella.db, task_id)
    assert [a["status"] for a in history] == [500, 200]

    # the callback carried the result, so it charged the task, once
    order = await bella.db.order(task_id)
    assert order is not None and order.pay_status == "paid"
    assert await bella.db.balance(bella.account.user_id) == balance - order.cost

    # polled, the result is over the limit: a file_id, and empty text, words and segments; no second charge
    short = as_result(await bella.customer.aresult(task_id))
    assert short["file_id"] == f"file-{task_id}" and short["status"] == "completed"
    assert short["text"] == "" and short["words"] == [] and short["segments"] == []
    assert (short["duration"], short["language"]) == (sent["duration"], "en")
    whole = as_result(await bella.customer.afile_content(short["file_id"]))
    assert whole == sent and len(json.dumps(whole)) > 300
    assert await bella.db.balance(bella.account.user_id) == balance - order.cost

    # someone else's file, or none, is not found
    other = await add_account(bella.db)
    stranger = BellaCustomer(bella.customer.base_url, other.key)
    assert_error(
        await stranger.afile_content(short["file_id"]), 404, "invalid_request_error", "not_found", "file"
    )
    assert_error(
        await bella.customer.afile_content("file-nope"), 404, "invalid_request_error", "not_found", "file"
    )

    # 500: the result file damaged on disk; the answer names the request id, in OpenAI's shape
    (limited.results_dir / task_id / "transcript.json").write_text("{damaged")
    broken = await bella.customer.aresult(task_id)
    assert_error(broken, 500, "server_error", "internal_error", broken.headers["X-Request-Id"])


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_failed_task_says_why_and_costs_nothing(bella_app: Bella) -> None:
    bella = bella_app
    bella.receiver.failures = 0
    balance = await bella.db.balance(bella.account.user_id)
    # a model name with no mapping runs YINZI_WHISPER_MODEL, which this service has not installed
    answer = await bella.customer.asubmit(bella.body(model=UNMAPPED))
    task_id = answer.json()["task_id"]
    await asyncio.wait_for(bella.receiver.arrived.wait(), PATIENCE)
    failed = as_result(await bella.customer.aresult(task_id))
    assert set(failed) == ENVELOPE | {"duration", "segments"}
    assert failed["status"] == "failed" and failed["duration"] == 0 and failed["segments"] == []
    assert "not-installed is not installed" in failed["error"] and failed["model"] == "not-installed"
    assert bella.receiver.delivered() == failed
    assert await bella.db.balance(bella.account.user_id) == balance


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_short_balance_withholds_the_result_until_a_top_up(polled_app: Bella) -> None:
    bella = polled_app
    db, user = bella.db, bella.account.user_id
    await db.grant_points(user, 5 - await db.balance(user))  # one short task's worth
    task_id = (await bella.customer.asubmit(bella.body(enable_words=False))).json()["task_id"]
    await bella.finished(task_id)
    await db.grant_points(user, -5, "spent elsewhere meanwhile")
    short = await bella.customer.aresult(task_id)
    assert_error(short, 402, "insufficient_quota", "insufficient_quota", "top up")
    # a new task is refused while the balance cannot pay a minute, and nothing is made
    refused = await bella.customer.asubmit(bella.body())
    assert_error(refused, 402, "insufficient_quota", "insufficient_quota", "balance")
    assert await db.unfinished_orders() == []
    await db.grant_points(user, 5)
    paid = as_result(await bella.customer.aresult(task_id))
    assert paid["status"] == "completed" and paid["segments"] and "words" not in paid  # enable_words false
    assert await db.balance(user) == 0


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_every_error_in_openais_shape(bella_app: Bella) -> None:
    bella = bella_app
    customer = bella.customer
    # 400: a required field missing, a wrong type, a URL that is not one
    missing = {k: v for k, v in bella.body().items() if k != "url"}
    assert_error(
        await customer.asubmit(missing), 400, "invalid_request_error", "invalid_request", "url is required"
    )
    assert_error(
        await customer.asubmit(bella.body(enable_words="yes")), 400, "invalid_request_error", "invalid_request",
        "enable_words",
    )  # fmt: skip
    not_json_number = json.dumps(bella.body(speaker_number=float("inf")))  # Python writes Infinity
    infinite = await asyncio.to_thread(
        requests.post,
        f"{customer.base_url}{SUBMIT}",
        data=not_json_number,
        headers=customer.headers,
        timeout=60,
    )
    assert_error(infinite, 400, "invalid_request_error", "invalid_request", "speaker_number")
    assert_error(
        await customer.asubmit(bella.body(url="ftp://example.com/a.mp3")), 400, "invalid_request_error",
        "invalid_request", "url must be an http or https URL",
    )  # fmt: skip
    # 401: no key at all, whatever else is wrong; or not a key of this service
    keyless = await asyncio.to_thread(requests.post, f"{customer.base_url}{SUBMIT}", json={}, timeout=60)
    assert_error(keyless, 401, "authentication_error", "invalid_api_key", "API Key is required")
    wrong = BellaCustomer(customer.base_url, "yz_not-a-key")
    assert_error(
        await wrong.asubmit(bella.body()), 401, "authentication_error", "invalid_api_key", "Invalid API Key"
    )
    # 403: an address this service may not fetch from (nor call back)
    assert_error(
        await customer.asubmit(bella.body(url="http://10.1.2.3/call.wav")), 403, "permission_error",
        "permission_denied", "url: 10.1.2.3 is not a public address",
    )  # fmt: skip
    assert_error(
        await customer.asubmit(bella.body(callback_url="http://192.168.0.9/cb")), 403, "permission_error",
        "permission_denied", "callback_url",
    )  # fmt: skip
    # 404: no such task
    assert_error(
        await customer.aresult("no-such-task"), 404, "invalid_request_error", "not_found", "no-such-task"
    )
    # 413: a body past the JSON limit
    huge = bella.body(padding="x" * bella.client.app[SETTINGS].max_json_body)
    assert_error(
        await customer.asubmit(huge),
        413,
        "invalid_request_error",
        "request_too_large",
        "request body too large",
    )
    # 415: not JSON
    as_form = await asyncio.to_thread(
        requests.post, f"{customer.base_url}{SUBMIT}", data="url=x", timeout=60,
        headers={"Authorization": customer.headers["Authorization"], "Content-Type": "text/plain"},
    )  # fmt: skip
    assert_error(as_form, 415, "invalid_request_error", "unsupported_media_type", "application/json")
    # 429: a key allowed one request a minute
    user = await bella.db.user_by_name(bella.account.name)
    assert user is not None
    slow_key = await create_key(bella.db, user, rate_limit=1)
    limited = BellaCustomer(customer.base_url, slow_key.key)
    assert (await limited.aresult("no-such-task")).status_code == 404
    again = await limited.aresult("no-such-task")
    assert_error(again, 429, "rate_limit_error", "rate_limit_exceeded", "rate limit")
    assert int(again.headers["Retry-After"]) > 0
    assert await bella.db.unfinished_orders() == []  # none of these made a task


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_503_when_the_job_queue_is_down(
    make_client: Callable[[Settings], Any],
    aiohttp_server: Callable[..., Any],
    settings: Settings,
    media_folder: Path,
    private_redis: tuple[str, subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    url, redis = private_redis
    bella = await start_bella(make_client, aiohttp_server, settings.replace(redis_url=url), media_folder)
    redis.kill()
    redis.wait()
    down = await bella.customer.asubmit(bella.body())
    assert_error(down, 503, "server_error", "service_unavailable", "retry shortly")
    assert await bella.db.unfinished_orders() == []
    assert await bella.db.balance(bella.account.user_id) == 1000


def test_fields_become_order_options_and_the_rest_is_listed() -> None:
    settings = Settings(whisper_model="small", bella_models={"whisper-large-v3": "large-v3"})
    policy = AddressPolicy()

    def plan(**fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        body = BellaTranscriptionRequest.model_validate(
            {"url": "https://example.com/a.mp3", "model": "m", "user": "u", "callback_url": "https://example.com/cb",
             **fields}
        )  # fmt: skip
        order, note = order_for(body, settings, policy)
        return {k: v for k, v in order.stuff.items() if k != "pathKey"}, note

    assert plan() == ({"model": "small"}, {"words": True, "ignored": []})
    assert plan(model="whisper-large-v3", enable_words=False) == (
        {"model": "large-v3"},
        {"words": False, "ignored": []},
    )
    assert plan(language="zh-TW")[0] == {"model": "small", "language": "zh", "chinese": "traditional"}
    assert plan(language="cn")[0] == {"model": "small", "language": "zh"}
    assert plan(language="auto") == ({"model": "small"}, {"words": True, "ignored": []})
    assert plan(language="klingon")[1]["ignored"] == ["language"]
    assert plan(hot_word=" 贝壳, 找房 ,,")[0]["prompt"] == "贝壳, 找房"
    assert plan(channel_number=1) == plan()
    assert plan(channel_number=6)[1]["ignored"] == ["channel_number"]
    assert plan(speaker_number=3)[1]["ignored"] == ["speaker_number"]  # without diarization
    assert plan(speaker_diarization=True, speaker_number=2.5)[1]["ignored"] == ["speaker_number"]
    assert plan(speaker_diarization=True, speaker_number=3)[0]["speakers"] == 3
    assert plan(enable_punctuation_prediction=False)[1]["ignored"] == ["enable_punctuation_prediction"]
    assert plan(enable_punctuation_prediction=True, candidate=1, eng_smoothproc=False)[1]["ignored"] == []
    # a hot word list at the limit still fits the prompt's limit
    at_limit = ",".join(["ab"] * 333) + ",a"
    assert len(plan(hot_word=at_limit)[0]["prompt"]) <= len(at_limit)


def test_the_endpoints_are_declared_for_openapi() -> None:
    doc = openapi_document([bella.endpoints], title="t", version="1", description="d")
    assert set(doc["paths"]) == {SUBMIT, RESULT, "/v1/files/{file_id}/content"}
    submit = doc["paths"][SUBMIT]["post"]
    assert submit["tags"] == ["bella"] and {"400", "401", "403", "413", "415", "429", "503"} <= set(
        submit["responses"]
    )
    request = doc["components"]["schemas"]["BellaTranscriptionRequest"]
    assert set(request["required"]) == {"url", "model", "user", "callback_url"}
    assert request["additionalProperties"] is True  # unknown fields are accepted, and listed as ignored
