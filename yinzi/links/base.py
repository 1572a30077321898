"""What every link resolver shares: the result type, the errors, and a platform-aware HTTP client."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from yarl import URL

from yinzi.errors import BadRequest, YinziError
from yinzi.fetch import Fetcher, FetchError
from yinzi.settings import PlatformOptions

# Share pages are served to phones without a login; a mobile browser gets the page that embeds the data.
MOBILE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
MAX_PAGE_BYTES = 8 * 1024 * 1024
MAX_REDIRECTS = 10
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class VideoInfo:
    platform: str
    title: str
    author: str
    cover: str | None
    video_url: str | None  # None for image posts
    music_url: str | None = None
    images: tuple[str, ...] = ()
    # What the platform's CDN wants to see when the media is downloaded (its user agent, a Referer).
    headers: Mapping[str, str] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "author": self.author,
            "cover": self.cover,
            "videoUrl": self.video_url,
            "musicUrl": self.music_url,
            "images": list(self.images),
            "platform": self.platform,
        }


class UnsupportedLink(BadRequest):
    def __init__(self, detail: str = "") -> None:
        super().__init__("unsupported link" + (f": {detail}" if detail else ""))


class LinkFailed(YinziError):
    """The platform was reached but this link could not be resolved. 502: the fault is upstream."""

    status = 502

    def __init__(self, platform: str, cause: str, status: int | None = None) -> None:
        super().__init__(f"{platform}: {cause}", status)
        self.platform = platform


class PageChanged(LinkFailed):
    def __init__(self, platform: str, missing: str) -> None:
        super().__init__(platform, f"the page structure changed ({missing} not found); yinzi needs an update")


@dataclass(frozen=True)
class Page:
    url: URL  # where the redirects ended
    status: int
    text: str


class PlatformClient:
    """The fetcher as one platform sees it: its user agent, cookie and proxy on every request."""

    def __init__(self, fetcher: Fetcher, platform: str, options: PlatformOptions, user_agent: str) -> None:
        self.fetcher = fetcher
        self.platform = platform
        self.options = options
        self.user_agent = options.user_agent or user_agent

    def headers(self, referer: str | None = None) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
        if self.options.cookie:
            headers["Cookie"] = self.options.cookie
        if referer:
            headers["Referer"] = referer
        return headers

    async def get(self, url: str | URL, referer: str | None = None) -> Page:
        try:
            async with self.fetcher.request(
                "GET",
                url,
                max_redirects=MAX_REDIRECTS,
                headers=self.headers(referer),
                proxy=self.options.proxy,
            ) as (final, resp):
                body = bytearray()
                async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                    body += chunk
                    if len(body) > MAX_PAGE_BYTES:
                        raise LinkFailed(self.platform, "the page is larger than any share page should be")
                return Page(final, resp.status, body.decode(resp.charset or "utf-8", errors="replace"))
        except FetchError as exc:
            raise LinkFailed(self.platform, str(exc)) from None

    async def get_ok(self, url: str | URL, referer: str | None = None) -> Page:
        page = await self.get(url, referer)
        if page.status in (401, 403):
            raise LinkFailed(
                self.platform, f"HTTP {page.status}: the platform wants cookies ({self.cookie_hint})"
            )
        if page.status == 404:
            raise LinkFailed(self.platform, "HTTP 404: the post was removed or the link is wrong")
        if page.status != 200:
            raise LinkFailed(self.platform, f"HTTP {page.status} from {page.url.host}")
        return page

    @property
    def cookie_hint(self) -> str:
        return f"set YINZI_{self.platform.upper()}_COOKIE to a logged-in browser's Cookie header"


class Resolver(Protocol):
    """One platform: which hosts it owns and how a link of it becomes a VideoInfo."""

    name: str
    hosts: tuple[str, ...]  # domains; their subdomains match too
    user_agent: str

    async def resolve(self, url: URL, client: PlatformClient) -> VideoInfo: ...


def owns(resolver: Resolver, url: URL) -> bool:
    host = (url.host or "").lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in resolver.hosts)


# `undefined` is valid JavaScript but not JSON; some pages put it in their state objects.
_UNDEFINED = re.compile(r"(?<=[:\[,])\s*undefined(?=\s*[,}\]])")


def embedded_json(platform: str, page: Page, marker: str) -> Any:
    """The JSON value a page assigns after ``marker`` in an inline script (``window.X = {...}``)."""
    start = page.text.find(marker)
    if start < 0:
        raise PageChanged(platform, marker.strip(" =")) from None
    rest = page.text[start + len(marker) :].lstrip()
    end = rest.find("</script>")
    source = _UNDEFINED.sub("null", rest if end < 0 else rest[:end])
    try:
        value, _ = json.JSONDecoder().raw_decode(source)
    except json.JSONDecodeError:
        raise PageChanged(platform, f"valid JSON after {marker.strip(' =')}") from None
    return value


def dig(platform: str, data: Any, *path: str | int) -> Any:
    """``data[path[0]][path[1]]...``, or PageChanged naming the path when the page no longer has it."""
    for i, key in enumerate(path):
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            raise PageChanged(platform, ".".join(str(k) for k in path[: i + 1])) from None
    return data


def first_url(value: Any) -> str | None:
    """The first entry of a ``url_list``-style list, or None when the list is absent or empty."""
    if isinstance(value, dict):
        value = value.get("url_list")
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return None
