"""Every other site yt-dlp knows (Bilibili, TikTok, YouTube, ..., and pages with a plain ``<video>``).

yt-dlp is synchronous, so it runs in a thread; its own socket timeout bounds how long that thread can
outlive a caller that gave up. Its log is captured, never printed. yt-dlp does its own networking, so every
request it makes is checked against the address policy before it is sent (literal IPs and every DNS answer)
and its final URL after redirects; a private address aborts the extraction.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from typing import Any

from yarl import URL

from yinzi.fetch import AddressPolicy, BlockedAddress
from yinzi.links.base import LinkFailed, PlatformClient, UnsupportedLink, VideoInfo
from yinzi.settings import PlatformOptions

log = logging.getLogger(__name__)

DESKTOP_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
# One file with both audio and video when the site offers one, else the best video and the best audio.
FORMAT = "b/bv*+ba"
MAX_LOG_LINES = 200


class CapturedLog:
    """yt-dlp's logger interface, keeping the lines for the error message and our debug log."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _keep(self, msg: str) -> None:
        if len(self.lines) < MAX_LOG_LINES:
            self.lines.append(msg)
        log.debug("yt-dlp: %s", msg)

    debug = info = warning = error = _keep


class YtDlp:
    name = "ytdlp"
    hosts: tuple[str, ...] = ()  # any site: it is the fallback
    user_agent = DESKTOP_UA

    async def resolve(self, url: URL, client: PlatformClient) -> VideoInfo:
        policy = client.fetcher.policy
        return await asyncio.to_thread(extract, str(url), client.options, client.user_agent, policy)


# How yt-dlp's messages say that a site's name did not resolve or nothing answered on its address.
UNREACHABLE_SIGNS = (
    "Failed to resolve",
    "Name or service not known",
    "Temporary failure in name resolution",
    "No address associated with hostname",
    "Connection refused",
)


def extract(url: str, options: PlatformOptions, user_agent: str, policy: AddressPolicy) -> VideoInfo:
    import yt_dlp
    from yt_dlp.utils import DownloadError, UnsupportedError

    headers = {"User-Agent": user_agent}
    if options.cookie:
        headers["Cookie"] = options.cookie
    params: dict[str, Any] = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": CapturedLog(),
        "noplaylist": True,
        "playlist_items": "1",
        "skip_download": True,
        "cachedir": False,
        "format": FORMAT,
        "socket_timeout": options.timeout,
        "http_headers": headers,
    }
    if options.proxy:
        params["proxy"] = options.proxy
    try:
        with _guarded(yt_dlp.YoutubeDL, policy)(params) as ydl:
            info = ydl.sanitize_info(ydl.extract_info(url, download=False))
    except DownloadError as exc:
        cause = exc.exc_info[1] if exc.exc_info else None
        if isinstance(cause, UnsupportedError):
            raise UnsupportedLink("no supported platform and no video found on the page") from None
        msg = str(exc.msg or exc).removeprefix("ERROR: ")
        # yt-dlp reports an unreachable site in its message only; that is a 504 (no answer), not a 502.
        status = 504 if any(sign in msg for sign in UNREACHABLE_SIGNS) else None
        raise LinkFailed("ytdlp", msg, status=status) from None
    return _video_info(info)


def _video_info(info: dict[str, Any]) -> VideoInfo:
    if info.get("_type") == "playlist":
        entries = [e for e in info.get("entries") or [] if e]
        if not entries:
            raise LinkFailed("ytdlp", "the page lists no videos")
        info = entries[0]
    formats = info.get("requested_formats") or [info]
    video = next((f for f in formats if f.get("vcodec") != "none" and f.get("url")), None)
    audio = next((f for f in formats if f.get("vcodec") == "none" and f.get("url")), None)
    chosen = video or audio
    if chosen is None:
        raise LinkFailed("ytdlp", "yt-dlp found the post but no downloadable stream")
    return VideoInfo(
        platform=str(info.get("extractor_key") or "ytdlp").lower(),
        title=str(info.get("title") or ""),
        author=str(info.get("uploader") or info.get("creator") or info.get("channel") or ""),
        cover=info.get("thumbnail"),
        video_url=chosen["url"],
        music_url=audio["url"] if video is not None and audio is not None else None,
        headers=dict(chosen.get("http_headers") or {}),
    )


@functools.cache
def _site_extractors() -> tuple[Any, ...]:
    from yt_dlp.extractor import gen_extractor_classes

    return tuple(ie for ie in gen_extractor_classes() if ie.ie_key() != "Generic")


def has_site_extractor(url: str) -> bool:
    """Whether a site-specific extractor claims the URL (the generic one claims every URL)."""
    return any(ie.suitable(url) for ie in _site_extractors())


def check_address(policy: AddressPolicy, url: str) -> None:
    """The Fetcher's two checks, for a client we do not control: the URL, then every address DNS gives."""
    host = policy.check_url(url).host or ""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return  # a literal IP: check_url has judged it
    except ValueError:
        pass
    try:
        answers = socket.getaddrinfo(host, None)
    except OSError:
        return  # the request itself will fail with the resolver's message
    policy.check_answers(host, (str(sockaddr[0]) for *_, sockaddr in answers))


def _guarded(base: type, policy: AddressPolicy) -> type:
    class GuardedYoutubeDL(base):  # type: ignore[misc]
        def urlopen(self, req: Any) -> Any:
            check_address(policy, req if isinstance(req, str) else req.url)
            response = super().urlopen(req)
            try:
                check_address(policy, response.url)
            except BlockedAddress:
                response.close()
                raise
            return response

    return GuardedYoutubeDL
