"""Orders end to end in the embedded queue: fetch, probe, engine process, results, charging, signed URLs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Account, add_account, create_order, wait_for_order
from yinzi.appkeys import DB, SETTINGS, SIGNER
from yinzi.pricing import order_cost
from yinzi.settings import DEFAULT_PRICES, Settings

QUERY = "/api/open/v1/order/query"


async def query(client: TestClient, account: Account, order_no: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get(QUERY, params={"orderNo": order_no}, headers=account.headers)
    return resp.status, await resp.json()


async def test_finished_order_is_charged_once_and_serves_signed_files(
    client: TestClient, account: Account, media_url: Callable[[str], str]
) -> None:
    db = client.app[DB]
    order_no = await create_order(client, account, media_url("/m/tone.wav"), "track-separation")
    order = await wait_for_order(db, order_no)
    assert order.status == "finish", order.reason
    assert order.pay_status == "waiting" and await db.balance(account.user_id) == 1000

    status, body = await query(client, account, order_no)
    data = body["data"]
    assert status == 200 and data["status"] == "finish" and data["payStatus"] == "paid"
    assert data["cost"] == 10 and data["balance"] == 990 and data["progress"] == 100
    assert data["reason"] is None
    assert [(s["name"], s["business"]) for s in data["stuffs"]] == [
        ("audio.wav", "audio"),
        ("engine.json", "info"),
    ]

    resp = await client.get(data["stuffs"][0]["url"].removeprefix(str(client.make_url(""))))
    assert resp.status == 200
    assert (await resp.read())[:4] == b"RIFF"

    await asyncio.sleep(1.01)  # expiry has one-second resolution: the next URLs differ
    _, again = await query(client, account, order_no)
    assert again["data"]["balance"] == 990 and again["data"]["cost"] == 10
    assert again["data"]["stuffs"][0]["url"] != data["stuffs"][0]["url"]
    ledger = await db.ledger(account.user_id)
    assert [(row["delta"], row["kind"], row["ref"]) for row in ledger] == [
        (1000, "grant", None),
        (-10, "order", order_no),
    ]


async def test_cost_is_per_started_minute(
    client: TestClient, account: Account, media_url: Callable[[str], str]
) -> None:
    order_no = await create_order(client, account, media_url("/m/long.mp3"), "extract-text")
    order = await wait_for_order(client.app[DB], order_no)
    assert order.status == "finish" and order.duration == pytest.approx(65, abs=0.2)
    _, body = await query(client, account, order_no)
    assert body["data"]["cost"] == 10  # 65 s is two started minutes at 5 points
    settings = Settings(prices={**DEFAULT_PRICES, "extract-text": 5}, lightning_multiplier=1.5)
    assert [order_cost(settings, "extract-text", d) for d in (0.1, 60, 60.01, 125)] == [5, 5, 10, 15]
    assert order_cost(settings, "extract-text", 125, "lightning") == 23  # 22.5, rounded up


async def test_signed_urls_reject_tampering_and_expiry(
    client: TestClient, account: Account, media_url: Callable[[str], str]
) -> None:
    order_no = await create_order(client, account, media_url("/m/tone.wav"))
    await wait_for_order(client.app[DB], order_no)
    _, body = await query(client, account, order_no)
    path = body["data"]["stuffs"][0]["url"].removeprefix(str(client.make_url("")))
    assert (await client.get(path)).status == 200

    forged = path.replace("audio.wav", "engine.json")
    later = path.replace(
        f"expires={int(path.split('expires=')[1][:10])}", f"expires={int(time.time()) + 99999}"
    )
    for bad in (forged, later, path[:-1] + ("0" if path[-1] != "0" else "1"), path.split("?")[0]):
        resp = await client.get(bad)
        assert resp.status == 403, bad
        assert (await resp.json())["code"] == 403

    signer = client.app[SIGNER]
    expired = signer.path(order_no, "audio.wav", now=time.time() - 3601)
    resp = await client.get(expired)
    assert resp.status == 403 and "expired" in (await resp.json())["msg"]
    # a validly signed name the order does not list is still not served
    resp = await client.get(signer.path(order_no, "..%2Fyinzi.db"))
    assert resp.status in (403, 404)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/m/notes.mp3", "unsupported media"),
        ("/m/empty.mp3", "unsupported media: the file is empty"),
        ("/m/silent.mp4", "unsupported media: no audio stream"),
        ("/m/missing.wav", "download failed: HTTP 404"),
    ],
)
async def test_bad_media_fails_with_reason_and_costs_nothing(
    client: TestClient, account: Account, media_url: Callable[[str], str], path: str, reason: str
) -> None:
    db = client.app[DB]
    order_no = await create_order(client, account, media_url(path))
    order = await wait_for_order(db, order_no)
    assert order.status == "failed" and reason in (order.reason or ""), order.reason
    status, body = await query(client, account, order_no)
    assert status == 200
    data = body["data"]
    assert data["status"] == "failed" and data["cost"] == 0 and data["payStatus"] == "free"
    assert data["stuffs"] == [] and data["balance"] == 1000 and data["progress"] == 100
    assert str(client.app[SETTINGS].data_dir) not in data["reason"]  # no server paths in reasons
    assert not (client.app[SETTINGS].work_dir / order_no).exists()


async def test_missing_engine_fails_clearly(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(
        settings.replace(engines={"extract-text": "yinzi_engines_elsewhere.missing:Engine"})
    )
    account = await add_account(client.app[DB])
    order_no = await create_order(client, account, media_url("/m/tone.wav"))
    order = await wait_for_order(client.app[DB], order_no)
    assert order.status == "failed"
    assert (order.reason or "").startswith("engine not installed")
    assert order.progress == 0  # refused before downloading anything


async def test_short_balance_at_finish_withholds_results_until_top_up(
    client: TestClient, media_url: Callable[[str], str]
) -> None:
    db = client.app[DB]
    account = await add_account(db, points=10)
    order_no = await create_order(client, account, media_url("/m/long.mp3"), "track-separation")  # costs 20
    await wait_for_order(db, order_no)
    status, body = await query(client, account, order_no)
    assert status == 402 and body == {"code": 402, "data": None, "msg": "ErrorCode.USER_BLANCE_NOT_ENOUGH"}
    order = await db.order(order_no)
    assert order is not None and order.status == "finish" and order.pay_status == "waiting"
    assert await db.balance(account.user_id) == 10

    await db.grant_points(account.user_id, 15, "top-up")
    status, body = await query(client, account, order_no)
    assert status == 200 and body["data"]["payStatus"] == "paid"
    assert body["data"]["balance"] == 5 and len(body["data"]["stuffs"]) == 2


async def test_progress_moves_forward_and_reaches_100_only_at_finish(
    client: TestClient, account: Account, media_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YINZI_TEST_ENGINE_SECONDS", "2")
    order_no = await create_order(client, account, media_url("/m/tone.wav"))
    seen: list[tuple[str, int]] = []
    while not seen or seen[-1][0] != "finish":
        _, body = await query(client, account, order_no)
        seen.append((body["data"]["status"], body["data"]["progress"]))
        await asyncio.sleep(0.05)
    progress = [p for _, p in seen]
    assert progress == sorted(progress)
    assert all(p < 100 for s, p in seen if s != "finish") and seen[-1] == ("finish", 100)
    assert len({p for s, p in seen if s == "processing"}) >= 3  # real steps, not a jump
    statuses = [s for s, _ in seen]
    assert statuses.index("processing") < statuses.index("finish")


async def test_engine_stays_warm_across_orders(
    client: TestClient, account: Account, media_url: Callable[[str], str]
) -> None:
    db = client.app[DB]
    infos = []
    for _ in range(3):
        order_no = await create_order(client, account, media_url("/m/tone.wav"))
        assert (await wait_for_order(db, order_no)).status == "finish"
        path = client.app[SETTINGS].results_dir / order_no / "engine.json"
        infos.append(json.loads(path.read_text()))
    assert len({info["pid"] for info in infos}) == 1
    assert [info["runs"] for info in infos] == [1, 2, 3]


async def test_order_past_its_time_limit_times_out_and_frees_the_engine(
    make_client: Callable[[Settings], Any],
    settings: Settings,
    media_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YINZI_TEST_ENGINE_SECONDS", "30")
    client = await make_client(settings.replace(engine_timeout_base=1.0, engine_timeout_factor=0.0))
    db = client.app[DB]
    account = await add_account(db)
    order_no = await create_order(client, account, media_url("/m/tone.wav"))
    order = await wait_for_order(db, order_no)
    assert order.status == "timeout" and "longer than the limit" in (order.reason or "")
    assert order.pay_status == "free" and order.cost == 0

    monkeypatch.setenv("YINZI_TEST_ENGINE_SECONDS", "0")  # a fresh engine process picks this up
    order_no = await create_order(client, account, media_url("/m/tone.wav"))
    assert (await wait_for_order(db, order_no)).status == "finish"
