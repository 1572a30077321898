"""Douyin: short links (v.douyin.com) lead to the public share page, www.iesdouyin.com/share/<kind>/<id>/,
which embeds the post as ``window._ROUTER_DATA``. yt-dlp's Douyin extractor needs fresh cookies instead.

The stream behind ``play_addr`` with ``playwm`` (play, watermarked) turned into ``play`` is the same video
without the watermark.
"""

from __future__ import annotations

import re
from typing import Any

from yarl import URL

from yinzi.links.base import (
    MOBILE_UA,
    LinkFailed,
    PageChanged,
    PlatformClient,
    VideoInfo,
    dig,
    embedded_json,
    first_url,
)

POST_PATH = re.compile(r"/(video|note|slides)/(\d+)")
SHARE_PAGE = "https://www.iesdouyin.com/share/{kind}/{id}/"
REFERER = "https://www.douyin.com/"


class Douyin:
    name = "douyin"
    hosts: tuple[str, ...] = ("douyin.com", "iesdouyin.com")
    user_agent = MOBILE_UA

    async def resolve(self, url: URL, client: PlatformClient) -> VideoInfo:
        found = _post_id(url)
        if found is None:  # a short link: its redirects end on the share page
            found = _post_id((await client.get(url)).url)
            if found is None:
                raise LinkFailed(self.name, "the link does not lead to a video or note")
        kind, post_id = found
        page = await client.get_ok(SHARE_PAGE.format(kind="note" if kind == "slides" else kind, id=post_id))
        loader = dig(self.name, embedded_json(self.name, page, "window._ROUTER_DATA = "), "loaderData")
        info = next(
            (v["videoInfoRes"] for v in loader.values() if isinstance(v, dict) and "videoInfoRes" in v), None
        )
        if not isinstance(info, dict):
            raise PageChanged(self.name, "loaderData.*.videoInfoRes")
        items = info.get("item_list") or []
        if not items:
            raise LinkFailed(self.name, f"the post was removed or is private ({_filter_reason(info)})")
        return self._info(items[0], client)

    def _info(self, item: dict[str, Any], client: PlatformClient) -> VideoInfo:
        video = item.get("video") or {}
        images = tuple(u for u in (first_url(image) for image in item.get("images") or []) if u)
        play = first_url(video.get("play_addr"))
        if not images and not play:
            raise PageChanged(self.name, "video.play_addr.url_list")
        return VideoInfo(
            platform=self.name,
            title=str(item.get("desc") or ""),
            author=str(dig(self.name, item, "author", "nickname")),
            cover=first_url(video.get("cover"))
            or first_url(video.get("origin_cover"))
            or next(iter(images), None),
            video_url=None if images else play.replace("/playwm/", "/play/") if play else None,
            music_url=first_url((item.get("music") or {}).get("play_url")),
            images=images,
            headers=client.headers(REFERER),
        )


def _post_id(url: URL) -> tuple[str, str] | None:
    if (match := POST_PATH.search(url.path)) is not None:
        return match.group(1), match.group(2)
    if (
        modal := url.query.get("modal_id", "")
    ).isascii() and modal.isdigit():  # www.douyin.com/discover?modal_id=<id>
        return "video", modal
    return None


def _filter_reason(info: dict[str, Any]) -> str:
    for entry in info.get("filter_list") or []:
        if isinstance(entry, dict):
            reason = entry.get("notice") or entry.get("filter_reason")
            if reason:
                return str(reason)
    return "no item in the share page"
