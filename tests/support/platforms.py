"""One local aiohttp server standing in for the short-video platforms, told apart by the Host header.

Tests reach it through ``Settings.host_map`` (each platform host -> this server), so the resolvers run
unchanged: same URLs, same redirects, same parsing. The shapes below follow what the platforms' public share
pages and mobile endpoints serve to a phone browser without a login; only the fields yinzi reads are kept,
with a few neighbours so the parsers are seen to pick the right ones.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

# Hosts the tests map onto this server.
HOSTS = (
    "v.douyin.com",
    "www.douyin.com",
    "www.iesdouyin.com",
    "aweme.snssdk.com",
    "v.kuaishou.com",
    "v.m.chenzhongtech.com",
    "xhslink.com",
    "www.xiaohongshu.com",
    "sns-video-bd.xhscdn.com",
    "m.weibo.cn",
    "weibo.com",
    "t.cn",
)

# Headers of every request the stand-in received, for tests of what resolvers send.
SEEN = web.AppKey("seen", list[dict[str, str]])

DOUYIN_VIDEO = "7300000000000000001"
DOUYIN_NOTE = "7300000000000000002"
DOUYIN_REMOVED = "7300000000000000003"
DOUYIN_CHANGED = "7300000000000000004"


def _douyin_item(aweme_id: str, images: bool) -> dict[str, Any]:
    # www.iesdouyin.com/share/video/<id>/: loaderData["video_(id)/page"].videoInfoRes.item_list[0] carries desc,
    # author.nickname, video.play_addr / cover (url_list), music.play_url and, for picture notes, images[].
    return {
        "aweme_id": aweme_id,
        "desc": "今天的晚霞 #日落",
        "author": {"nickname": "晚霞收集者", "unique_id": "sunset01"},
        "video": {
            "play_addr": {
                "uri": "v0300fg10000abc",
                "url_list": ["https://aweme.snssdk.com/aweme/v1/playwm/?video_id=v0300fg10000abc&ratio=720p"],
            },
            "cover": {"url_list": ["https://p3-sign.douyinpic.com/obj/cover-abc.jpeg"]},
            "duration": 2000,
        },
        "music": {
            "title": "原声",
            "play_url": {"url_list": ["https://sf3-cdn.douyinstatic.com/music-abc.mp3"]},
        },
        "images": [
            {"url_list": ["https://p3-sign.douyinpic.com/obj/img-1.webp"]},
            {"url_list": ["https://p3-sign.douyinpic.com/obj/img-2.webp"]},
        ]
        if images
        else None,
    }


def _douyin_page(kind: str, aweme_id: str) -> str:
    if aweme_id == DOUYIN_CHANGED:
        return "<html><body><div id='root'></div><script>window.__NEW_STATE__ = {}</script></body></html>"
    if aweme_id == DOUYIN_REMOVED:
        res = {"item_list": [], "filter_list": [{"aweme_id": aweme_id, "filter_reason": "status_deleted"}]}
    else:
        res = {"item_list": [_douyin_item(aweme_id, images=kind == "note")], "filter_list": []}
    data = {"loaderData": {"_layout": None, f"{kind}_(id)/page": {"videoInfoRes": res}}}
    return f"<html><head></head><body><script>window._ROUTER_DATA = {json.dumps(data)}</script></body></html>"


def _kuaishou_page(photo_id: str) -> str:
    # v.m.chenzhongtech.com/fw/photo/<id>: window.INIT_STATE maps hashed keys to API answers; the one for the
    # share page has result 1 and photo{caption, userName, coverUrls, mainMvUrls, ext_params.atlas, soundTrack}.
    if photo_id.startswith("3xlogin"):
        state: dict[str, Any] = {"tusjoh.0sftu": {"result": 2, "error_msg": "请登录后查看"}}
    else:
        photo: dict[str, Any] = {
            "photoId": photo_id,
            "caption": "山里的早晨",
            "userName": "山野",
            "coverUrls": [{"cdn": "p2.a.yximgs.com", "url": "https://p2.a.yximgs.com/upic/cover.jpg"}],
            "mainMvUrls": [{"cdn": "v2.kwaicdn.com", "url": "https://v2.kwaicdn.com/upic/main.mp4"}],
            "soundTrack": {"audioUrls": [{"cdn": "a.kwaicdn.com", "url": "https://a.kwaicdn.com/bgm.m4a"}]},
        }
        if photo_id.startswith("3ximages"):
            photo["mainMvUrls"] = []
            photo["ext_params"] = {
                "atlas": {"cdn": ["p1.a.yximgs.com"], "list": ["/ufile/atlas/1.jpg", "/ufile/atlas/2.jpg"]}
            }
        state = {"tusjoh.0sftu": {"result": 1, "photo": photo}, "tusjoh.1fdt": {"result": 1}}
    return f"<html><body><script>window.INIT_STATE = {json.dumps(state, ensure_ascii=False)}</script></body></html>"


XHS_VIDEO = "64f0c0c0000000001f00aaaa"
XHS_IMAGES = "64f0c0c0000000001f00bbbb"


def _xhs_page(note_id: str) -> str:
    # www.xiaohongshu.com/discovery/item/<id>: window.__INITIAL_STATE__ (JavaScript, with bare `undefined`)
    # holds note.noteDetailMap[<id>].note{type, title, desc, user.nickname, imageList[].urlDefault,
    # video.consumer.originVideoKey, video.media.stream.h264[].masterUrl}.
    note: dict[str, Any] = {
        "noteId": note_id,
        "title": "一分钟学会手冲",
        "desc": "步骤在视频里",
        "user": {"nickname": "咖啡豆", "userId": "5f00"},
        "imageList": [{"urlDefault": "https://sns-webpic-qc.xhscdn.com/cover-1.jpg", "width": 1080}],
    }
    if note_id == XHS_VIDEO:
        note["type"] = "video"
        note["video"] = {
            "consumer": {"originVideoKey": "pre_post/1040g2t0abc"},
            "media": {"stream": {"h264": [{"masterUrl": "https://sns-video-qc.xhscdn.com/stream/h264.mp4"}]}},
        }
    else:
        note["type"] = "normal"
        note["imageList"].append({"urlDefault": "https://sns-webpic-qc.xhscdn.com/cover-2.jpg"})
    state = json.dumps(
        {"note": {"noteDetailMap": {note_id: {"note": note, "comments": {}}}}}, ensure_ascii=False
    )
    state = state.replace('"comments": {}', '"comments": undefined')
    return f"<html><body><script>window.__INITIAL_STATE__={state}</script></body></html>"


def _weibo_status(status_id: str) -> dict[str, Any]:
    # m.weibo.cn/statuses/show?id=<id>: {"ok": 1, "data": {text (HTML), user.screen_name, pics[].large.url,
    # page_info{type: "video", title, page_pic.url, urls{mp4_720p_mp4, ...}, media_info}}}; ok 0 and msg else.
    if status_id == "Nx1gone":
        return {"ok": 0, "msg": "该微博已被删除"}
    post: dict[str, Any] = {
        "id": "5000000000000001",
        "bid": status_id,
        "text": '春天来了 <a href="/search?q=spring">#春天#</a>&amp;花开',
        "user": {"id": 1234567890, "screen_name": "花园日记"},
    }
    if status_id == "Nx1video":
        post["page_info"] = {
            "type": "video",
            "title": "花开的声音",
            "page_pic": {"url": "https://wx1.sinaimg.cn/cover.jpg"},
            "urls": {
                "mp4_ld_mp4": "https://f.video.weibocdn.com/ld.mp4",
                "mp4_720p_mp4": "https://f.video.weibocdn.com/720p.mp4",
            },
            "media_info": {"stream_url": "https://f.video.weibocdn.com/stream.mp4"},
        }
    else:
        post["pics"] = [
            {"large": {"url": "https://wx1.sinaimg.cn/large/1.jpg"}},
            {"large": {"url": "https://wx1.sinaimg.cn/large/2.jpg"}},
        ]
    return {"ok": 1, "data": post}


def platforms_app(media_dir: Path) -> web.Application:
    """``media_dir``'s clip.mp4 stands in for every video the platforms' CDNs would serve."""
    redirects = {
        (
            "v.douyin.com",
            "/AbCdEfG/",
        ): f"https://www.iesdouyin.com/share/video/{DOUYIN_VIDEO}/?region=CN&mid=1",
        ("v.douyin.com", "/NoteLnk/"): f"https://www.iesdouyin.com/share/note/{DOUYIN_NOTE}/",
        ("v.douyin.com", "/Gone123/"): f"https://www.iesdouyin.com/share/video/{DOUYIN_REMOVED}/",
        ("v.douyin.com", "/Changed/"): f"https://www.iesdouyin.com/share/video/{DOUYIN_CHANGED}/",
        ("v.douyin.com", "/NoVideo/"): "https://www.douyin.com/user/self",
        (
            "v.kuaishou.com",
            "/Kx1",
        ): "https://v.m.chenzhongtech.com/fw/photo/3xvideo000000001?shareId=1&shareToken=t",
        ("v.kuaishou.com", "/Kimg"): "https://v.m.chenzhongtech.com/fw/photo/3ximages00000001?shareId=2",
        ("v.kuaishou.com", "/Klogin"): "https://v.m.chenzhongtech.com/fw/photo/3xlogin000000001",
        ("xhslink.com", "/a/Xv1"): f"https://www.xiaohongshu.com/discovery/item/{XHS_VIDEO}?xsec_token=AB1",
        ("xhslink.com", "/a/Ximg"): f"https://www.xiaohongshu.com/discovery/item/{XHS_IMAGES}?xsec_token=AB2",
        ("xhslink.com", "/a/Xgone"): "https://www.xiaohongshu.com/404?source=note",
        ("t.cn", "/A6abcd"): "https://weibo.com/1234567890/Nx1video",
    }

    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        host = request.host.split(":")[0]
        path = request.path
        seen.append({"host": host, **request.headers})
        if (host, path) in redirects:
            raise web.HTTPFound(redirects[(host, path)])
        if host == "v.douyin.com" and path == "/Slow123/":
            await asyncio.sleep(30)
        if host == "www.iesdouyin.com" and path.startswith("/share/"):
            _, _, kind, aweme_id, _ = path.split("/")
            return web.Response(text=_douyin_page(kind, aweme_id), content_type="text/html")
        if host == "www.douyin.com" and path == "/user/self":
            return web.Response(text="<html>a profile page</html>", content_type="text/html")
        if host == "aweme.snssdk.com" and path == "/aweme/v1/play/":
            return web.FileResponse(media_dir / "clip.mp4")
        if host == "v.m.chenzhongtech.com" and path.startswith("/fw/photo/"):
            return web.Response(text=_kuaishou_page(path.rsplit("/", 1)[1]), content_type="text/html")
        if host == "www.xiaohongshu.com" and path.startswith("/discovery/item/"):
            return web.Response(text=_xhs_page(path.rsplit("/", 1)[1]), content_type="text/html")
        if host == "www.xiaohongshu.com" and path == "/404":
            return web.Response(text="<html>404</html>", content_type="text/html")
        if host == "m.weibo.cn" and path == "/statuses/show":
            return web.json_response(_weibo_status(request.query["id"]))
        raise web.HTTPNotFound()

    app = web.Application()
    app[SEEN] = seen
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def generic_pages_app(media_dir: Path) -> web.Application:
    """Plain web pages for yt-dlp's generic extractor: one with an HTML5 <video>, one with none."""

    async def video_page(request: web.Request) -> web.Response:
        src = request.url.with_path("/media/clip.mp4").with_query(None)
        return web.Response(
            text=(
                "<html><head><title>A clip</title>"
                f'<meta property="og:title" content="Harbour at dusk"></head>'
                f'<body><video controls><source src="{src}" type="video/mp4"></video></body></html>'
            ),
            content_type="text/html",
        )

    async def plain_page(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><head><title>Words</title></head><body>no media</body></html>",
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_get("/watch/harbour", video_page)
    app.router.add_get("/about", plain_page)
    app.router.add_static("/media", media_dir)
    return app
