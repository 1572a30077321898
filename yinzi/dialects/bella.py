"""Bella's audio file transcription API (``POST /v1/audio/transcriptions/file`` and its ``/result``), on the order core.

A Bella client points its base URL at yinzi and sends a yinzi key as its Bearer token; nothing else changes.
A task is an extract-text order whose number is the ``task_id`` (so the native order/query sees it too). Bella's
fields become the order's options: ``url`` its ``pathKey``, ``model`` an installed Whisper model through
``YINZI_BELLA_MODELS``, ``hot_word`` the initial prompt, ``speaker_diarization``/``speaker_number`` diarization,
``channel_number: 2`` one transcription per channel (``splitChannels``), ``enable_vad`` voice activity detection.
Every other field of Bella's document is accepted, and a value yinzi cannot honour is named in the result's
``ignored_fields``, never refused. What only this API needs later (``enable_words``, the ignored fields) is kept
as the order ref's note.

Results: the first answer that carries them (a poll of ``/result`` or the callback) charges the order, once; a
short balance gets a 402 and the result waits for a top-up. An answer over ``YINZI_BELLA_RESULT_LIMIT`` bytes is
replaced by a ``file_id`` whose whole JSON ``GET /v1/files/{file_id}/content`` returns. Errors take OpenAI's shape
``{"error": {"message", "type", "code"}}``, with the statuses Bella documents.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from yarl import URL

from yinzi import callbacks
from yinzi.accounts import authenticate
from yinzi.appkeys import POLICY, SERVICE, SETTINGS
from yinzi.callbacks import Outgoing
from yinzi.declare import Api, Endpoints
from yinzi.errors import BadRequest, Forbidden, InsufficientBalance, NotFound, YinziError
from yinzi.fetch import AddressPolicy, BlockedAddress
from yinzi.orders import (
    MAX_PROMPT_CHARS,
    MAX_URL_LENGTH,
    TEXT_NUMBERS,
    WHISPER_LANGUAGES,
    OrderRequest,
    parse_create,
)
from yinzi.service import OrderService
from yinzi.settings import Settings
from yinzi.store import Order, User

API = "bella"
USER_AGENT = "Bella-OpenAPI-Callback/1.0"
FILE_PREFIX = "file-"
MAX_NAME = 256  # model, user, vocab_id and the like
MAX_LANGUAGE = 32
# Whisper's seek counts 10 ms frames; yinzi's transcript keeps the block's start in seconds.
SEEK_FRAMES_PER_SECOND = 100
# Languages written without spaces between words: the full text joins their segments with nothing.
UNSPACED = frozenset({"zh", "yue", "ja", "th", "lo", "my", "km", "bo"})
# Region or script subtags that mean Traditional Chinese (zh-TW, zh-HK, zh-Hant).
TRADITIONAL = frozenset({"tw", "hk", "mo", "hant"})
# Country codes often sent where a language code is meant.
LANGUAGE_ALIASES = {"cn": "zh", "jp": "ja", "kr": "ko"}
HOT_WORD_SEPARATORS = re.compile(r"[,，、]")
# What a URL field takes, as /openapi.json says (plain host names and addresses; the address rules come after).
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
URL_PATTERN = rf"^https?://[A-Za-z0-9_~-]{{1,63}}(\.[A-Za-z0-9_~-]{{1,63}})*\.?(:{_PORT})?([/?#][!-~]*)?$"
URL_SHAPE = re.compile(URL_PATTERN)
_URL: dict[str, Any] = {"pattern": URL_PATTERN}
SPEAKER_LIMITS = TEXT_NUMBERS["speakers"]

Status = Literal["pending", "processing", "completed", "failed", "expired", "payment_required"]


# ---- errors ----------------------------------------------------------------------------------------------


class BellaErrorDetail(BaseModel):
    message: str
    type: str
    code: str


class BellaError(BaseModel):
    error: BellaErrorDetail


# status -> (type, code), in OpenAI's words
ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    503: ("server_error", "service_unavailable"),
}


def error_response(exc: YinziError, request_id: str) -> web.Response:
    status = exc.status
    kind, code = ERROR_KINDS.get(
        status,
        ("server_error", "internal_error") if status >= 500 else ("invalid_request_error", "invalid_request"),
    )
    message = exc.msg
    if status == 402:  # the core's message is the native API's error code; say it in words here
        message = "the balance cannot pay for this transcription: top up, then ask again (the result is kept)"
    body = BellaError(error=BellaErrorDetail(message=message, type=kind, code=code))
    return web.json_response(body.model_dump(), status=status)


api = Api(
    name=API,
    title="Bella audio file transcription",
    description=(
        "Bella's asynchronous transcription of an audio file at a URL, with a callback; Bearer yinzi key. "
        "Fields yinzi cannot honour are accepted and listed in the result's ignored_fields."
    ),
    error=error_response,
    error_model=BellaError,
    security={"bellaBearer": {"type": "http", "scheme": "bearer"}},
    authenticate=authenticate,
)
endpoints = Endpoints(api)


# ---- shapes ----------------------------------------------------------------------------------------------


class BellaTranscriptionRequest(BaseModel):
    """Bella's request body, every field of its document. Unknown fields are accepted too (and ignored)."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

    url: str = Field(max_length=MAX_URL_LENGTH, json_schema_extra=_URL, description="the audio file's URL")
    model: str = Field(
        min_length=1,
        max_length=MAX_NAME,
        description="any name; YINZI_BELLA_MODELS maps it to a Whisper model",
    )
    user: str = Field(min_length=1, max_length=MAX_NAME, description="the end user's id (not used)")
    callback_url: str = Field(
        max_length=MAX_URL_LENGTH, json_schema_extra=_URL, description="where results go"
    )
    enable_words: bool | None = Field(None, description="return words (default true)")
    vocab_id: str | None = Field(None, max_length=MAX_NAME)
    channel_number: float | None = Field(None, description="2: each channel of a stereo file on its own")
    language: str | None = Field(
        None, max_length=MAX_LANGUAGE, description="e.g. zh, en, zh-TW; detected if absent"
    )
    hot_word: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="comma-separated; the prompt")
    candidate: float | None = None
    audio_mode: str | None = Field(None, max_length=MAX_NAME)
    standard_wav: float | None = None
    language_type: float | None = None
    trans_mode: float | None = None
    eng_smoothproc: bool | None = None
    eng_collogproc: bool | None = None
    eng_vad_mdn: float | None = None
    eng_vad_margin: float | None = None
    eng_rlang: float | None = None
    sample_rate: float | None = None
    enable_semantic_sentence_detection: bool | None = None
    enable_punctuation_prediction: bool | None = None
    max_end_silence: float | None = None
    speaker_diarization: bool | None = None
    speaker_number: float | None = None
    enable_vad: bool | None = None
    chunk_length: float | None = None

    @field_validator("url", "callback_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        if not URL_SHAPE.fullmatch(value):
            raise ValueError(f"{info.field_name} must be an http or https URL")
        return value


class BellaTask(BaseModel):
    task_id: str


class BellaResultRequest(BaseModel):
    task_id: str = Field(min_length=1, max_length=MAX_NAME)


class BellaWord(BaseModel):
    word: str
    start: float
    end: float
    channel_id: int
    speaker_id: int


class BellaSegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    channel_id: int
    speaker_id: int


class BellaResult(BaseModel):
    """Bella's result, plus ``status``, ``progress``, the Whisper ``model`` that ran and ``ignored_fields``."""

    task: Literal["transcription"]
    task_id: str
    status: Status
    progress: int = Field(ge=0, le=100)
    error: str | None
    language: str | None = None
    duration: float | None = None
    text: str | None = None
    file_id: str | None = None
    words: list[BellaWord] | None = None
    segments: list[BellaSegment] | None = None
    num_speakers: str | None = None
    speaker_embeddings: str | None = Field(
        default=None,
        description="Base64 of a JSON object: speaker_<speaker_id> -> that speaker's voice embedding (256 values, "
        "unit length; the dot product of two is their likeness).",
    )
    model: str | None = None
    ignored_fields: list[str] | None = None


# ---- from Bella's request to an order ---------------------------------------------------------------------

# Fields that ask for something yinzi does not do, whatever their value (None: absent).
NEVER_HONOURED = (
    "vocab_id",
    "audio_mode",
    "standard_wav",
    "language_type",
    "trans_mode",
    "eng_vad_mdn",
    "eng_vad_margin",
    "eng_rlang",
    "sample_rate",
    "max_end_silence",
    "chunk_length",
)
# Switches that ask for something yinzi does not do only when true.
NOT_DONE_WHEN_TRUE = ("eng_smoothproc", "eng_collogproc", "enable_semantic_sentence_detection")


def _language(value: str) -> tuple[str | None, bool] | None:
    """(Whisper language or None to detect it, Traditional Chinese wanted) for a language field; None when
    yinzi does not know the language (then it is detected, and the field listed as ignored)."""
    primary, *subtags = value.strip().lower().replace("_", "-").split("-")
    if primary in ("", "auto"):
        return None, False
    language = LANGUAGE_ALIASES.get(primary, primary)
    if language not in WHISPER_LANGUAGES:
        return None
    return language, language == "zh" and bool(TRADITIONAL & set(subtags))


def _prompt(hot_word: str) -> str | None:
    words = [w.strip() for w in HOT_WORD_SEPARATORS.split(hot_word) if w.strip()]
    prompt = ", ".join(words)
    return (prompt if len(prompt) <= MAX_PROMPT_CHARS else ",".join(words)) or None


def _whole(value: float, low: float, high: float) -> int | None:
    return int(value) if low <= value <= high and value == int(value) else None


def _address(field: str, url: str, policy: AddressPolicy) -> None:
    """400 for what is not an http(s) URL; 403 for an address this service may not reach."""
    try:
        parsed = URL(url.strip())
    except ValueError:
        raise BadRequest(f"{field} must be an http or https URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadRequest(f"{field} must be an http or https URL")
    try:
        policy.check_url(parsed)
    except BlockedAddress as exc:
        raise Forbidden(
            f"{field}: {exc}; this service may not reach private addresses "
            "(an operator can allow them with YINZI_FETCH_ALLOW)"
        ) from None


# The native API's names in parse_create's messages, as this API calls them.
_FIELD_NAMES = (("stuff.pathKey", "url"), ("callbackUrl", "callback_url"), ("stuff.model", "model"))


def order_for(
    body: BellaTranscriptionRequest, settings: Settings, policy: AddressPolicy
) -> tuple[OrderRequest, dict[str, Any]]:
    """The extract-text order for a Bella request, and the note this API keeps beside it."""
    _address("url", body.url, policy)
    _address("callback_url", body.callback_url, policy)
    ignored = [name for name in NEVER_HONOURED if getattr(body, name) is not None]
    ignored += [name for name in NOT_DONE_WHEN_TRUE if getattr(body, name)]
    stuff: dict[str, Any] = {
        "pathKey": body.url,
        "model": settings.bella_models.get(body.model, settings.whisper_model),
    }
    if body.language is not None:
        language = _language(body.language)
        if language is None:
            ignored.append("language")
        elif language[0] is not None:
            stuff["language"] = language[0]
            if language[1]:
                stuff["chinese"] = "traditional"
    if body.hot_word is not None and (prompt := _prompt(body.hot_word)) is not None:
        stuff["prompt"] = prompt
    if body.channel_number == 2:
        stuff["splitChannels"] = True
    elif body.channel_number not in (None, 1):
        ignored.append("channel_number")
    if body.candidate not in (None, 1):
        ignored.append("candidate")  # one transcription, not several candidates
    if body.enable_punctuation_prediction is False:
        ignored.append("enable_punctuation_prediction")  # Whisper punctuates
    if body.speaker_diarization:
        stuff["diarize"] = True
    if body.speaker_number is not None:
        speakers = _whole(body.speaker_number, *SPEAKER_LIMITS[:2])
        if body.speaker_diarization and speakers is not None:
            stuff["speakers"] = speakers
        else:
            ignored.append("speaker_number")
    if body.enable_vad is not None:
        stuff["vad"] = body.enable_vad
    ignored += sorted(body.model_extra or {})
    native = {"orderType": "extract-text", "stuff": stuff, "callbackUrl": body.callback_url}
    try:
        order = parse_create(native, policy)
    except BadRequest as exc:
        message = exc.msg
        for native_name, name in _FIELD_NAMES:
            message = message.replace(native_name, name)
        raise BadRequest(message) from None
    return order, {"words": body.enable_words is not False, "ignored": ignored}


# ---- from an order to Bella's result ----------------------------------------------------------------------


def _speaker_id(label: str | None) -> int:
    """S1 -> 1, as Bella numbers speakers; 0 when nobody was told apart."""
    return int(label[1:]) if label else 0


def _status(order: Order) -> Status:
    if order.status == "finish":
        return "expired" if order.expired else "completed"
    if order.status in ("failed", "timeout"):
        return "failed"
    return "pending" if order.status == "pending" else "processing"


def _envelope(order: Order, note: dict[str, Any], status: Status) -> dict[str, Any]:
    return {
        "task": "transcription",
        "task_id": order.order_no,
        "status": status,
        "progress": 100 if order.terminal else order.progress,
        "error": None,
        "model": order.stuff.get("model"),
        "ignored_fields": note.get("ignored", []),
    }


def _finished(order: Order, note: dict[str, Any], transcript: dict[str, Any]) -> dict[str, Any]:
    segments = transcript["segments"]
    language = transcript["language"]
    result = {
        **_envelope(order, note, "completed"),
        "language": language,
        "duration": transcript["duration"],
        "text": ("" if language in UNSPACED else " ").join(s["text"] for s in segments),
    }
    if note.get("words", True):
        result["words"] = [
            {
                "word": w["word"].strip(),
                "start": w["start"],
                "end": w["end"],
                "channel_id": w.get("channel", 0),
                "speaker_id": _speaker_id(w.get("speaker")),
            }
            for w in transcript["words"]
        ]
    result["segments"] = [
        {
            "id": s["id"],
            "seek": round(s["seek"] * SEEK_FRAMES_PER_SECOND),
            "start": s["start"],
            "end": s["end"],
            "text": s["text"],
            "tokens": s["tokens"],
            "temperature": s["temperature"],
            "avg_logprob": s["avg_logprob"],
            "compression_ratio": s["compression_ratio"],
            "no_speech_prob": s["no_speech_prob"],
            "channel_id": s.get("channel", 0),
            "speaker_id": _speaker_id(s.get("speaker")),
        }
        for s in segments
    ]
    if order.stuff.get("diarize"):
        result["num_speakers"] = str(len(transcript["speakers"]))
        # transcript.json of orders made before voices were kept has none
        voices = {f"speaker_{_speaker_id(label)}": v for label, v in transcript.get("voices", {}).items()}
        result["speaker_embeddings"] = base64.b64encode(json.dumps(voices).encode()).decode("ascii")
    return result


def _as_json(result: dict[str, Any]) -> bytes:
    """The result through its declared shape, so what is sent is what /openapi.json says."""
    return BellaResult.model_validate(result).model_dump_json(exclude_unset=True).encode()


def _render_finished(order: Order, note: dict[str, Any], raw: bytes, limit: int | None) -> bytes:
    """A finished result's JSON (CPU work on a long transcript: run off the event loop). Past ``limit`` bytes,
    the result without its text, words and segments, and the file_id that has them."""
    result = _finished(order, note, json.loads(raw))
    body = _as_json(result)
    if limit is None or len(body) <= limit:
        return body
    short = {**result, "file_id": FILE_PREFIX + order.order_no, "text": "", "segments": []}
    if "words" in short:
        short["words"] = []
    return _as_json(short)


async def render(service: OrderService, order: Order, note: dict[str, Any], limit: int | None) -> bytes:
    """What a poll or the callback answers for a delivered order (see OrderService.deliver)."""
    status = _status(order)
    if status == "completed" and order.pay_status == "paid":
        raw = await service.result_bytes(order, "transcript.json")
        return await asyncio.to_thread(_render_finished, order, note, raw, limit)
    envelope = _envelope(order, note, status)
    if status in ("pending", "processing"):
        return _as_json(envelope)
    if status == "failed":
        error = order.reason or "the transcription failed"
    elif status == "expired":
        error = "the result has expired and was deleted; submit the task again"
    else:
        envelope["status"] = "payment_required"
        error = "the balance cannot pay for this transcription: top up, then fetch the result from /result"
    return _as_json({**envelope, "error": error, "duration": 0, "segments": []})


async def _task(service: OrderService, user: User, task_id: str) -> tuple[Order, dict[str, Any]]:
    """The user's Bella task and its note; another user's task looks exactly like a missing one."""
    try:
        order = await service.find_ref(user, API, task_id)
    except NotFound:
        raise NotFound(f"task not found: {task_id}") from None
    found = await service.db.order_ref(order.order_no)
    return order, found.note if found is not None else {}


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


# ---- endpoints --------------------------------------------------------------------------------------------


@endpoints.post(
    "/v1/audio/transcriptions/file",
    summary="Submit a transcription task",
    body=BellaTranscriptionRequest,
    response=BellaTask,
    errors=(400, 402, 403, 413, 415, 503),
    links={
        "result": {"operationId": "bella_result", "requestBody": {"task_id": "$response.body#/task_id"}},
        "file": {
            "operationId": "bella_file_content",
            "parameters": {"file_id": "file-{$response.body#/task_id}"},
        },
    },
)
async def submit(request: web.Request, body: BellaTranscriptionRequest) -> web.Response:
    """Fetches ``url`` and transcribes it; the result is POSTed to ``callback_url`` and can be polled."""
    user = await authenticate(request)
    app = request.app
    order, note = order_for(body, app[SETTINGS], app[POLICY])
    placed = await app[SERVICE].place(user, order, api=API, note=note)
    return web.json_response(BellaTask(task_id=placed.order_no).model_dump())


@endpoints.post(
    "/v1/audio/transcriptions/file/result",
    summary="Get a transcription task's result",
    body=BellaResultRequest,
    response=BellaResult,
    errors=(400, 402, 404, 413, 415),
)
async def result(request: web.Request, body: BellaResultRequest) -> web.Response:
    """The task's status until it ends; then its result (the first answer with it charges the task, once)."""
    user = await authenticate(request)
    service = request.app[SERVICE]
    order, note = await _task(service, user, body.task_id)
    delivery = await service.deliver(user, order.order_no)
    if delivery.short:
        raise InsufficientBalance()
    return _json(await render(service, delivery.order, note, request.app[SETTINGS].bella_result_limit))


@endpoints.get(
    "/v1/files/{file_id}/content",
    summary="Get a long result's whole JSON",
    response=BellaResult,
    errors=(402, 404),
)
async def file_content(request: web.Request) -> web.Response:
    """The whole result of a task whose /result answered with this ``file_id``."""
    user = await authenticate(request)
    file_id = request.match_info["file_id"]
    missing = NotFound(f"file not found: {file_id}")
    if not file_id.startswith(FILE_PREFIX):
        raise missing
    service = request.app[SERVICE]
    try:
        order, note = await _task(service, user, file_id.removeprefix(FILE_PREFIX))
    except NotFound:
        raise missing from None
    delivery = await service.deliver(user, order.order_no)
    if delivery.short:
        raise InsufficientBalance()
    if not delivery.paid:
        raise missing
    return _json(await render(service, delivery.order, note, None))


# ---- callback -----------------------------------------------------------------------------------------------


class BellaCallback:
    """The result, POSTed as Bella does, once the task ends; retried (YINZI_WEBHOOK_RETRY_DELAYS) until a 2xx."""

    retry_delays: tuple[float, ...] | None = None

    async def render(self, service: OrderService, order: Order, secret: str) -> Outgoing:
        # The callback carries the result, so it delivers the order: charged here if no poll came first.
        # deliver() checks ownership by user id alone.
        delivery = await service.deliver(User(order.user_id, "", 0), order.order_no)
        found = await service.db.order_ref(order.order_no)
        note = found.note if found is not None else {}
        order = delivery.order
        body = await render(service, order, note, None)
        return Outgoing(body, {"Content-Type": "application/json", "User-Agent": USER_AGENT})


callbacks.register(API, BellaCallback())
