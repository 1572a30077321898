"""abcpen offline ASR: submit a transcription task by URL under the client's own task id, poll it, fetch it.

    POST /asr-offline/submit_task/v1                {audio_url, app_id, task_id, language}
    GET  /asr-offline/check_status/v1/{task_id}     queued | processing | completed | failed | not_found
    GET  /asr-offline/get_result/v1/{task_id}       the transcript (charged here, once)

Every request is signed with a key pair (``yinzi keys create NAME --signed``): ``X-App-Key`` (and the body's
``app_id``) is the public key, ``X-Timestamp`` Unix seconds, ``X-App-Signature`` =
Base64(HMAC-SHA1(secret, hex MD5(app_id + timestamp))). One account is one app: its key pairs are interchangeable
credentials of the same app, so a key can be rotated without losing its tasks. A task is an extract-text order
whose ``task_id`` is kept as its abcpen reference (order_refs), unique per app.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from yinzi.accounts import check_timestamp, count_request, hash_key
from yinzi.appkeys import DB, LIMITER, POLICY, SERVICE, SETTINGS, SIGNER
from yinzi.declare import CLIENT, Api, Endpoints
from yinzi.errors import (
    BadRequest,
    Conflict,
    InsufficientBalance,
    NotFound,
    TooManyRequests,
    Unauthorized,
    YinziError,
)
from yinzi.fetch import LOCAL_FILE_HINT
from yinzi.orders import OrderRequest, parse_create
from yinzi.service import OrderService
from yinzi.settings import Settings
from yinzi.store import Order, User

API = "abcpen"
APP_KEY, TIMESTAMP, SIGNATURE = "X-App-Key", "X-Timestamp", "X-App-Signature"
SUBMIT_WINDOW_S = 1  # abcpen_submits_per_second counts in one-second windows
DAY_S = 24 * 3600  # abcpen_daily_tasks counts the last 24 hours
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")  # it travels in URL paths
MILLISECONDS = 10**11  # a timestamp this large is milliseconds (seconds reach it in the year 5138)

# abcpen's codes: "0" done, "1" still running, "-1" the task or a system failed, else the HTTP status it goes with.
DONE, RUNNING, FAILED = "0", "1", "-1"
TaskState = Literal["queued", "processing", "completed", "failed", "not_found"]
STATUSES: dict[str, TaskState] = {
    "pending": "queued",
    "processing": "processing",
    "finish": "completed",
    "failed": "failed",
    "timeout": "failed",
}


def app_signature(secret: str, app_id: str, timestamp: str) -> str:
    """The document's three steps: MD5 of app_id + timestamp (hex), HMAC-SHA1 of that under the secret, Base64."""
    digest = hashlib.md5((app_id + timestamp).encode()).hexdigest()
    return base64.b64encode(hmac.new(secret.encode(), digest.encode(), hashlib.sha1).digest()).decode()


# ---- shapes ---------------------------------------------------------------------------------------------


class AbcpenError(BaseModel):
    code: str = Field(
        description='"400" bad request, "401" authentication, "-1" system error, "500" internal'
    )
    message: str


class AbcpenSubmitTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audio_url: str = Field(description="http(s) URL of the audio (WAV, MP3, M4A, FLAC; video works too)")
    app_id: str = Field(description="the app's key: the same as X-App-Key")
    task_id: str = Field(
        description="the client's id for the task, unique per app; 1-128 of A-Z a-z 0-9 . _ : -"
    )
    language: str = Field(description='language code such as "en" or "zh" ("zh-CN" is read as "zh")')

    @field_validator("audio_url", "app_id", "language", mode="after")
    @classmethod
    def _present(cls, value: str, info: Any) -> str:
        if not value.strip():
            raise ValueError(f"{info.field_name} is required")
        return value.strip()

    @field_validator("task_id", mode="after")
    @classmethod
    def _task_id(cls, value: str) -> str:
        if not TASK_ID.fullmatch(value):
            raise ValueError(
                "task_id must be 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
            )
        return value


class AbcpenSubmitted(BaseModel):
    status: Literal["success"]
    message: str
    task_id: str


class AbcpenTaskStatus(BaseModel):
    status: TaskState
    code: str = Field(description='"1" queued or processing, "0" completed, "-1" failed or not found')
    task_id: str
    message: str | None = Field(None, description="why a task failed or is not found")


class AbcpenSegment(BaseModel):
    start: float
    end: float
    text: str


class AbcpenWord(BaseModel):
    word: str
    start: float
    end: float
    probability: float | None = None


class AbcpenTranscript(BaseModel):
    text: str = Field(description="the whole transcript, one line per segment")
    language: str | None
    duration: float = Field(description="of the audio, seconds")
    segments: list[AbcpenSegment]
    words: list[AbcpenWord]


class AbcpenTaskResult(BaseModel):
    code: str = Field(description='"0" completed (with result), "1" not ready, "-1" failed or not found')
    task_id: str
    status: TaskState
    result: AbcpenTranscript | None = None
    message: str | None = None


# ---- errors and signatures --------------------------------------------------------------------------------


def _error(exc: YinziError, request_id: str) -> web.Response:
    message = exc.msg
    if isinstance(exc, InsufficientBalance):  # the core's code word, said in words
        message = "insufficient balance: top up the account's points"
    return web.json_response({"code": _code(exc.status), "message": message}, status=exc.status)


def _code(status: int) -> str:
    if status == 401:
        return "401"
    if status < 500:
        return "400"  # the request must change (fields, pace, balance): the HTTP status says how
    if status == 500:
        return "500"
    return FAILED  # a dependency (the job queue) is down


api = Api(
    name=API,
    title="abcpen offline ASR",
    description=(
        "Transcription tasks under the client's own task id. Sign every request: X-App-Key (a signed pair's "
        "public key), X-Timestamp (Unix seconds) and X-App-Signature = Base64(HMAC-SHA1(secret, "
        "hex MD5(app_id + timestamp)))."
    ),
    error=_error,
    error_model=AbcpenError,
    security={
        "abcpenSignature": {
            "type": "apiKey",
            "in": "header",
            "name": SIGNATURE,
            "description": "with X-App-Key and X-Timestamp: Base64(HMAC-SHA1(secret, hex MD5(app_id + timestamp)))",
        }
    },
)
endpoints = Endpoints(api)


async def _authenticate(request: web.Request) -> tuple[User, str]:
    """The app's account and its key, from the signed headers; counts the request against the key's rate."""
    headers = request.headers
    missing = [name for name in (APP_KEY, TIMESTAMP, SIGNATURE) if not headers.get(name, "").strip()]
    if missing:
        raise Unauthorized(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
    app_key, timestamp, signature = (headers[name].strip() for name in (APP_KEY, TIMESTAMP, SIGNATURE))
    if timestamp.isascii() and timestamp.isdigit() and int(timestamp) >= MILLISECONDS:
        raise Unauthorized("X-Timestamp must be Unix time in seconds, not milliseconds")
    check_timestamp(timestamp)
    caller = await request.app[DB].caller_for_key(hash_key(app_key), signed=True)
    if caller is None:
        raise Unauthorized("unknown X-App-Key: not a signed key pair of this service, or revoked")
    expected = app_signature(request.app[SIGNER].pair_secret(app_key), app_key, timestamp)
    # Bytes: compare_digest refuses non-ASCII text, and a header may carry anything.
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized(
            "invalid X-App-Signature: expected Base64(HMAC-SHA1(secret, hex MD5(app_id + timestamp)))"
        )
    await count_request(request, caller)
    return caller.user, app_key


# ---- tasks ----------------------------------------------------------------------------------------------


def _order(task: AbcpenSubmitTask, request: web.Request) -> OrderRequest:
    """The task as a native extract-text order (the same URL rules), its messages in this API's field names."""
    settings = request.app[SETTINGS]
    language = re.split(r"[-_]", task.language, maxsplit=1)[0].lower()
    body = {"orderType": "extract-text", "stuff": {"pathKey": task.audio_url, "language": language}}
    try:
        order = parse_create(body, request.app[POLICY])
    except BadRequest as exc:
        message = exc.msg.replace(f" ({LOCAL_FILE_HINT})", "")
        message = message.replace("stuff.pathKey", "audio_url").replace("pathKey", "audio_url")
        raise BadRequest(message.replace("stuff.language", "language")) from None
    return order.with_input_limits(settings.abcpen_max_bytes, settings.abcpen_max_duration)


def _visible(order: Order, settings: Settings, now: float) -> bool:
    """A task is kept for result_retention after it ended (24 hours by default, as the document says)."""
    if order.expired:
        return False
    return order.finished_at is None or now - order.finished_at <= settings.result_retention


async def _task(request: web.Request, user: User, task_id: str) -> Order | None:
    """The app's task, or None when it has none by that id (or it is past retention)."""
    db = request.app[DB]
    order_no = await db.order_for_ref(API, user.id, task_id)
    order = None if order_no is None else await db.order(order_no)
    if order is None or not _visible(order, request.app[SETTINGS], time.time()):
        return None
    return order


def _not_found_message(settings: Settings) -> str:
    kept = settings.result_retention
    ago = f"{kept // 3600} hours" if kept % 3600 == 0 else f"{kept} s"
    return f"no such task, or it ended more than {ago} ago: submit it again under a new task_id"


async def _limit_submits(request: web.Request) -> None:
    """abcpen_submits_per_second per client address, counted where every API process sees it (Redis)."""
    limit = request.app[SETTINGS].abcpen_submits_per_second
    if limit <= 0:
        return
    address = request[CLIENT]
    quota = await request.app[LIMITER].hit(f"{API}:submit:{address}", limit, SUBMIT_WINDOW_S)
    if not quota.allowed:
        raise TooManyRequests(
            f"too many submits from {address}: at most {limit} tasks a second per IP address",
            headers={"Retry-After": str(quota.reset)},
        )


async def _check_daily_cap(request: web.Request, user: User) -> None:
    """abcpen_daily_tasks per app in the last 24 hours, counted from the database (so every process agrees).
    Two submits racing for the last place may both get it: the cap is a pace, not a price."""
    cap = request.app[SETTINGS].abcpen_daily_tasks
    if cap <= 0:
        return
    now = time.time()
    count, first = await request.app[DB].refs_since(API, user.id, now - DAY_S)
    if count >= cap:
        assert first is not None
        wait = max(1, math.ceil(first + DAY_S - now))
        raise TooManyRequests(
            f"daily limit reached: this app submitted {count} tasks in the last 24 hours, the most it may; "
            f"the next one can be submitted in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def _same_task(existing: Order, wanted: OrderRequest, task_id: str, settings: Settings) -> None:
    """A task_id submitted again is the same task (success, nothing new) only with the same audio and
    language; otherwise it is refused, as is reusing the id of a task past retention."""
    if not _visible(existing, settings, time.time()):
        raise Conflict(
            f"task_id {task_id} belongs to a task whose results are past retention: use a new task_id"
        )
    for key, name in (("pathKey", "audio_url"), ("language", "language")):
        if existing.stuff.get(key) != wanted.stuff.get(key):
            raise Conflict(
                f"task_id {task_id} is already used by a task with another {name}: use a new task_id"
            )


@endpoints.post(
    "/asr-offline/submit_task/v1",
    summary="Submit a transcription task",
    description=(
        "The audio is fetched from audio_url and transcribed. Submitting the same task_id again with the same "
        "audio_url and language answers success and creates (and charges) nothing; with another audio_url or "
        "language it is refused with 409. Limits: abcpen_submits_per_second per IP address, abcpen_daily_tasks "
        "per app in the last 24 hours (429 with Retry-After); the audio's size and length are checked when it "
        "is fetched (the task fails, at no cost)."
    ),
    body=AbcpenSubmitTask,
    response=AbcpenSubmitted,
    errors=(400, 402, 409, 503),
    links={
        "CheckStatus": api.link("check_status", {"task_id": "$response.body#/task_id"}),
        "GetResult": api.link("get_result", {"task_id": "$response.body#/task_id"}),
    },
)
async def submit_task(request: web.Request, task: AbcpenSubmitTask) -> web.Response:
    await _limit_submits(request)
    user, app_key = await _authenticate(request)
    if task.app_id != app_key:
        raise Unauthorized("app_id must be the X-App-Key the request is signed with")
    settings = request.app[SETTINGS]
    order = _order(task, request)
    existing = await request.app[DB].order_for_ref(API, user.id, task.task_id)
    if existing is None:
        await _check_daily_cap(request, user)
        try:
            placed = await request.app[SERVICE].place(user, order, api=API, ref=task.task_id)
        except InsufficientBalance:
            raise YinziError(
                "insufficient balance: the account cannot pay for one minute of transcription; top up its points",
                status=402,
            ) from None
        existing = None if placed.created else placed.order_no  # a concurrent twin came first
    if existing is not None:
        _same_task(await request.app[SERVICE].find(user, existing), order, task.task_id, settings)
    answer = AbcpenSubmitted(status="success", message="Task submitted successfully", task_id=task.task_id)
    return web.json_response(answer.model_dump())


@endpoints.get(
    "/asr-offline/check_status/v1/{task_id}",
    summary="Check a task's status",
    description=(
        "queued or processing (code 1), completed (code 0), failed (code -1, with the reason in message), "
        "not_found (code -1): no such task for this app, or it ended more than result_retention ago. Free: "
        "only get_result charges."
    ),
    response=AbcpenTaskStatus,
)
async def check_status(request: web.Request) -> web.Response:
    user, _ = await _authenticate(request)
    task_id = request.match_info["task_id"]
    order = await _task(request, user, task_id)
    if order is None:
        status = AbcpenTaskStatus(
            status="not_found",
            code=FAILED,
            task_id=task_id,
            message=_not_found_message(request.app[SETTINGS]),
        )
    else:
        state = STATUSES[order.status]
        code = {"completed": DONE, "failed": FAILED}.get(state, RUNNING)
        status = AbcpenTaskStatus(
            status=state, code=code, task_id=task_id, message=order.reason if state == "failed" else None
        )
    return web.json_response(status.model_dump(exclude_none=True))


@endpoints.get(
    "/asr-offline/get_result/v1/{task_id}",
    summary="Get a task's transcript",
    description=(
        "A completed task's transcript: text, language, duration, segments and words with their times. The "
        "first fetch charges the task (once; later fetches are free). With too few points it answers 402 and "
        "keeps the result until a top-up. Not ready: code 1; failed: code -1 and the reason."
    ),
    response=AbcpenTaskResult,
    errors=(402,),
)
async def get_result(request: web.Request) -> web.Response:
    user, _ = await _authenticate(request)
    task_id = request.match_info["task_id"]
    settings = request.app[SETTINGS]
    service = request.app[SERVICE]
    order = await _task(request, user, task_id)
    if order is not None and order.status == "finish":
        delivery = await service.deliver(user, order.order_no)
        if delivery.short:
            raise YinziError(
                "insufficient balance: the task is completed but the account cannot pay for it; top up its "
                "points and fetch the result again (it is kept until it expires)",
                status=402,
            )
        order = delivery.order if delivery.paid else None
    answer = await _result(service, order, task_id, settings)
    return web.json_response(answer.model_dump(exclude_none=True))


async def _result(
    service: OrderService, order: Order | None, task_id: str, settings: Settings
) -> AbcpenTaskResult:
    if order is not None and order.status == "finish":
        try:
            transcript = await service.transcript(order)
        except NotFound:  # deleted under us by the retention sweep
            order = None
        else:
            return AbcpenTaskResult(
                code=DONE, task_id=task_id, status="completed", result=_transcript(transcript)
            )
    if order is None:
        return AbcpenTaskResult(
            code=FAILED, task_id=task_id, status="not_found", message=_not_found_message(settings)
        )
    if order.terminal:
        return AbcpenTaskResult(code=FAILED, task_id=task_id, status="failed", message=order.reason)
    return AbcpenTaskResult(
        code=RUNNING,
        task_id=task_id,
        status=STATUSES[order.status],
        message="the task is not finished yet: poll check_status",
    )


def _transcript(doc: dict[str, Any]) -> AbcpenTranscript:
    """transcript.json (workers/engines/transcription.py) in this API's result shape."""
    return AbcpenTranscript(
        text=doc["text"],
        language=doc.get("language"),
        duration=doc["duration"],
        segments=[
            AbcpenSegment(start=s["start"], end=s["end"], text=s["text"].strip()) for s in doc["segments"]
        ],
        words=[
            AbcpenWord(
                word=w["word"].strip(), start=w["start"], end=w["end"], probability=w.get("probability")
            )
            for w in doc["words"]
        ],
    )
