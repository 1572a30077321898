"""Bad and unusual media, made by the tests: what is not audio fails clearly and costs nothing; what is
audio, however odd, is processed by the real engines (tiny models) with its rate and channels kept. No order
leaves files behind in the work folder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import add_account, create_order, wait_for_order
from tests.test_engines import finished_files, media_info
from yinzi.appkeys import DB, SETTINGS
from yinzi.settings import Settings


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject here is the engines on odd media, not the database


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/m/empty.mp3", "unsupported media: the file is empty"),
        ("/m/notes.mp3", "unsupported media"),
        ("/m/truncated.mp4", "unsupported media"),
        ("/m/silent.mp4", "unsupported media: no audio stream"),
        ("/m/long.mp3", "the media is 0:01:05 long; the longest this service takes is 0:01:00"),
        ("/bomb", "file too large: the limit is 1 MiB"),
        ("/forever", "file too large: the limit is 1 MiB"),
    ],
)
async def test_what_is_not_usable_audio_fails_clearly_and_costs_nothing(
    make_client: Callable[[Settings], Any],
    settings: Settings,
    media_url: Callable[[str], str],
    path: str,
    reason: str,
) -> None:
    client = await make_client(settings.replace(max_duration=60, max_download_bytes=1024 * 1024))
    db = client.app[DB]
    account = await add_account(db)
    order = await wait_for_order(db, await create_order(client, account, media_url(path), "track-separation"))
    assert order.status == "failed" and (order.reason or "").startswith(reason), order.reason
    resp = await client.get(
        "/api/open/v1/order/query", params={"orderNo": order.order_no}, headers=account.headers
    )
    data = (await resp.json())["data"]
    assert (data["cost"], data["payStatus"], data["balance"], data["stuffs"]) == (0, "free", 1000, [])
    assert list(client.app[SETTINGS].work_dir.iterdir()) == []


async def test_a_stream_that_never_ends_meets_the_time_limit(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(settings.replace(fetch_total_timeout=1.0))
    db = client.app[DB]
    account = await add_account(db)
    order = await wait_for_order(db, await create_order(client, account, media_url("/forever")))
    assert (order.status, order.reason) == ("failed", "download timed out after 1 s")
    assert list(client.app[SETTINGS].work_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("path", "rate", "channels"),
    [
        ("/m/blip.wav", 44100, 1),
        ("/m/phone.wav", 8000, 1),
        ("/m/surround.flac", 96000, 6),
        ("/m/truncated.flac", 48000, 2),
    ],
)
async def test_odd_but_real_audio_is_separated_with_its_format_kept(
    engine_client: TestClient, media_url: Callable[[str], str], path: str, rate: int, channels: int
) -> None:
    account = await add_account(engine_client.app[DB])
    files = await finished_files(
        engine_client, account, media_url(path), "track-separation", {"format": "wav"}
    )
    for business in ("vocals", "accompaniment"):
        info = media_info(files[business])
        assert (info["rate"], info["channels"]) == (rate, channels)
        assert info["duration"] > 0
    assert list(engine_client.app[SETTINGS].work_dir.iterdir()) == []


@pytest.mark.parametrize("path", ["/m/blip.wav", "/m/phone.wav", "/m/surround.flac"])
async def test_odd_but_real_audio_is_transcribed(
    engine_client: TestClient, media_url: Callable[[str], str], path: str
) -> None:
    account = await add_account(engine_client.app[DB])
    files = await finished_files(
        engine_client,
        account,
        media_url(path),
        "extract-text",
        {"language": "en", "vad": False, "beamSize": 1},
    )
    assert set(files) == {"caption", "text", "json"}
