"""POST /api/open/v1/short-video/analyze: a share link (or a whole share text) in, the post's media out."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from yinzi.accounts import authenticate
from yinzi.appkeys import DB, LINKS, SETTINGS
from yinzi.declare import checked_elsewhere
from yinzi.envelope import ok
from yinzi.errors import InsufficientBalance, YinziError
from yinzi.links import LinkFailed
from yinzi.metrics import ANALYSES
from yinzi.routes.api import LINK_IN_TEXT, Envelope, Strict, endpoints

MAX_LINK_CHARS = 4096


class Analyze(Strict):
    link: str = Field(
        min_length=1,
        max_length=MAX_LINK_CHARS,
        # A text without an http(s) link in it is refused by the resolver (400 "unsupported link").
        json_schema_extra=checked_elsewhere(
            pattern=LINK_IN_TEXT, description="a share link, or a whole pasted share text containing one"
        ),
    )

    @field_validator("link", mode="before")
    @classmethod
    def _link(cls, link: Any) -> Any:
        if link is None or link == "":
            raise ValueError("link is required")
        if not isinstance(link, str):
            raise ValueError("link must be a string")
        if len(link) > MAX_LINK_CHARS:
            raise ValueError(f"link is longer than {MAX_LINK_CHARS} characters")
        return link


class Analysis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    author: str
    cover: str | None
    videoUrl: str | None = Field(description="without watermark; null for image posts")
    musicUrl: str | None
    images: list[str]
    platform: str = Field(description="douyin, kuaishou, xiaohongshu, weibo, or yt-dlp's name of the site")
    balance: int = Field(description="points left after this call")


@endpoints.post(
    "/api/open/v1/short-video/analyze",
    summary="Resolve a short-video share link (Douyin, Kuaishou, Xiaohongshu, Weibo, yt-dlp sites)",
    description="Charged per successful call (YINZI_ANALYZE_PRICE, 1 point by default); a failed call costs "
    "nothing.",
    body=Analyze,
    response=Envelope[Analysis],
    errors={
        400: "link is required / unsupported link / a private address",
        402: "ErrorCode.USER_BLANCE_NOT_ENOUGH",
        413: "request body too large",
        415: "Content-Type is not application/json",
        502: "the platform answered but the post could not be resolved (removed, private, ...)",
        503: "a dependency is unavailable",
        504: "the platform did not answer in time",
    },
)
async def analyze(request: web.Request, body: Analyze) -> web.Response:
    app = request.app
    db = app[DB]
    user = await authenticate(request)
    link = body.link
    price = app[SETTINGS].analyze_price
    if user.balance < price:
        raise InsufficientBalance()  # before spending a platform request on it
    try:
        info = await app[LINKS].analyze(link)
    except YinziError as exc:
        platform = exc.platform if isinstance(exc, LinkFailed) else None
        await db.record_analysis(user.id, link, platform, 0, exc.msg)  # failed calls are kept, and free
        ANALYSES.labels(platform or "none", f"http_{exc.status}").inc()
        raise
    # Charged in the transaction that records the call; a balance spent meanwhile gets 402 and no charge.
    balance = await db.record_analysis(user.id, link, info.platform, price)
    ANALYSES.labels(info.platform, "ok").inc()
    return ok({**info.view(), "balance": balance})
