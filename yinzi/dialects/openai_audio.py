"""OpenAI's audio API (the ``openai`` package, Open WebUI, editor and subtitle tools), answered synchronously.

    POST /v1/audio/transcriptions   multipart: file, model, language, prompt, response_format, temperature,
                                    timestamp_granularities[]  -> json | text | srt | verbose_json | vtt
    POST /v1/audio/translations     multipart: file, model, prompt, response_format, temperature
    GET  /v1/models, /v1/models/{model}

A request streams its file to disk (at most ``YINZI_OPENAI_MAX_FILE_BYTES``), hands it to the upload desk as a
completed upload, places an extract-text order through the same queue as every other order and waits for it
(``YINZI_OPENAI_WAIT``). The answer is the order's delivery, so it is charged then, once. An order that outlives
the wait keeps running and is read, and paid for, through the native order query. ``whisper-1`` names the
default Whisper model (``YINZI_WHISPER_MODEL``). Errors come in OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, with OpenAI's statuses: a balance that cannot pay is 429
``insufficient_quota``, as OpenAI answers an exhausted quota.
"""

from __future__ import annotations

import asyncio
import logging
import math
import mimetypes
import time
from pathlib import PurePath
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator

from workers.engines.models import list_installed
from workers.engines.subtitles import srt_to_vtt
from yinzi.accounts import authenticate, presented_key
from yinzi.appkeys import POLICY, SERVICE, SETTINGS, UPLOADS
from yinzi.declare import Api, Endpoints, SavedFile, read_form, validation_message
from yinzi.errors import (
    BadRequest,
    InsufficientBalance,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    YinziError,
)
from yinzi.fetch import human_bytes
from yinzi.metrics import reason_kind
from yinzi.orders import MAX_PROMPT_CHARS, WHISPER_LANGUAGES, parse_create
from yinzi.service import OrderService
from yinzi.settings import Settings
from yinzi.store import Order, User
from yinzi.uploads import MAX_FILE_NAME, MEDIA_TYPES

log = logging.getLogger(__name__)

API = "openai"
DEFAULT_ALIAS = "whisper-1"
OWNER = "yinzi"
# Room for the form's other fields and its boundaries when a Content-Length already says the file is too large.
FORM_OVERHEAD = 64 * 1024
# How often a waiting request looks whether its client is still there: a gone client is not charged.
CLIENT_CHECK_S = 5.0
CLIENT_CLOSED = 499  # nginx's status for a client that hung up first: only logs and metrics ever see it
# Failures that are the file's fault (a 400, like OpenAI's "Invalid file format"); the rest are ours (500).
CLIENT_FAILURES = frozenset({"unsupported_media", "too_long"})
# Scripts written without spaces between words: their segments join without one.
UNSPACED = frozenset({"zh", "yue", "ja", "th", "lo", "km", "my", "bo"})
TEXT = "text/plain"
NO_RETRY = {"x-should-retry": "false"}  # the openai package retries 429 and 5xx unless told this
ORDER_HEADER = "X-Order-No"  # the order behind an answer, for the native order query

# Whisper's language names (whisper.tokenizer.LANGUAGES), which OpenAI's verbose_json reports; kept here so the
# API process never imports torch. tests/test_dialect_openai.py checks them against Whisper's own.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian", "kn": "kannada",
    "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona",
    "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian",
    "tg": "tajik", "sd": "sindhi", "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao",
    "uz": "uzbek", "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan",
    "tl": "tagalog", "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip
LANGUAGE_CODES = {name: code for code, name in LANGUAGE_NAMES.items()}


# ---- shapes ---------------------------------------------------------------------------------------------

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, insufficient_quota, requests or server_error")
    param: str | None = Field(None, description="the form field at fault, when one is")
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorDetail


class TranslationFields(BaseModel):
    """The form's fields but the file, as a translation takes them."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    model: str = Field(
        min_length=1,
        max_length=64,
        description=f"{DEFAULT_ALIAS} (the default Whisper model) or a name GET /v1/models lists",
    )
    prompt: str | None = Field(
        None, max_length=MAX_PROMPT_CHARS, description="text to guide the style, or words to spell right"
    )
    response_format: ResponseFormat = "json"
    temperature: float = Field(
        0.0,
        ge=0,
        le=1,
        description="0 (default): beam search, sampling hotter only when a pass fails Whisper's checks; above "
        "0 every pass samples, starting at this temperature",
    )

    @field_validator("prompt", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        return None if value == "" else value


class TranscriptionFields(TranslationFields):
    """The form's fields but the file, as a transcription takes them."""

    language: str | None = Field(
        None, description="ISO-639-1 code (en, zh, ...) or Whisper's English name; detected when absent"
    )
    timestamp_granularities: list[Granularity] | None = Field(
        None,
        alias="timestamp_granularities[]",
        description="verbose_json: segment (the default) and/or word",
    )
    stream: bool = Field(
        False, description="accepted; the answer is never streamed (as OpenAI for whisper-1)"
    )
    chunking_strategy: str | None = Field(None, description="accepted and ignored: yinzi cuts at pauses")
    include: list[str] | None = Field(None, alias="include[]", description="accepted and ignored")

    @field_validator("language", mode="before")
    @classmethod
    def _no_language(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("timestamp_granularities", "include", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


FILE_DESCRIPTION = "the audio or video, at most 25 MB by default (YINZI_OPENAI_MAX_FILE_BYTES)"


class OpenAITranscriptionForm(TranscriptionFields):
    file: bytes = Field(description=FILE_DESCRIPTION)


class OpenAITranslationForm(TranslationFields):
    file: bytes = Field(description=FILE_DESCRIPTION)


class _AnyFields(BaseModel):
    """The form as read, validated afterwards, so that a bad field names its ``param`` as OpenAI does."""

    model_config = ConfigDict(extra="allow")


class OpenAIUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: int = Field(description="the media's duration, rounded up to a whole second")


class OpenAIWord(BaseModel):
    word: str
    start: float
    end: float


class OpenAISegment(BaseModel):
    id: int
    seek: int = Field(
        description="where the segment's 30 s window starts, in 10 ms frames, as Whisper counts"
    )
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class OpenAITranscription(BaseModel):
    """response_format json."""

    text: str
    usage: OpenAIUsage | None = None


class OpenAITranscriptionVerbose(BaseModel):
    """response_format verbose_json."""

    task: Literal["transcribe", "translate"]
    language: str = Field(description="Whisper's English name of the language, such as english; a translation's "
                          "is always english")  # fmt: skip
    duration: float
    text: str
    segments: list[OpenAISegment] | None = None
    words: list[OpenAIWord] | None = None
    usage: OpenAIUsage | None = None


class OpenAITranscriptionResult(RootModel[OpenAITranscriptionVerbose | OpenAITranscription]):
    """json or verbose_json (text, srt and vtt come as text/plain)."""


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the model was installed (0 when it is not on this host)")
    owned_by: str = OWNER


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


# ---- errors ---------------------------------------------------------------------------------------------


class OpenAIError(YinziError):
    """An error with OpenAI's ``type``, ``param`` and ``code`` (others get them from their status)."""

    def __init__(
        self,
        status: int,
        msg: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(msg, status, headers)
        self.param, self.code, self.type = param, code, type


_CODES = {401: "invalid_api_key", 413: "file_too_large", 429: "rate_limit_exceeded", 504: "timeout"}


def _error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return "requests" if status == 429 else "invalid_request_error"


def error_response(exc: YinziError, request_id: str) -> web.Response:
    detail = OpenAIErrorDetail(
        message=exc.msg,
        type=getattr(exc, "type", None) or _error_type(exc.status),
        param=getattr(exc, "param", None),
        code=getattr(exc, "code", None) if isinstance(exc, OpenAIError) else _CODES.get(exc.status),
    )
    return web.json_response(OpenAIErrorResponse(error=detail).model_dump(), status=exc.status)


api = Api(
    name=API,
    title="OpenAI-compatible audio transcription",
    description="OpenAI's /v1/audio/transcriptions, /v1/audio/translations and /v1/models, answered "
    "synchronously: point the openai package or Open WebUI at <yinzi>/v1 with a yinzi key.",
    error=error_response,
    error_model=OpenAIErrorResponse,
    security={"openaiBearer": {"type": "http", "scheme": "bearer", "description": "a yinzi API key"}},
)
endpoints = Endpoints(api)


async def _caller(request: web.Request) -> User:
    """The key's user; OpenAI's wording when there is no key or a wrong one."""
    try:
        return await authenticate(request)
    except Unauthorized:
        if presented_key(request) is None and "X-Public-Key" not in request.headers:
            raise OpenAIError(
                401,
                "You didn't provide an API key. Send your yinzi key in an Authorization header using Bearer "
                "auth (Authorization: Bearer yz_...); `yinzi keys create <user>` makes one.",
            ) from None
        raise OpenAIError(
            401,
            "Incorrect API key provided. Use a yinzi key (`yinzi keys create <user>` makes one).",
            code="invalid_api_key",
        ) from None


# ---- models ---------------------------------------------------------------------------------------------


def _runnable(settings: Settings) -> dict[str, int]:
    """Whisper models this host has for its engine (name -> when installed), and always the default, which
    worker hosts may hold when this one does not."""
    engine = settings.whisper_engine_name
    found = {
        m.name: int(m.path.stat().st_mtime) for m in list_installed(settings.models_dir) if m.engine == engine
    }
    found.setdefault(settings.whisper_model, 0)
    return found


async def _models(settings: Settings) -> list[OpenAIModel]:
    runnable = await asyncio.to_thread(_runnable, settings)
    default = OpenAIModel(id=DEFAULT_ALIAS, created=runnable[settings.whisper_model])
    return [default, *(OpenAIModel(id=name, created=created) for name, created in sorted(runnable.items()))]


def _no_model(name: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model `{name}` does not exist here: GET /v1/models lists those that can run "
        f"({DEFAULT_ALIAS} is the default Whisper model)",
        param="model",
        code="model_not_found",
    )


async def _whisper_model(settings: Settings, name: str) -> str:
    if name == DEFAULT_ALIAS:
        return settings.whisper_model
    if name in await asyncio.to_thread(_runnable, settings):
        return name
    raise _no_model(name)


@endpoints.get("/v1/models", summary="Models that can run", response=OpenAIModelList)
async def list_models(request: web.Request) -> web.Response:
    """Whisper models installed for this host's engine, and the default (YINZI_WHISPER_MODEL), also listed as
    whisper-1."""
    await _caller(request)
    models = await _models(request.app[SETTINGS])
    return web.json_response(OpenAIModelList(data=models).model_dump())


@endpoints.get("/v1/models/{model}", summary="One model", response=OpenAIModel, errors=(404,))
async def retrieve_model(request: web.Request) -> web.Response:
    await _caller(request)
    name = request.match_info["model"]
    for model in await _models(request.app[SETTINGS]):
        if model.id == name:
            return web.json_response(model.model_dump())
    raise _no_model(name)


# ---- transcriptions and translations --------------------------------------------------------------------

TRANSCRIBE_ERRORS = (400, 404, 413, 503, 504)


@endpoints.post(
    "/v1/audio/transcriptions",
    summary="Transcribe audio, synchronously",
    form=OpenAITranscriptionForm,
    response=OpenAITranscriptionResult,
    media_types=(TEXT,),
    errors=TRANSCRIBE_ERRORS,
)
async def create_transcription(request: web.Request) -> web.Response:
    """The words spoken, in their language: json, text, srt, verbose_json (segments by default; words with
    timestamp_granularities[]=word) or vtt. A balance that cannot pay is 429 insufficient_quota."""
    return await _answer(request, TranscriptionFields)


@endpoints.post(
    "/v1/audio/translations",
    summary="Translate audio into English, synchronously",
    form=OpenAITranslationForm,
    response=OpenAITranscriptionResult,
    media_types=(TEXT,),
    errors=TRANSCRIBE_ERRORS,
)
async def create_translation(request: web.Request) -> web.Response:
    """What is said, in English (Whisper's translate task): json, text, srt, verbose_json or vtt."""
    return await _answer(request, TranslationFields)


def _fields(model: type[TranslationFields], data: dict[str, Any]) -> TranslationFields:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = str(first["loc"][0]) if first["loc"] else None
        if first["type"] == "extra_forbidden":
            raise OpenAIError(400, f"Unrecognized request argument supplied: {param}", param=param) from None
        raise OpenAIError(400, validation_message(exc), param=param) from None


def _too_large(limit: int) -> OpenAIError:
    return OpenAIError(
        413,
        f"The file is larger than the {human_bytes(limit)} ({limit} bytes) a synchronous request takes. Send "
        "it through the resumable uploads (POST /api/open/v1/uploads) and an extract-text order instead.",
        param="file",
        code="file_too_large",
    )


def _language(value: str | None) -> str | None:
    if value is None:
        return None
    wanted = value.strip().lower()
    if wanted in WHISPER_LANGUAGES:
        return wanted
    if wanted in LANGUAGE_CODES:
        return LANGUAGE_CODES[wanted]
    raise OpenAIError(
        400,
        f"Language {value!r} is not one Whisper knows: give an ISO-639-1 code such as en, zh or ja",
        param="language",
    )


def _media_type(saved: SavedFile) -> str:
    """The part's type when it names audio or video, else the one its file name suggests."""
    for candidate in (saved.content_type, mimetypes.guess_type(saved.file_name)[0] or ""):
        if candidate.lower().startswith(MEDIA_TYPES):
            return candidate
    raise OpenAIError(
        400,
        f"Invalid file format: {saved.file_name} ({saved.content_type}) is neither audio nor video by its type "
        "or its name. Send audio or video such as flac, m4a, mp3, mp4, ogg, wav or webm.",
        param="file",
        code="invalid_file_format",
    )


async def _receive(
    request: web.Request, settings: Settings, user: User, form: type[TranslationFields]
) -> tuple[TranslationFields, str, str | None, str]:
    """The form's fields, and its file as a completed upload."""
    limit = settings.openai_max_file_bytes
    if request.content_length is not None and request.content_length > limit + FORM_OVERHEAD:
        raise _too_large(limit)  # said before a byte is stored; aiohttp reads the rest away
    desk = request.app[UPLOADS]
    scratch = desk.scratch_path()
    try:
        try:
            raw, saved = await read_form(
                request, _AnyFields, file_field="file", dest=scratch, max_bytes=limit
            )
        except PayloadTooLarge:
            raise _too_large(limit) from None
        except (BadRequest, UnsupportedMediaType) as exc:
            raise OpenAIError(400, exc.msg) from None
        fields = _fields(form, raw.model_extra or {})
        if saved is None:
            raise OpenAIError(400, "file is required: send the audio as the form's file field", param="file")
        model = await _whisper_model(settings, fields.model)
        language = _language(fields.language) if isinstance(fields, TranscriptionFields) else None
        name = PurePath(saved.file_name.replace("\\", "/")).name[:MAX_FILE_NAME] or "audio"
        try:
            upload = await desk.adopt(user, saved.path, name, _media_type(saved))
        except UnsupportedMediaType as exc:
            raise OpenAIError(
                400, f"Invalid file format: {exc.msg}", param="file", code="invalid_file_format"
            ) from None
        except PayloadTooLarge:
            raise _too_large(limit) from None
    finally:
        scratch.unlink(missing_ok=True)
    return fields, model, language, upload.id


async def _answer(request: web.Request, form: type[TranslationFields]) -> web.Response:
    app = request.app
    settings, service = app[SETTINGS], app[SERVICE]
    user = await _caller(request)
    fields, model, language, upload_id = await _receive(request, settings, user, form)
    translate = not isinstance(fields, TranscriptionFields)
    stuff: dict[str, Any] = {"uploadId": upload_id, "model": model}
    if language is not None:
        stuff["language"] = language
    if fields.prompt is not None:
        stuff["prompt"] = fields.prompt
    if translate:
        stuff["task"] = "translate"
    if fields.temperature:
        stuff["temperature"] = fields.temperature
    try:
        order = parse_create(
            {"orderType": "extract-text", "priority": settings.openai_priority, "stuff": stuff}, app[POLICY]
        )
        placed = await service.place(user, order, api=API)
    except BadRequest as exc:
        raise OpenAIError(400, exc.msg.removeprefix("stuff.")) from None
    except InsufficientBalance:
        raise _no_quota(user, "the balance cannot pay for one minute of transcription") from None

    ended = await _wait(request, service, placed.order_no, settings.openai_wait)
    headers = {ORDER_HEADER: placed.order_no}
    if _client_gone(request):  # nobody to hand the results to: they wait, unpaid, for the native query
        log.info("the client of order %s went away before its answer", placed.order_no)
        raise OpenAIError(
            CLIENT_CLOSED, "the client closed the connection before the answer", headers=headers
        )
    if not ended.terminal:
        raise OpenAIError(
            504,
            f"The transcription did not finish within {settings.openai_wait:g} s. Order {placed.order_no} keeps "
            f"running: GET /api/open/v1/order/query?orderNo={placed.order_no} with the same key returns its "
            "results (and charges it) once it has finished.",
            code="timeout",
            headers={**NO_RETRY, **headers},
        )
    if ended.status != "finish":
        client_fault = reason_kind(ended.reason) in CLIENT_FAILURES
        raise OpenAIError(
            400 if client_fault else 500,
            f"The transcription {'timed out' if ended.status == 'timeout' else 'failed'}: {ended.reason} "
            f"(order {placed.order_no}; it costs nothing)",
            param="file" if client_fault else None,
            headers=headers,
        )
    # Read before charging: an answer that cannot be made must not cost anything.
    rendered = await _render(service, ended, fields, translate)
    delivery = await service.deliver(user, placed.order_no)
    if delivery.short:
        raise _no_quota(
            user,
            f"order {placed.order_no} finished, but its cost ({delivery.order.cost} points) is more than the "
            f"balance ({delivery.balance} points); after a top-up GET /api/open/v1/order/query?orderNo="
            f"{placed.order_no} returns its results",
            headers,
        )
    rendered.headers.update(headers)
    return rendered


def _no_quota(user: User, why: str, headers: dict[str, str] | None = None) -> OpenAIError:
    return OpenAIError(
        429,
        f"You exceeded your current quota: {why}. Top up the account ({user.name}) and try again.",
        type="insufficient_quota",
        code="insufficient_quota",
        headers={**NO_RETRY, **(headers or {})},
    )


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _wait(request: web.Request, service: OrderService, order_no: str, seconds: float) -> Order:
    """The order once it has ended, or as it is when the wait runs out or the client goes away."""
    deadline = time.monotonic() + seconds
    while True:
        order = await service.wait(order_no, max(0.0, min(CLIENT_CHECK_S, deadline - time.monotonic())))
        if order.terminal or _client_gone(request) or time.monotonic() >= deadline:
            return order


async def _render(
    service: OrderService, order: Order, fields: TranslationFields, translate: bool
) -> web.Response:
    fmt = fields.response_format
    try:
        if fmt in ("srt", "vtt"):
            srt = (await service.result_bytes(order, "caption.srt")).decode()
            return web.Response(text=srt if fmt == "srt" else srt_to_vtt(srt), content_type=TEXT)
        transcript = await service.transcript(order)
    except NotFound as exc:
        raise OpenAIError(500, f"the order's results cannot be read: {exc.msg}") from None
    source_language = transcript.get("language") or "en"
    language = "en" if translate else source_language
    segments: list[dict[str, Any]] = transcript.get("segments", [])
    text = ("" if language in UNSPACED else " ").join(s["text"].strip() for s in segments)
    if fmt == "text":
        return web.Response(text=text + "\n", content_type=TEXT)
    usage = None if translate else OpenAIUsage(seconds=math.ceil(transcript["duration"]))
    if fmt == "json":
        return web.json_response(OpenAITranscription(text=text, usage=usage).model_dump(exclude_none=True))
    granularities = getattr(fields, "timestamp_granularities", None) or ["segment"]
    verbose = OpenAITranscriptionVerbose(
        task="translate" if translate else "transcribe",
        language=LANGUAGE_NAMES.get(language, language),
        duration=transcript["duration"],
        text=text,
        segments=[_segment(s) for s in segments] if "segment" in granularities else None,
        words=[_word(w) for w in transcript.get("words", [])] if "word" in granularities else None,
        usage=usage,
    )
    return web.json_response(verbose.model_dump(exclude_none=True))


def _segment(segment: dict[str, Any]) -> OpenAISegment:
    return OpenAISegment(
        id=segment["id"],
        seek=round(segment["seek"] * 100),
        start=segment["start"],
        end=segment["end"],
        text=segment["text"].strip(),
        tokens=segment.get("tokens", []),
        temperature=segment.get("temperature", 0.0),
        avg_logprob=segment.get("avg_logprob", 0.0),
        compression_ratio=segment.get("compression_ratio", 0.0),
        no_speech_prob=segment.get("no_speech_prob", 0.0),
    )


def _word(word: dict[str, Any]) -> OpenAIWord:
    return OpenAIWord(word=word["word"].strip(), start=word["start"], end=word["end"])
