"""The web console in a real browser: Playwright drives Debian's Chromium against a running yinzi with the
tiny models, the local media host and the local short-video platform stand-in.

Set YINZI_SCREENSHOTS=docs to save screenshots of the main pages there (docs/console-*.png).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import Account, add_account
from tests.support.platforms import HOSTS, platforms_app
from tests.test_links import DOUYIN_TEXT
from yinzi.app import create_app
from yinzi.appkeys import DB, SETTINGS
from yinzi.console import operators
from yinzi.settings import Settings

pytest.importorskip("playwright")
from playwright.async_api import Browser, Page, Route, async_playwright, expect

CHROMIUM = "/usr/bin/chromium"
SHOTS = os.environ.get("YINZI_SCREENSHOTS")
pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install chromium"
    ),
    pytest.mark.timeout(180),
]


@pytest.fixture
def backend() -> str:
    # The subject here is the console in a browser; its API runs on both backends in test_console_api.py.
    return "sqlite"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield browser
        await browser.close()


@pytest.fixture
async def platforms(aiohttp_server: Callable[..., Any], media_dir: Path) -> TestServer:
    server: TestServer = await aiohttp_server(platforms_app(media_dir))
    return server


@pytest.fixture
async def service(
    aiohttp_server: Callable[..., Any], engine_settings: Settings, platforms: TestServer
) -> TestServer:
    base = str(platforms.make_url("")).rstrip("/")
    # Real tiny Demucs for stems; a fixed script for text (a random Whisper's output is random, even empty).
    settings = engine_settings.replace(
        host_map={host: base for host in HOSTS},
        engines={"extract-text": "tests.support.engines:ScriptEngine"},
    )
    server: TestServer = await aiohttp_server(create_app(settings))
    return server


def url(server: TestServer, path: str = "/") -> str:
    return str(server.make_url(path))


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)


async def sign_in(page: Page, server: TestServer, account: Account) -> None:
    await page.goto(url(server, "/#/login"))
    await page.fill("#key-input", account.key)
    await page.click("#sign-in")
    await expect(page.locator("#orders")).to_be_visible()


@pytest.fixture
def speech_file(tmp_path: Path) -> Path:
    """30 s of stereo 44.1 kHz WAV (5 MiB): two upload chunks, so the second one can be cut."""
    path = tmp_path / "talk.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:duration=30",
            "-ac",
            "2",
            "-ar",
            "44100",
            str(path),
        ],
        check=True,
    )
    return path


async def test_sign_in_upload_resume_transcript_and_seek(
    browser: Browser, service: TestServer, speech_file: Path
) -> None:
    account = await add_account(service.app[DB], "alice")
    context = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await sign_in(page, service, account)
    assert await page.evaluate("sessionStorage.getItem('yinzi.key')") == account.key
    assert await page.evaluate("localStorage.getItem('yinzi.key')") is None  # the session only

    # A local file through the resumable upload; the connection drops during the second part.
    puts: list[str] = []

    async def cut_second_put(route: Route) -> None:
        puts.append(route.request.headers.get("content-range", ""))
        if len(puts) == 2:
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await page.route("**/uploads/up_*", cut_second_put)
    await page.goto(url(service, "/#/new"))
    await page.select_option("#order-type", "extract-text")
    await page.set_input_files("#file", str(speech_file))
    await page.click("#create")
    await expect(page.locator("#resume")).to_be_visible(timeout=30_000)
    size = speech_file.stat().st_size
    kept = str(4 * 1024**2 * 100 // size)  # the first part arrived: the bar stays there
    await expect(page.locator("#upload-progress")).to_have_attribute("value", kept, timeout=5_000)
    await page.click("#resume")
    await page.wait_for_url("**/#/order/*", timeout=30_000)
    assert puts[0] == f"bytes 0-{4 * 1024**2 - 1}/{size}"
    assert puts[-1] == f"bytes {4 * 1024**2}-{size - 1}/{size}"  # resumed where the bytes stopped

    # The order finishes on its own page (live status), the transcript beside the uploaded audio.
    lines = page.locator("#transcript li")
    await expect(lines.first).to_be_visible(timeout=60_000)
    await expect(page.locator("#order-head [data-status]")).to_have_attribute("data-status", "finish")
    await shot(page, "transcript")
    target = lines.nth(min(1, await lines.count() - 1))
    start = float(await target.get_attribute("data-start") or 0)
    await target.click()
    player = page.locator("#source-player")
    await page.wait_for_function(
        "([start]) => Math.abs(document.querySelector('#source-player').currentTime - start) < 1.5",
        arg=[start],
    )
    await expect(target).to_have_class("current", timeout=10_000)
    await expect(lines).to_have_count(3)
    colours = [await line.locator(".spk").evaluate("el => el.style.background") for line in await lines.all()]
    assert colours[0] == colours[2] != colours[1]  # one colour per speaker
    assert await player.evaluate("el => el.src.includes('/console/source/')")

    # The list shows it finished, without a reload.
    await page.click("nav a[href='#/orders']")
    await expect(page.locator("#orders tr[data-status='finish']")).to_have_count(1)
    await shot(page, "orders")
    await context.close()


async def test_separation_stems_play_and_seek_on_the_waveform(
    browser: Browser, service: TestServer, media_url: Callable[[str], str]
) -> None:
    account = await add_account(service.app[DB], "bob")
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await sign_in(page, service, account)
    await expect(page.locator("nav a[href='#/orders']")).to_have_text("订单")  # the browser's language

    await page.goto(url(service, "/#/new"))
    await page.select_option("#order-type", "track-separation")
    await page.fill("#path-key", media_url("/m/tone.wav"))
    await page.click("#create")
    await page.wait_for_url("**/#/order/*")
    wave = page.locator("canvas[data-business='vocals']")
    await expect(wave).to_have_attribute("data-ready", "1", timeout=60_000)
    await expect(page.locator("canvas[data-business='accompaniment']")).to_have_attribute("data-ready", "1")
    vocals = page.locator("#player-vocals")
    await page.wait_for_function("document.querySelector('#player-vocals').duration > 0")
    await vocals.evaluate("el => el.play()")
    box = await wave.bounding_box()
    assert box is not None
    await wave.click(position={"x": box["width"] * 0.5, "y": box["height"] / 2})
    duration, now = await vocals.evaluate("el => [el.duration, el.currentTime]")
    assert abs(now - duration / 2) < 0.3, (now, duration)
    assert float(await wave.get_attribute("data-played") or 0) >= 0.45
    assert await page.locator("#downloads a").count() == 2
    await shot(page, "stems")

    # The switch overrides the browser's language, and is remembered.
    await page.select_option("#lang", "en")
    await expect(page.locator("nav a[href='#/orders']")).to_have_text("Orders")
    await page.reload()
    await expect(page.locator("nav a[href='#/orders']")).to_have_text("Orders")

    # Short video: a pasted share text, resolved by the local platform stand-in.
    await page.goto(url(service, "/#/analyze"))
    await page.fill("#share-text", DOUYIN_TEXT)
    await page.click("#analyze")
    await expect(page.locator("#analyze-title")).to_have_text("今天的晚霞 #日落")
    await expect(page.locator("#analyze-author")).to_have_text("晚霞收集者")
    await shot(page, "analyze")

    await page.goto(url(service, "/#/account"))
    await expect(page.locator("#balance")).to_have_text("989")  # 1000 - 10 (a minute) - 1 (analyze)
    await expect(page.locator("#ledger tbody tr")).to_have_count(3)
    await shot(page, "account")
    await context.close()


async def test_operator_grants_points(browser: Browser, service: TestServer, tmp_path: Path) -> None:
    await add_account(service.app[DB], "carol", points=50)
    token = operators.create(service.app[SETTINGS].data_dir, "ops")
    context = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    await page.goto(url(service, "/#/login"))
    await page.fill("#op-input", token)
    await page.click("#op-sign-in")
    await expect(page.locator("#users")).to_be_visible()
    await page.select_option("#grant-user", "carol")
    await page.fill("#grant-points", "25")
    await page.click("#grant")
    await expect(page.locator("[data-balance='carol']")).to_have_text("75")
    await page.fill("#grant-points", "-80")
    await page.click("#grant")
    await expect(page.locator("#toast")).to_contain_text("has only 75 points")
    await expect(page.locator("#engines")).to_contain_text("can run")
    await shot(page, "operator")
    await context.close()


async def test_docs_page_renders_the_api(browser: Browser, service: TestServer) -> None:
    page = await browser.new_page()
    await page.goto(url(service, "/docs"))
    await expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
    assert await page.locator(".opblock").count() >= 8
    await shot(page, "docs")
