"""Kuaishou: short links (v.kuaishou.com) lead to the mobile share page, v.m.chenzhongtech.com/fw/photo/<id>,
which embeds the post as ``window.INIT_STATE``: ``photo.mainMvUrls`` is the stream without the watermark and
``photo.ext_params.atlas`` lists the pictures of an image post. yt-dlp has no Kuaishou extractor.
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
)

PHOTO_PATH = re.compile(r"/(?:fw/photo|short-video|photo/\d+)/([A-Za-z0-9_-]+)")
SHARE_PAGE = "https://v.m.chenzhongtech.com/fw/photo/{id}"
REFERER = "https://v.m.chenzhongtech.com/"
STATE = "window.INIT_STATE = "


class Kuaishou:
    name = "kuaishou"
    hosts: tuple[str, ...] = ("kuaishou.com", "chenzhongtech.com", "gifshow.com")
    user_agent = MOBILE_UA

    async def resolve(self, url: URL, client: PlatformClient) -> VideoInfo:
        page = await client.get_ok(url)  # a short link redirects to the share page, query string and all
        if STATE not in page.text:  # a desktop page: the mobile share page has the data
            match = PHOTO_PATH.search(page.url.path)
            if match is None:
                raise LinkFailed(self.name, "the link does not lead to a video")
            page = await client.get_ok(SHARE_PAGE.format(id=match.group(1)))
        state = embedded_json(self.name, page, STATE)
        entries = [v for v in state.values() if isinstance(v, dict)] if isinstance(state, dict) else []
        photo = next((e["photo"] for e in entries if isinstance(e.get("photo"), dict)), None)
        if photo is None:
            refusal = next((e for e in entries if e.get("result") not in (None, 1)), None)
            if refusal is not None:
                message = refusal.get("error_msg") or f"result {refusal.get('result')}"
                raise LinkFailed(
                    self.name,
                    f"the post was removed, is private or needs cookies ({message}); {client.cookie_hint}",
                )
            raise PageChanged(self.name, "INIT_STATE.*.photo")
        return self._info(photo, client)

    def _info(self, photo: dict[str, Any], client: PlatformClient) -> VideoInfo:
        atlas = (photo.get("ext_params") or {}).get("atlas") or {}
        cdn = next(iter(atlas.get("cdn") or []), None)
        images = tuple(f"https://{cdn}{path}" for path in atlas.get("list") or []) if cdn else ()
        streams = photo.get("mainMvUrls") or []
        if not images and not streams:
            raise PageChanged(self.name, "photo.mainMvUrls")
        music = (photo.get("soundTrack") or photo.get("music") or {}).get("audioUrls") or []
        return VideoInfo(
            platform=self.name,
            title=str(photo.get("caption") or ""),
            author=str(dig(self.name, photo, "userName")),
            cover=_url(photo.get("coverUrls")) or next(iter(images), None),
            video_url=None if images else _url(streams),
            music_url=_url(music),
            images=images,
            headers=client.headers(REFERER),
        )


def _url(entries: Any) -> str | None:
    """Kuaishou lists each resource as [{"cdn": ..., "url": ...}, ...], one per CDN."""
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        url = entries[0].get("url")
        return url if isinstance(url, str) else None
    return None
