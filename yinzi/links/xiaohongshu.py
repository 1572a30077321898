"""Xiaohongshu: short links (xhslink.com) lead to the note page, www.xiaohongshu.com/discovery/item/<id>
(with the ``xsec_token`` the page needs), which embeds the note as ``window.__INITIAL_STATE__``.

A video note's ``video.consumer.originVideoKey`` names the original upload on the video CDN, without the
watermark; image notes list their pictures in ``imageList``.
"""

from __future__ import annotations

import re
from typing import Any

from yarl import URL

from yinzi.links.base import (
    MOBILE_UA,
    LinkFailed,
    PlatformClient,
    VideoInfo,
    dig,
    embedded_json,
)

NOTE_PATH = re.compile(r"/(?:explore|discovery/item|item)/([0-9a-zA-Z]{24})")
ORIGINAL_VIDEO = "https://sns-video-bd.xhscdn.com/{key}"
REFERER = "https://www.xiaohongshu.com/"


class Xiaohongshu:
    name = "xiaohongshu"
    hosts: tuple[str, ...] = ("xiaohongshu.com", "xhslink.com")
    user_agent = MOBILE_UA

    async def resolve(self, url: URL, client: PlatformClient) -> VideoInfo:
        page = await client.get_ok(url)
        if "login" in page.url.path or "captcha" in page.url.path:
            raise LinkFailed(self.name, f"the note asks for a login ({client.cookie_hint})")
        if page.url.path.startswith("/404"):
            raise LinkFailed(self.name, "the note was removed or is private")
        match = NOTE_PATH.search(page.url.path)
        if match is None:
            raise LinkFailed(self.name, "the link does not lead to a note")
        notes = dig(
            self.name, embedded_json(self.name, page, "window.__INITIAL_STATE__="), "note", "noteDetailMap"
        )
        note = (notes.get(match.group(1)) or {}).get("note") if isinstance(notes, dict) else None
        if not note:
            raise LinkFailed(self.name, "the note was removed or is private")
        return self._info(note, client)

    def _info(self, note: dict[str, Any], client: PlatformClient) -> VideoInfo:
        images = tuple(
            u for u in (img.get("urlDefault") or img.get("url") for img in note.get("imageList") or []) if u
        )
        video_url = None
        if note.get("type") == "video":
            video = dig(self.name, note, "video")
            key = (video.get("consumer") or {}).get("originVideoKey")
            if key:
                video_url = ORIGINAL_VIDEO.format(key=key)
            else:
                streams = ((video.get("media") or {}).get("stream") or {}).get("h264") or []
                video_url = dig(self.name, streams, 0, "masterUrl")
        return VideoInfo(
            platform=self.name,
            title=str(note.get("title") or note.get("desc") or ""),
            author=str(dig(self.name, note, "user", "nickname")),
            cover=next(iter(images), None),
            video_url=video_url,
            images=() if video_url else images,
            headers=client.headers(REFERER),
        )
