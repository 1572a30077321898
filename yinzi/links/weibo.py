"""Weibo: a post (weibo.com/<uid>/<bid>, m.weibo.cn/status/<id>, or a t.cn short link to one) is read from
the mobile site's JSON, m.weibo.cn/statuses/show?id=<id>. ``page_info.urls`` holds the video in each quality,
``pics`` the pictures; Weibo does not watermark its video streams.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from yarl import URL

from yinzi.links.base import MOBILE_UA, LinkFailed, PageChanged, PlatformClient, VideoInfo, dig

POST_PATH = re.compile(r"^/(?:status|detail|\d+)/([A-Za-z0-9]+)/?$")
SHOW_API = "https://m.weibo.cn/statuses/show?id={id}"
REFERER = "https://m.weibo.cn/"
# Best first.
QUALITIES = ("mp4_1080p_mp4", "mp4_720p_mp4", "mp4_hd_mp4", "mp4_ld_mp4")
TAG = re.compile(r"<[^>]+>")


class Weibo:
    name = "weibo"
    hosts: tuple[str, ...] = ("weibo.com", "weibo.cn", "t.cn")
    user_agent = MOBILE_UA

    async def resolve(self, url: URL, client: PlatformClient) -> VideoInfo:
        match = POST_PATH.match(url.path)
        if match is None:  # a short link
            match = POST_PATH.match((await client.get(url)).url.path)
            if match is None:
                raise LinkFailed(self.name, "the link does not lead to a post")
        page = await client.get_ok(SHOW_API.format(id=match.group(1)), referer=REFERER)
        if "passport" in (page.url.host or "") or "login" in page.url.path:
            raise LinkFailed(self.name, f"the post asks for a login ({client.cookie_hint})")
        try:
            answer = json.loads(page.text)
        except json.JSONDecodeError:
            raise PageChanged(self.name, "a JSON answer from statuses/show") from None
        if not isinstance(answer, dict) or answer.get("ok") != 1:
            message = answer.get("msg") if isinstance(answer, dict) else None
            raise LinkFailed(self.name, f"the post was removed or is private ({message or 'ok != 1'})")
        return self._info(dig(self.name, answer, "data"), client)

    def _info(self, post: dict[str, Any], client: PlatformClient) -> VideoInfo:
        page_info = post.get("page_info") or {}
        images = tuple(
            u
            for u in ((pic.get("large") or {}).get("url") or pic.get("url") for pic in post.get("pics") or [])
            if u
        )
        video_url = None
        if page_info.get("type") == "video":
            urls = page_info.get("urls") or {}
            media = page_info.get("media_info") or {}
            video_url = (
                next((urls[q] for q in QUALITIES if urls.get(q)), None)
                or media.get("stream_url_hd")
                or media.get("stream_url")
            )
            if not video_url:
                raise PageChanged(self.name, "page_info.urls")
        text = html.unescape(TAG.sub("", str(post.get("text") or ""))).strip()
        return VideoInfo(
            platform=self.name,
            title=str(page_info.get("title") or text),
            author=str(dig(self.name, post, "user", "screen_name")),
            cover=(page_info.get("page_pic") or {}).get("url") or next(iter(images), None),
            video_url=video_url,
            images=() if video_url else images,
            headers=client.headers(REFERER),
        )
