"""aiesa transcriptions (seed 003), under ``/api/v1``: a price quote, a transcription made from an uploaded file or
a URL, and its state with signed links to its text, JSON and PDF report and an AI analysis of it.

Requests are signed with yinzi's signed key pairs (``yinzi keys create NAME --signed``): ``X-Public-Key``,
``X-Timestamp`` (Unix seconds, within 5 minutes) and ``X-Signature``, the hex HMAC-SHA256 of ``public_key + "\\n" +
timestamp`` under the pair's secret, exactly the seed's ``printf "%s\\n%s" | openssl dgst -sha256 -hmac``.

A transcription is an extract-text order asking for a PDF report (``stuff.report``) and, with ``ai_prompt``, an
AI analysis (``stuff.aiPrompt``); its id is a UUID kept as the order's ref. The first GET of a completed one
delivers it, which charges it once (yinzi/service.py); a balance that cannot pay withholds the results with a 402.
Errors are ``{"error": {"code", "message"}}`` (the seed shows none; see README).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, field_validator

from yinzi.accounts import authenticate
from yinzi.appkeys import DB, POLICY, SERVICE, SETTINGS, UPLOADS
from yinzi.declare import Api, Endpoints, read_form, validate
from yinzi.errors import BadRequest, InsufficientBalance, NotFound, PayloadTooLarge, Unauthorized, YinziError
from yinzi.llm import NOT_CONFIGURED, LlmError, list_models
from yinzi.orders import MAX_AI_PROMPT_CHARS, WHISPER_LANGUAGES, parse_create, url_file_name
from yinzi.pricing import billed_minutes, order_cost
from yinzi.routes import public_base
from yinzi.service import Delivery
from yinzi.store import User

API = "aiesa"
ORDER_TYPE = "extract-text"
CURRENCY: Literal["points"] = "points"
TARIFF_PLAN = "standard"  # yinzi has one price list, the operator's (YINZI_PRICES)
CREATED_MESSAGE = "Transcription created. File processing started in background."
AUTO_LANGUAGE = "auto"
# Result files behind results.text, results.json and results.pdf.
RESULT_FILES = {"text": "transcript.txt", "json": "transcript.json", "pdf": "transcript.pdf"}
ANALYSIS_FILE = "analysis.json"
STATUSES = {
    "pending": "pending",
    "processing": "processing",
    "finish": "completed",
    "failed": "failed",
    "timeout": "failed",
}
ERROR_CODES = {
    400: "validation_error",
    401: "unauthorized",
    402: "insufficient_funds",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "file_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
# SS, MM:SS or HH:MM:SS (the first part any size; seconds may have a fraction).
DURATION = re.compile(r"(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)")
SIGNED_HEADERS = ("X-Public-Key", "X-Timestamp", "X-Signature")
URLENCODED = "application/x-www-form-urlencoded"


# ---- shapes ---------------------------------------------------------------------------------------------------


class AiesaErrorBody(BaseModel):
    code: str = Field(description="machine-readable: " + ", ".join(sorted(set(ERROR_CODES.values()))))
    message: str


class AiesaError(BaseModel):
    error: AiesaErrorBody


class AiesaCalculateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Literal["queue", "lightning"] = "queue"
    duration: StrictStr | StrictInt | StrictFloat = Field(
        description="MM:SS, HH:MM:SS, or seconds (a number or a string of digits)", examples=["00:05", 125.5]
    )


class AiesaMonthUsage(BaseModel):
    minutes_lightning: int
    minutes_queue: int
    total_cost: int


class AiesaBalance(BaseModel):
    balance: int
    currency: Literal["points"]
    credit_limit: int = Field(description="always 0: yinzi has no credit")
    overdraft_enabled: bool = Field(description="always false: yinzi has no overdraft")
    overdraft_used: int
    available_credit: int = Field(description="what can be spent now: the balance")
    tariff_plan: str
    usage_current_month: AiesaMonthUsage


class AiesaQuote(BaseModel):
    durationSeconds: float
    durationMinutes: float
    minutesBilled: int
    cost: int
    balance: AiesaBalance


class AiesaCreateForm(BaseModel):
    """multipart/form-data: ``file``, or ``source_type=url`` with ``source_url``."""

    model_config = ConfigDict(extra="forbid")

    # Documents the file part; read_form streams that part to disk, so it never reaches this model.
    file: bytes | None = Field(None, description="the audio or video file (with source_type upload)")
    source_type: Literal["upload", "url"] = "upload"
    source_url: str | None = None
    language: str | None = Field(
        None, description="a language code such as ru or en; auto or empty: detected"
    )
    priority: Literal["queue", "lightning"] = "queue"
    enable_diarization: bool = False
    ai_prompt: str | None = Field(None, max_length=MAX_AI_PROMPT_CHARS, description="empty: no AI analysis")

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        value = (value or "").strip().lower()
        if value in ("", AUTO_LANGUAGE):
            return None
        if value not in WHISPER_LANGUAGES:
            raise ValueError("language must be auto or a language code such as ru, en or zh")
        return value

    @field_validator("ai_prompt", "source_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None


class AiesaCreated(BaseModel):
    transcription_id: str
    status: Literal["pending"]
    model: str
    language: str
    priority_type: Literal["queue", "lightning"]
    need_confirm: bool = Field(description="always false: processing starts at once, charged when delivered")
    message: str


class AiesaResults(BaseModel):
    text: str
    json_: str = Field(alias="json")
    pdf: str | None


class AiesaAnalysis(BaseModel):
    model: str | None
    prompt: str
    text: str | None
    error: str | None = Field(description="why there is no text: the language model failed or is not set up")


class AiesaTranscription(BaseModel):
    id: str
    status: Literal["pending", "processing", "completed", "failed"]
    progress: int
    duration_seconds: float | None
    duration_minutes: float | None
    minutes_billed: int | None
    cost: int | None = Field(description="points charged; null until completed, 0 when failed")
    priority_type: Literal["queue", "lightning"]
    filename: str | None
    file_size: int | None
    source_type: Literal["upload", "url"]
    model: str
    language: str
    results: AiesaResults | None
    ai_analysis: AiesaAnalysis | None
    error_message: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    billed_at: str | None


class AiesaTranscriptionAnswer(BaseModel):
    data: AiesaTranscription


class AiesaAiModel(BaseModel):
    id: str
    owned_by: str | None


class AiesaAiModels(BaseModel):
    data: list[AiesaAiModel]
    default_model: str | None
    note: str | None = Field(description="why the list is empty, when it is")


def _error(exc: YinziError, request_id: str) -> web.Response:
    body = {"error": {"code": ERROR_CODES.get(exc.status, "error"), "message": exc.msg}}
    return web.json_response(body, status=exc.status)


api = Api(
    name=API,
    title="aiesa transcriptions",
    description="The aiesa transcription API (price quote, transcriptions with PDF reports and AI analysis) "
    "under /api/v1, with signed requests.",
    error=_error,
    error_model=AiesaError,
    security={
        "aiesaSignature": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Signature",
            "description": "with X-Public-Key and X-Timestamp (Unix seconds): hex HMAC-SHA256 of "
            "public_key + newline + timestamp under the key pair's secret",
        }
    },
)
endpoints = Endpoints(api)


# ---- routes ---------------------------------------------------------------------------------------------------


async def _caller(request: web.Request) -> User:
    """Only signed requests: a Bearer key is not part of this API."""
    if "X-Public-Key" not in request.headers:
        raise Unauthorized(f"{', '.join(SIGNED_HEADERS)} are required")
    return await authenticate(request)


@endpoints.post(
    "/api/v1/transcriptions/calculate",
    summary="What a transcription would cost, and the balance",
    body=AiesaCalculateRequest,
    response=AiesaQuote,
    errors=(400,),
)
async def calculate(request: web.Request, quote: AiesaCalculateRequest) -> web.Response:
    user = await _caller(request)
    settings = request.app[SETTINGS]
    seconds = parse_duration(quote.duration, settings.max_duration)
    minutes = billed_minutes(seconds)
    answer = AiesaQuote(
        durationSeconds=seconds,
        durationMinutes=round(seconds / 60, 2),
        minutesBilled=minutes,
        cost=order_cost(settings, ORDER_TYPE, seconds, quote.priority),
        balance=await _balance(request.app, user),
    )
    return web.json_response(answer.model_dump())


@endpoints.post(
    "/api/v1/transcriptions",
    summary="Create a transcription from a file or a URL",
    form=AiesaCreateForm,
    response=AiesaCreated,
    status=201,
    errors=(400, 402, 413, 415),
    links={"GetTranscription": api.link("get_transcription", {"id": "$response.body#/transcription_id"})},
)
async def create_transcription(request: web.Request) -> web.Response:
    user = await _caller(request)  # before a byte of the file is stored
    app = request.app
    settings = app[SETTINGS]
    incoming = app[UPLOADS].scratch_path()
    if request.content_type == URLENCODED:  # a URL source sent by a client that sends no file as multipart
        try:
            fields = dict(await request.post())
        except web.HTTPRequestEntityTooLarge:
            raise PayloadTooLarge(
                f"a form without a file is limited to {settings.max_json_body} bytes"
            ) from None
        form, saved = validate(AiesaCreateForm, fields), None
    else:
        form, saved = await read_form(
            request, AiesaCreateForm, file_field="file", dest=incoming, max_bytes=settings.max_download_bytes
        )
    try:
        stuff: dict[str, Any] = {"report": "pdf", "model": settings.whisper_model}
        if form.source_type == "url":
            if saved is not None:
                raise BadRequest("send a file or source_type=url with source_url, not both")
            if form.source_url is None:
                raise BadRequest("source_url is required with source_type=url")
            stuff["pathKey"] = form.source_url
            name = url_file_name(form.source_url)
        else:
            if saved is None:
                raise BadRequest("file is required (or source_type=url with source_url)")
            if form.source_url is not None:
                raise BadRequest("source_url goes with source_type=url")
            upload = await app[UPLOADS].adopt(user, saved.path, saved.file_name, saved.content_type)
            stuff["uploadId"] = upload.id
            name = upload.file_name
    finally:
        if saved is not None:
            saved.path.unlink(missing_ok=True)  # gone already when adopted
    if name:
        stuff["fileName"] = name
    if form.language:
        stuff["language"] = form.language
    if form.enable_diarization:
        stuff["diarize"] = True
    if form.ai_prompt:
        stuff["aiPrompt"] = form.ai_prompt
    try:
        order = parse_create(
            {"orderType": ORDER_TYPE, "priority": form.priority, "stuff": stuff}, app[POLICY]
        )
    except BadRequest as exc:
        raise BadRequest(_form_words(exc.msg)) from None
    transcription_id = str(uuid.uuid4())
    try:
        await app[SERVICE].place(user, order, api=API, ref=transcription_id)
    except InsufficientBalance:
        balance = await app[DB].balance(user.id)
        start = order_cost(settings, ORDER_TYPE, 0, form.priority)
        raise _insufficient(
            f"a transcription needs at least {start} points to start; the balance is {balance}"
        ) from None
    created = AiesaCreated(
        transcription_id=transcription_id,
        status="pending",
        model=stuff["model"],
        language=form.language or AUTO_LANGUAGE,
        priority_type=form.priority,
        need_confirm=False,
        message=CREATED_MESSAGE,
    )
    return web.json_response(created.model_dump(), status=201)


@endpoints.get(
    "/api/v1/transcriptions/{id}",
    summary="A transcription: its state, and once completed its results (charged on the first such answer)",
    response=AiesaTranscriptionAnswer,
    errors=(402, 404),
)
async def get_transcription(request: web.Request) -> web.Response:
    user = await _caller(request)
    transcription_id = request.match_info["id"]
    service = request.app[SERVICE]
    try:
        found = await service.find_ref(user, API, transcription_id)
    except NotFound:
        raise NotFound(f"transcription {transcription_id} not found") from None
    delivery = await service.deliver(user, found.order_no)
    if delivery.short:
        raise _insufficient(
            f"the transcription costs {delivery.order.cost} points and the balance is {delivery.balance}; "
            "top up and request it again"
        )
    data = await _view(request, transcription_id, delivery)
    return web.json_response({"data": data.model_dump(by_alias=True)})


@endpoints.get(
    "/api/v1/ai/models",
    summary="The language models AI analysis can use",
    response=AiesaAiModels,
    errors=(502,),
)
async def ai_models(request: web.Request) -> web.Response:
    await _caller(request)
    settings = request.app[SETTINGS]
    if not settings.llm_url:
        return web.json_response(AiesaAiModels(data=[], default_model=None, note=NOT_CONFIGURED).model_dump())
    try:
        listed = await list_models(settings)
    except LlmError as exc:
        raise YinziError(exc.reason, 502) from None
    models = [AiesaAiModel(id=m["id"], owned_by=m.get("owned_by")) for m in listed]
    default = settings.llm_model or (models[0].id if models else None)
    note = None if models else f"the language model at {settings.llm_url} lists no models"
    return web.json_response(AiesaAiModels(data=models, default_model=default, note=note).model_dump())


# ---- the pieces -----------------------------------------------------------------------------------------------


def parse_duration(value: str | int | float, longest: int) -> float:
    """Seconds from MM:SS, HH:MM:SS or a number of seconds; above 0 and at most ``longest``."""
    if isinstance(value, str):
        match = DURATION.fullmatch(value.strip())
        if match is None:
            raise BadRequest("duration must look like MM:SS or HH:MM:SS, or be a number of seconds")
        first, second, last = match.groups()
        parts = [int(p) for p in (first, second) if p is not None]
        if any(p >= 60 for p in parts[1:]) or (parts and float(last) >= 60):
            raise BadRequest("duration: minutes and seconds after the first part must be below 60")
        seconds = float(last)
        for multiplier, part in zip((60, 3600), reversed(parts), strict=False):
            seconds += multiplier * part
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or not 0 < seconds <= longest:
        raise BadRequest(f"duration must be above 0 and at most {longest} seconds")
    return seconds


async def _balance(app: web.Application, user: User) -> AiesaBalance:
    """The balance, and what this calendar month's (UTC) orders cost so far: every charged order of the user's,
    through any API, its minutes counted by priority."""
    db = app[DB]
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    usage = {"lightning": 0, "queue": 0}
    total = 0
    for order in await db.orders_in_month(user.id, month):
        if order.pay_status == "paid":
            usage[order.priority] = usage.get(order.priority, 0) + billed_minutes(order.duration or 0)
            total += order.cost
    balance = await db.balance(user.id)
    return AiesaBalance(
        balance=balance,
        currency=CURRENCY,
        credit_limit=0,
        overdraft_enabled=False,
        overdraft_used=0,
        available_credit=balance,
        tariff_plan=TARIFF_PLAN,
        usage_current_month=AiesaMonthUsage(
            minutes_lightning=usage["lightning"], minutes_queue=usage["queue"], total_cost=total
        ),
    )


async def _view(request: web.Request, transcription_id: str, delivery: Delivery) -> AiesaTranscription:
    app = request.app
    service = app[SERVICE]
    order = delivery.order
    stuff = order.stuff
    upload_id = stuff.get("uploadId")
    upload = await app[DB].upload(str(upload_id)) if upload_id else None
    duration = order.duration if order.duration is not None else upload.duration if upload else None
    paid = delivery.paid
    results = analysis = None
    language = stuff.get("language")
    if paid:
        base = public_base(request)
        names = {r.name for r in order.results}
        links = {
            key: base + service.result_path(order, name)
            for key, name in RESULT_FILES.items()
            if name in names
        }
        results = AiesaResults.model_validate({"pdf": None, **links})
        if language is None:
            language = (await service.transcript(order)).get("language")
        if stuff.get("aiPrompt") and ANALYSIS_FILE in names:
            analysis = AiesaAnalysis.model_validate(
                json.loads(await service.result_bytes(order, ANALYSIS_FILE))
            )
    status = STATUSES[order.status]
    if order.pay_status == "paid":
        cost: int | None = order.cost
    elif status == "failed" or order.expired:
        cost = 0  # failed, or expired before anyone fetched it: free
    else:
        cost = None
    return AiesaTranscription(
        id=transcription_id,
        status=status,  # type: ignore[arg-type]  # the values of STATUSES
        progress=100 if order.terminal else order.progress,
        duration_seconds=duration,
        duration_minutes=None if duration is None else round(duration / 60, 2),
        minutes_billed=None if duration is None else billed_minutes(duration),
        cost=cost,
        priority_type=order.priority,  # type: ignore[arg-type]  # one of PRIORITIES
        filename=stuff.get("fileName"),
        file_size=upload.size_bytes if upload else None,
        source_type="upload" if upload_id else "url",
        model=stuff.get("model") or app[SETTINGS].whisper_model,
        language=language or AUTO_LANGUAGE,
        results=results,
        ai_analysis=analysis,
        error_message=order.reason,
        created_at=_utc(order.created_at),
        started_at=_iso(order.started_at),
        completed_at=_iso(order.finished_at) if status == "completed" else None,
        billed_at=_iso(order.paid_at),
    )


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else _utc(seconds)


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _insufficient(detail: str) -> YinziError:
    return YinziError(f"Insufficient funds: {detail}", 402)


def _form_words(message: str) -> str:
    """A message about the order's stuff in this API's form field names."""
    for native, ours in (("stuff.pathKey", "source_url"), ("pathKey", "source_url"), ("stuff.", "")):
        message = message.replace(native, ours)
    return message
