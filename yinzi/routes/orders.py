"""POST /api/open/v1/order/create, GET /api/open/v1/order/query and POST /api/open/v1/order/calculate.

The create and calculate rules live in yinzi/orders.py (``parse_create``, ``parse_calculate``), shared with the
APIs that build a native body; the models below describe exactly those rules in /openapi.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel

from yinzi.accounts import authenticate
from yinzi.appkeys import DB, POLICY, SERVICE, SETTINGS, UPLOADS
from yinzi.envelope import ok
from yinzi.errors import InsufficientBalance
from yinzi.idempotency import HEADER, MAX_KEY_LENGTH, TTL_S, idempotent
from yinzi.orders import (
    CHINESE_SCRIPTS,
    MAX_AI_PROMPT_CHARS,
    MAX_FILE_NAME_CHARS,
    MAX_PROMPT_CHARS,
    MAX_URL_LENGTH,
    MODEL_NAME,
    OUTPUT_FORMATS,
    REPORT_FORMATS,
    TEXT_NUMBERS,
    UPLOAD_ID,
    WHISPER_LANGUAGES,
    WHISPER_TASKS,
    created_view,
    parse_calculate,
    parse_create,
    query_view,
)
from yinzi.pricing import billed_minutes, order_cost
from yinzi.routes import public_base
from yinzi.routes.api import API, LINK_IN_TEXT, Envelope, Query, endpoints, optional
from yinzi.store import User

SeparationType = Literal["track-separation", "extract-voice", "extract-music"]
OrderType = Literal[SeparationType, "extract-text"]
Priority = Annotated[
    Literal["queue", "lightning"],
    Field(description="lightning costs more (YINZI_LIGHTNING_MULTIPLIER) and starts before queued orders"),
]
OrderStatus = Literal["pending", "processing", "finish", "failed", "timeout"]
PayStatus = Literal["waiting", "paid", "free"]
ORDER_NO = r"^[A-Za-z0-9]{18}$"


class Source(BaseModel):
    """Where the media comes from: ``pathKey`` or ``uploadId``, exactly one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["pathKey"], "properties": {"pathKey": {"type": "string"}}, "not": {"required": ["uploadId"]}},
                {"required": ["uploadId"], "properties": {"pathKey": {"type": "null"}}},
            ]
        },
    )  # fmt: skip

    pathKey: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_URL_LENGTH,
        pattern=LINK_IN_TEXT,
        description="http(s) URL of the media, or a short-video share link or a whole share text containing one; "
        "addresses on private networks are refused",
    )
    uploadId: str = optional(
        pattern=f"^{UPLOAD_ID.pattern}$", description="a completed upload session (POST /api/open/v1/uploads)"
    )


class SeparationStuff(Source):
    format: Literal[OUTPUT_FORMATS] = optional(description="result format (default mp3)")  # type: ignore[valid-type]


def _text_number(name: str, description: str) -> Any:
    low, high, whole = TEXT_NUMBERS[name]
    return optional(ge=low, le=high, description=f"{description} (whole number)" if whole else description)


class TextStuff(Source):
    language: Literal[tuple(sorted(WHISPER_LANGUAGES))] = optional(  # type: ignore[valid-type]
        description="language code such as en or zh (detected when absent)"
    )
    prompt: str = optional(max_length=MAX_PROMPT_CHARS, description="hot words or an initial prompt")
    model: str = optional(pattern=f"^{MODEL_NAME.pattern}$", description="Whisper model, e.g. small")
    chinese: Literal[CHINESE_SCRIPTS] = optional(  # type: ignore[valid-type]
        description="script of Chinese output (default simplified)"
    )
    vad: bool = optional(description="transcribe only where voice activity is found (default true)")
    diarize: bool = optional(description="label every segment and word with its speaker")
    task: Literal[WHISPER_TASKS] = optional(  # type: ignore[valid-type]
        description="translate: English text whatever the language spoken (multilingual models)"
    )
    splitChannels: bool = optional(
        description="transcribe each channel on its own (a call with one party per channel); segments and "
        "words carry their channel"
    )
    beamSize: int = _text_number("beamSize", "beam search width (default 5; 1 decodes greedily)")
    temperature: float = _text_number(
        "temperature",
        "where Whisper's temperature schedule starts (default 0: beam search, sampling only as a fallback); "
        "above 0 every pass samples, 0.2 hotter on each fallback up to 1",
    )
    speakers: int = _text_number(
        "speakers", "with diarize: how many speakers there are (estimated when absent)"
    )
    maxLineChars: int = _text_number(
        "maxLineChars", "longest subtitle line (default 42; 16 for Chinese, Japanese)"
    )
    maxLines: int = _text_number("maxLines", "lines per subtitle (default 2)")
    maxCaptionSeconds: float = _text_number(
        "maxCaptionSeconds", "longest time one subtitle shows (default 7)"
    )
    report: Literal[REPORT_FORMATS] = optional(  # type: ignore[valid-type]
        description="also write transcript.pdf, a report of the transcript"
    )
    aiPrompt: str = optional(
        max_length=MAX_AI_PROMPT_CHARS,
        description="ask the server's language model (YINZI_LLM_URL) this about the transcript; the answer is "
        "analysis.json",
    )
    fileName: str = optional(
        max_length=MAX_FILE_NAME_CHARS,
        description="the media's name on the report (default: the upload's or the URL's file name)",
    )


class OrderBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Priority = "queue"
    callbackUrl: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        pattern=r"^\s*[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]",
        description="http(s) URL POSTed once the order ends, signed with X-Yinzi-Signature (see README); "
        "addresses on private networks are refused",
    )


class SeparationOrder(OrderBase):
    orderType: SeparationType
    stuff: SeparationStuff


class TextOrder(OrderBase):
    orderType: Literal["extract-text"]
    stuff: TextStuff


class CreateOrder(RootModel[Annotated[SeparationOrder | TextOrder, Field(discriminator="orderType")]]):
    """An order: its type decides the options ``stuff`` may carry."""


class IdempotencyHeaders(BaseModel):
    key: str = optional(
        alias=HEADER,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]+$",  # what str.isprintable() takes, near enough
        description=f"a retry with the same key and body within {TTL_S // 3600} h returns the first answer",
    )


class CreatedOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orderNo: str = Field(pattern=ORDER_NO)
    orderType: OrderType
    orderStatus: Literal["pending"]
    payStatus: Literal["waiting"]
    messageId: str = Field(description="the queue's job id: the order number")
    priority: Priority


class OrderQuery(Query):
    field_messages: ClassVar[Mapping[str, str]] = {"orderNo": "orderNo is required"}

    orderNo: str = Field(pattern=r"\S", description="from order/create")


class ResultFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    business: str = Field(description="what the file holds: vocals, accompaniment, text, ...")
    url: str = Field(description="signed; valid for an hour (query again for a fresh one)")


class OrderView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orderNo: str = Field(pattern=ORDER_NO)
    orderType: OrderType
    status: OrderStatus
    payStatus: PayStatus = Field(
        description="waiting: not charged yet; paid: charged; free: failed or timed out"
    )
    progress: int = Field(ge=0, le=100)
    cost: int = Field(ge=0, description="points; charged on the first query after finish")
    reason: str | None = Field(description="why a failed or timed-out order ended")
    stuffs: list[ResultFile] = Field(description="the result files, once the order is paid")
    balance: int
    priority: Priority


class Calculate(BaseModel):
    """The price of an order of ``durationSeconds``, or of a completed upload's length: exactly one of them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["durationSeconds"], "properties": {"durationSeconds": {"type": "number"}, "uploadId": {"type": "null"}}},
                {"required": ["uploadId"], "properties": {"uploadId": {"type": "string"}, "durationSeconds": {"type": "null"}}},
            ]
        },
    )  # fmt: skip

    orderType: OrderType
    priority: Priority = "queue"
    durationSeconds: float | None = Field(
        default=None, gt=0, description="seconds; at most YINZI_MAX_DURATION (default 10 hours)"
    )
    uploadId: str | None = Field(default=None, pattern=f"^{UPLOAD_ID.pattern}$")


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orderType: OrderType
    priority: Priority
    durationSeconds: float
    minutesBilled: int = Field(ge=1)
    cost: int = Field(ge=0, description="points")
    balance: int


@endpoints.post(
    "/api/open/v1/order/create",
    summary="Create a processing order",
    description="Points are charged once, on the first order/query that returns the finished results.",
    body=CreateOrder,
    validated=False,  # parse_create holds the rules (shared with other APIs); CreateOrder documents them
    headers=IdempotencyHeaders,
    response=Envelope[CreatedOrder],
    errors={
        400: "malformed JSON, or a missing or invalid field (pathKey is required, ...)",
        402: "ErrorCode.USER_BLANCE_NOT_ENOUGH: the balance is below one minute of this order type",
        404: "upload not found",
        409: "the upload is not complete, or the Idempotency-Key's first request is still running",
        413: "request body too large",
        415: "Content-Type is not application/json",
        422: "Idempotency-Key reused with a different body",
        503: "the job queue is unavailable; nothing was created",
    },
    links={"QueryOrder": API.link("query_order", {"orderNo": "$response.body#/data/orderNo"})},
)
async def create_order(request: web.Request, body: dict[str, Any]) -> web.Response:
    user = await authenticate(request)
    return await idempotent(request.app[DB], request, user, body, lambda: _create(request.app, user, body))


async def _create(app: web.Application, user: User, body: dict[str, Any]) -> web.Response:
    order = parse_create(body, app[POLICY])
    if order.upload_id is not None:
        await app[UPLOADS].completed(user, order.upload_id)
    placed = await app[SERVICE].place(user, order)
    return ok(created_view(placed.order_no, order))


@endpoints.get(
    "/api/open/v1/order/query",
    summary="Query an order; the first query after it finishes charges its cost",
    query=OrderQuery,
    response=Envelope[OrderView],
    errors={
        400: "orderNo is required",
        402: "ErrorCode.USER_BLANCE_NOT_ENOUGH: finished, but the balance cannot pay; top up and query again",
        404: "Order not found (also another user's order)",
        503: "a dependency is unavailable",
    },
)
async def query_order(request: web.Request, query: OrderQuery) -> web.Response:
    user = await authenticate(request)
    service = request.app[SERVICE]
    delivery = await service.deliver(user, query.orderNo.strip())
    if delivery.short:
        raise InsufficientBalance()
    base = public_base(request)
    return ok(
        query_view(
            delivery.order, delivery.balance, lambda name: base + service.result_path(delivery.order, name)
        )
    )


@endpoints.post(
    "/api/open/v1/order/calculate",
    summary="The price of an order, creating nothing",
    body=Calculate,
    validated=False,  # parse_calculate holds the rules; Calculate documents them
    response=Envelope[Price],
    errors={
        400: "malformed JSON, or a missing or invalid field",
        404: "upload not found",
        409: "the upload is not complete",
        413: "request body too large",
        415: "Content-Type is not application/json",
        503: "a dependency is unavailable",
    },
)
async def calculate(request: web.Request, body: dict[str, Any]) -> web.Response:
    app = request.app
    user = await authenticate(request)
    quote = parse_calculate(body, app[SETTINGS].max_duration)
    duration = quote.duration
    if duration is None:
        assert quote.upload_id is not None
        duration = (await app[UPLOADS].completed(user, quote.upload_id)).duration
        assert duration is not None
    return ok(
        {
            "orderType": quote.order_type,
            "priority": quote.priority,
            "durationSeconds": duration,
            "minutesBilled": billed_minutes(duration),
            "cost": order_cost(app[SETTINGS], quote.order_type, duration, quote.priority),
            "balance": await app[DB].balance(user.id),
        }
    )
