"""Short-video share links: find the link in a pasted share text and resolve it to its media.

Douyin, Kuaishou, Xiaohongshu and Weibo have resolvers of their own (one module each); yt-dlp serves every
other site it knows. Resolvers share nothing but the fetcher, so one platform changing its pages never
affects the others. Used by ``short-video/analyze`` in the API and by jobs whose ``pathKey`` is a share link.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path, PurePosixPath

import aiohttp
from yarl import URL

from yinzi.errors import BadRequest, OrderFailed, YinziError
from yinzi.fetch import BlockedAddress, Fetcher, download
from yinzi.links.base import LinkFailed, PlatformClient, Resolver, UnsupportedLink, VideoInfo, owns
from yinzi.links.douyin import Douyin
from yinzi.links.kuaishou import Kuaishou
from yinzi.links.text import find_links, is_single_url
from yinzi.links.weibo import Weibo
from yinzi.links.xiaohongshu import Xiaohongshu
from yinzi.links.ytdlp import YtDlp, has_site_extractor
from yinzi.settings import Settings

__all__ = ["LinkAnalyzer", "LinkFailed", "UnsupportedLink", "VideoInfo", "is_single_url", "link_in"]

DEDICATED: tuple[Resolver, ...] = (Douyin(), Kuaishou(), Xiaohongshu(), Weibo())
FALLBACK = YtDlp()
MEDIA_SUFFIXES = frozenset(
    ".aac .aif .aiff .amr .avi .flac .flv .m4a .m4v .mkv .mov .mp3 .mp4 .mpeg .oga .ogg .opus .wav .webm .wma .wmv".split()
)


def link_in(text: str) -> URL | None:
    """The link in a share text: one of a platform we resolve ourselves if there is one, else the first."""
    links = find_links(text)
    return next((u for u in links if any(owns(r, u) for r in DEDICATED)), next(iter(links), None))


class LinkAnalyzer:
    def __init__(self, fetcher: Fetcher, settings: Settings) -> None:
        self._fetcher = fetcher
        self._settings = settings

    async def analyze(self, text: str) -> VideoInfo:
        url = link_in(text)
        if url is None:
            raise UnsupportedLink("no http(s) link found in the text")
        return await self._resolve(_dedicated(url) or FALLBACK, url)

    async def download(self, path_key: str, dest: Path, max_bytes: int) -> Path:
        """Downloads the media behind ``pathKey`` (an order's input, an ingested upload) to ``dest``."""
        media_url, headers = await self._media_source(path_key)
        return await download(
            self._fetcher,
            media_url,
            dest,
            max_bytes=max_bytes,
            max_redirects=self._settings.max_redirects,
            total_timeout=self._settings.fetch_total_timeout,
            headers=headers,
        )

    async def _media_source(self, path_key: str) -> tuple[str, dict[str, str]]:
        """The media URL behind ``pathKey`` and the headers its host wants.

        A link of a platform we resolve, or of a site yt-dlp has an extractor for, is resolved to its video
        (its music for an image post); any other URL is taken to be the media file itself.
        """
        url = URL(path_key)
        resolver = _dedicated(url)
        if resolver is None:
            # A file name with a media extension is the media itself: no need to ask yt-dlp's 1,800 patterns.
            if PurePosixPath(url.path).suffix.lower() in MEDIA_SUFFIXES or not await asyncio.to_thread(
                has_site_extractor, path_key
            ):
                return path_key, {}
            resolver = FALLBACK
        try:
            info = await self._resolve(resolver, url)
        except YinziError as exc:
            raise OrderFailed(f"could not resolve the share link: {exc.msg}") from None
        media = info.video_url or info.music_url
        if media is None:
            raise OrderFailed(f"{info.platform}: the post is an image post without music; there is no audio")
        return media, dict(info.headers)

    async def _resolve(self, resolver: Resolver, url: URL) -> VideoInfo:
        options = self._settings.platform(resolver.name)
        client = PlatformClient(self._fetcher, resolver.name, options, resolver.user_agent)
        try:
            async with asyncio.timeout(options.timeout):
                return await resolver.resolve(url, client)
        except TimeoutError:
            raise LinkFailed(resolver.name, f"timed out after {options.timeout:g} s", status=504) from None
        except BlockedAddress as exc:
            raise BadRequest(f"{resolver.name}: refused to fetch: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.__cause__, BlockedAddress):
                raise BadRequest(f"{resolver.name}: refused to fetch: {exc.__cause__}") from None
            # Not reached at all (no DNS answer, connection refused): 504 like a platform that does not
            # answer; 502 is kept for a platform that answered.
            raise LinkFailed(resolver.name, unreachable(exc), status=504) from None
        except aiohttp.ClientError as exc:
            raise LinkFailed(resolver.name, f"network error: {type(exc).__name__}: {exc}") from None


def unreachable(exc: aiohttp.ClientConnectorError) -> str:
    if isinstance(exc.os_error, socket.gaierror):
        return f"could not reach {exc.host}: the name does not resolve (DNS: {exc.os_error.strerror})"
    return f"could not reach {exc.host}: {exc.strerror or exc}"


def _dedicated(url: URL) -> Resolver | None:
    return next((r for r in DEDICATED if owns(r, url)), None)
