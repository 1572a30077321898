"""short-video/analyze and share links as pathKey, against local servers standing in for the platforms."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import Account, add_account, create_order, wait_for_order
from tests.support.platforms import HOSTS, SEEN, generic_pages_app, platforms_app
from yinzi.appkeys import DB
from yinzi.links import link_in
from yinzi.settings import PLATFORMS, PlatformOptions, Settings


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject here is the link resolvers, not the database


ANALYZE = "/api/open/v1/short-video/analyze"
DOUYIN_TEXT = "7.43 复制打开抖音，看看【晚霞收集者的作品】今天的晚霞 #日落 https://v.douyin.com/AbCdEfG/ a@b.cn 02/11 :9pm"


@pytest.mark.parametrize(
    ("text", "link"),
    [
        (DOUYIN_TEXT, "https://v.douyin.com/AbCdEfG/"),
        (
            "【一分钟学会手冲 - 咖啡豆 | 小红书 - 你的生活指南】 😆 AbCd 😆 http://xhslink.com/a/Xv1，复制本条信息，打开【小红书】App查看精彩内容！",
            "http://xhslink.com/a/Xv1",
        ),
        (
            "https://v.kuaishou.com/Kx1 山里的早晨 该作品在快手被播放过1万次，点击链接，打开【快手】直接观看！",
            "https://v.kuaishou.com/Kx1",
        ),
        ("see https://example.org/a and https://t.cn/A6abcd.", "https://t.cn/A6abcd"),
        (
            "https://www.bilibili.com/video/BV1xx411c7mD?p=1)",
            "https://www.bilibili.com/video/BV1xx411c7mD?p=1",
        ),
    ],
)
def test_the_link_is_found_in_a_share_text(text: str, link: str) -> None:
    assert str(link_in(text)) == link


def test_no_link_in_text() -> None:
    assert link_in("复制打开抖音，看看 no link here") is None


@pytest.fixture
async def platforms(aiohttp_server: Callable[..., Any], media_dir: Path) -> TestServer:
    server: TestServer = await aiohttp_server(platforms_app(media_dir))
    return server


@pytest.fixture
def link_settings(settings: Settings, platforms: TestServer) -> Settings:
    base = str(platforms.make_url("")).rstrip("/")
    return settings.replace(
        host_map={host: base for host in HOSTS},
        platforms={name: PlatformOptions(timeout=5) for name in PLATFORMS},
    )


@pytest.fixture
async def links_client(make_client: Callable[[Settings], Any], link_settings: Settings) -> TestClient:
    client: TestClient = await make_client(link_settings)
    return client


async def analyze(client: TestClient, account: Account, link: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post(ANALYZE, json={"link": link}, headers=account.headers)
    return resp.status, await resp.json()


async def analyze_ok(client: TestClient, account: Account, link: str) -> dict[str, Any]:
    status, body = await analyze(client, account, link)
    assert status == 200, body
    assert body["code"] == 0 and body["msg"] == "success"
    data: dict[str, Any] = body["data"]
    return data


async def analyses_charged(client: TestClient, account: Account) -> list[dict[str, Any]]:
    return [row for row in await client.app[DB].ledger(account.user_id) if row["kind"] == "analyze"]


async def test_douyin_share_text_gives_the_video_without_watermark(links_client: TestClient) -> None:
    account = await add_account(links_client.app[DB], points=10)
    data = await analyze_ok(links_client, account, DOUYIN_TEXT)
    assert data == {
        "title": "今天的晚霞 #日落",
        "author": "晚霞收集者",
        "cover": "https://p3-sign.douyinpic.com/obj/cover-abc.jpeg",
        "videoUrl": "https://aweme.snssdk.com/aweme/v1/play/?video_id=v0300fg10000abc&ratio=720p",
        "musicUrl": "https://sf3-cdn.douyinstatic.com/music-abc.mp3",
        "images": [],
        "platform": "douyin",
        "balance": 9,
    }
    charged = await analyses_charged(links_client, account)
    assert [(row["delta"], row["balance_after"]) for row in charged] == [(-1, 9)]


async def test_douyin_image_note(links_client: TestClient, account: Account) -> None:
    data = await analyze_ok(links_client, account, "https://v.douyin.com/NoteLnk/")
    assert data["videoUrl"] is None
    assert data["images"] == [
        "https://p3-sign.douyinpic.com/obj/img-1.webp",
        "https://p3-sign.douyinpic.com/obj/img-2.webp",
    ]
    assert data["musicUrl"] == "https://sf3-cdn.douyinstatic.com/music-abc.mp3"


async def test_kuaishou_video_and_atlas(links_client: TestClient, account: Account) -> None:
    video = await analyze_ok(
        links_client, account, "https://v.kuaishou.com/Kx1 山里的早晨 点击链接，打开【快手】直接观看！"
    )
    assert (video["title"], video["author"], video["platform"]) == ("山里的早晨", "山野", "kuaishou")
    assert video["videoUrl"] == "https://v2.kwaicdn.com/upic/main.mp4"
    assert video["cover"] == "https://p2.a.yximgs.com/upic/cover.jpg"
    assert video["musicUrl"] == "https://a.kwaicdn.com/bgm.m4a"
    atlas = await analyze_ok(links_client, account, "https://v.kuaishou.com/Kimg")
    assert atlas["videoUrl"] is None
    assert atlas["images"] == [
        "https://p1.a.yximgs.com/ufile/atlas/1.jpg",
        "https://p1.a.yximgs.com/ufile/atlas/2.jpg",
    ]


async def test_xiaohongshu_video_and_image_notes(links_client: TestClient, account: Account) -> None:
    video = await analyze_ok(
        links_client, account, "http://xhslink.com/a/Xv1，复制本条信息，打开【小红书】App查看精彩内容！"
    )
    assert video["videoUrl"] == "https://sns-video-bd.xhscdn.com/pre_post/1040g2t0abc"
    assert (video["title"], video["author"]) == ("一分钟学会手冲", "咖啡豆")
    assert video["cover"] == "https://sns-webpic-qc.xhscdn.com/cover-1.jpg"
    images = await analyze_ok(links_client, account, "http://xhslink.com/a/Ximg")
    assert images["videoUrl"] is None and len(images["images"]) == 2


async def test_weibo_short_link_video_and_pictures(links_client: TestClient, account: Account) -> None:
    video = await analyze_ok(links_client, account, "https://t.cn/A6abcd")
    assert video["videoUrl"] == "https://f.video.weibocdn.com/720p.mp4"  # the best quality offered
    assert (video["title"], video["author"]) == ("花开的声音", "花园日记")
    pics = await analyze_ok(links_client, account, "https://m.weibo.cn/status/Nx1pics")
    assert pics["videoUrl"] is None
    assert pics["title"] == "春天来了 #春天#&花开"  # tags stripped, entities decoded
    assert pics["images"] == ["https://wx1.sinaimg.cn/large/1.jpg", "https://wx1.sinaimg.cn/large/2.jpg"]


@pytest.mark.parametrize(
    ("link", "status", "msg"),
    [
        ("https://v.douyin.com/Gone123/", 502, "douyin: the post was removed or is private (status_deleted)"),
        (
            "https://v.douyin.com/Changed/",
            502,
            "douyin: the page structure changed (window._ROUTER_DATA not found)",
        ),
        ("https://v.douyin.com/NoVideo/", 502, "douyin: the link does not lead to a video or note"),
        (
            "https://v.kuaishou.com/Klogin",
            502,
            "kuaishou: the post was removed, is private or needs cookies (请登录后查看)",
        ),
        ("http://xhslink.com/a/Xgone", 502, "xiaohongshu: the note was removed or is private"),
        (
            "https://m.weibo.cn/status/Nx1gone",
            502,
            "weibo: the post was removed or is private (该微博已被删除)",
        ),
        ("no link in this text", 400, "unsupported link: no http(s) link found in the text"),
        ("http://10.1.2.3/watch/1", 400, "ytdlp: refused to fetch: 10.1.2.3 is not a public address"),
    ],
)
async def test_failures_name_platform_and_cause_and_cost_nothing(
    links_client: TestClient, account: Account, link: str, status: int, msg: str
) -> None:
    got_status, body = await analyze(links_client, account, link)
    assert (got_status, body["code"], body["data"]) == (status, status, None)
    assert body["msg"].startswith(msg), body["msg"]
    assert await analyses_charged(links_client, account) == []
    assert await links_client.app[DB].balance(account.user_id) == 1000


async def test_a_platform_that_does_not_answer_times_out(
    make_client: Callable[[Settings], Any], link_settings: Settings
) -> None:
    slow = {**link_settings.platforms, "douyin": PlatformOptions(timeout=0.5)}
    client = await make_client(link_settings.replace(platforms=slow))
    account = await add_account(client.app[DB])
    status, body = await analyze(client, account, "https://v.douyin.com/Slow123/")
    assert (status, body["msg"]) == (504, "douyin: timed out after 0.5 s")
    # The other platforms are unaffected.
    assert (await analyze_ok(client, account, "https://v.kuaishou.com/Kx1"))["platform"] == "kuaishou"


async def test_a_platform_that_cannot_be_reached_is_504_not_502(
    make_client: Callable[[Settings], Any], link_settings: Settings
) -> None:
    # A name that never resolves (the .invalid top-level domain is reserved for that).
    unresolvable = {**link_settings.host_map, "v.douyin.com": "http://nowhere.invalid"}
    client = await make_client(link_settings.replace(host_map=unresolvable))
    account = await add_account(client.app[DB])
    status, body = await analyze(client, account, "https://v.douyin.com/Abc123/")
    assert status == 504, body
    assert body["msg"].startswith("douyin: could not reach nowhere.invalid: the name does not resolve (DNS")
    assert await client.app[DB].balance(account.user_id) == 1000


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ({}, "link is required"),
        ({"link": ""}, "link is required"),
        ({"link": 42}, "link must be a string"),
        ({"link": "https://v.douyin.com/AbCdEfG/", "extra": 1}, "unknown field: extra (allowed: link)"),
    ],
)
async def test_bad_requests(
    links_client: TestClient, account: Account, body: dict[str, Any], msg: str
) -> None:
    resp = await links_client.post(ANALYZE, json=body, headers=account.headers)
    assert (resp.status, await resp.json()) == (400, {"code": 400, "data": None, "msg": msg})


async def test_auth_is_required(links_client: TestClient) -> None:
    resp = await links_client.post(ANALYZE, json={"link": DOUYIN_TEXT})
    assert (resp.status, (await resp.json())["msg"]) == (401, "API Key is required")


async def test_concurrent_calls_charge_exactly_once_each_and_never_below_zero(
    links_client: TestClient,
) -> None:
    account = await add_account(links_client.app[DB], points=5)
    results = await asyncio.gather(*(analyze(links_client, account, DOUYIN_TEXT) for _ in range(12)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 5 + [402] * 7
    charged = await analyses_charged(links_client, account)
    assert len({row["ref"] for row in charged}) == 5  # one ledger row per successful call
    assert await links_client.app[DB].balance(account.user_id) == 0
    assert sorted(body["data"]["balance"] for status, body in results if status == 200) == [0, 1, 2, 3, 4]


async def test_yt_dlp_generic_extractor_finds_an_html5_video(
    links_client: TestClient,
    account: Account,
    aiohttp_server: Callable[..., Any],
    media_dir: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    pages: TestServer = await aiohttp_server(generic_pages_app(media_dir))
    data = await analyze_ok(links_client, account, f"看这个 {pages.make_url('/watch/harbour')} 很好看")
    assert data["videoUrl"] == str(pages.make_url("/media/clip.mp4"))
    assert (
        data["platform"] == "html5mediaembed"
    )  # the generic extractor hands plain <video> pages to this one
    status, body = await analyze(links_client, account, str(pages.make_url("/about")))
    assert (status, body["msg"]) == (
        400,
        "unsupported link: no supported platform and no video found on the page",
    )
    assert len(await analyses_charged(links_client, account)) == 1
    assert capfd.readouterr() == ("", "")  # yt-dlp's log is captured, never printed


async def test_a_share_text_as_path_key_is_resolved_then_downloaded(
    links_client: TestClient, account: Account
) -> None:
    order_no = await create_order(links_client, account, DOUYIN_TEXT, "extract-text")
    order = await wait_for_order(links_client.app[DB], order_no)
    assert order.stuff["pathKey"] == "https://v.douyin.com/AbCdEfG/"
    assert (order.status, order.reason) == ("finish", None)
    assert order.duration is not None and 1.5 < order.duration < 2.5  # clip.mp4, served as the Douyin stream


async def test_a_share_link_that_fails_to_resolve_fails_the_order(
    links_client: TestClient, account: Account
) -> None:
    order_no = await create_order(links_client, account, "https://v.douyin.com/Gone123/", "track-separation")
    order = await wait_for_order(links_client.app[DB], order_no)
    assert (order.status, order.pay_status) == ("failed", "free")
    assert (
        order.reason
        == "could not resolve the share link: douyin: the post was removed or is private (status_deleted)"
    )


async def test_an_image_post_without_music_has_no_audio(links_client: TestClient, account: Account) -> None:
    order_no = await create_order(links_client, account, "http://xhslink.com/a/Ximg")
    order = await wait_for_order(links_client.app[DB], order_no)
    assert order.status == "failed"
    assert order.reason == "xiaohongshu: the post is an image post without music; there is no audio"


def test_platform_settings_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "YINZI_DOUYIN_COOKIE": "sessionid=abc",
            "YINZI_WEIBO_TIMEOUT": "4.5",
            "YINZI_YTDLP_PROXY": "http://10.0.0.2:3128",
            "YINZI_HOST_MAP": "v.douyin.com=http://127.0.0.1:9000",
            "YINZI_ANALYZE_PRICE": "2",
        }
    )
    assert settings.platform("douyin") == PlatformOptions(cookie="sessionid=abc")
    assert settings.platform("weibo").timeout == 4.5
    assert settings.platform("ytdlp").proxy == "http://10.0.0.2:3128"
    assert settings.host_map == {"v.douyin.com": "http://127.0.0.1:9000"}
    assert settings.analyze_price == 2


async def test_each_platform_gets_its_own_cookie_and_user_agent(
    make_client: Callable[[Settings], Any], link_settings: Settings, platforms: TestServer
) -> None:
    options = {
        **link_settings.platforms,
        "douyin": PlatformOptions(cookie="sessionid=dy", user_agent="yinzi-test/douyin"),
    }
    client = await make_client(link_settings.replace(platforms=options))
    account = await add_account(client.app[DB])
    await analyze_ok(client, account, DOUYIN_TEXT)
    await analyze_ok(client, account, "https://v.kuaishou.com/Kx1")
    seen = platforms.app[SEEN]
    douyin = [h for h in seen if h["host"].endswith("douyin.com")]
    kuaishou = [h for h in seen if h["host"].endswith(("kuaishou.com", "chenzhongtech.com"))]
    assert douyin and all(
        h["Cookie"] == "sessionid=dy" and h["User-Agent"] == "yinzi-test/douyin" for h in douyin
    )
    assert kuaishou and all("Cookie" not in h and "iPhone" in h["User-Agent"] for h in kuaishou)
