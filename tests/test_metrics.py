"""GET /metrics, read back with prometheus-client's own parser: after real orders, uploads and errors, and
summed over several API processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from tests.conftest import REDIS_URL, REPO, Account, add_account, create_order, wait_for_order
from tests.support.processes import free_port, wait_healthy
from yinzi.appkeys import DB
from yinzi.metrics import reason_kind

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (n, got), value in samples.items() if n == name and wanted <= got)


async def scrape(client: TestClient) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    return parse(await resp.text())


async def test_metrics_after_a_few_orders(
    client: TestClient, account: Account, media_url: Callable[[str], str]
) -> None:
    before = await scrape(client)  # the registry is the process's: compare differences
    db = client.app[DB]
    finished = [await create_order(client, account, media_url("/m/tone.wav")) for _ in range(2)]
    failed = await create_order(client, account, media_url("/m/notes.mp3"), "track-separation")
    for order_no in [*finished, failed]:
        await wait_for_order(db, order_no)
    await client.get("/api/open/v1/order/query?orderNo=x")  # 401
    session = await (
        await client.post(
            "/api/open/v1/uploads",
            json={"fileName": "a.wav", "mimeType": "audio/wav", "sizeBytes": 1000},
            headers=account.headers,
        )
    ).json()
    await client.put(URL(session["data"]["uploadUrl"]).path_qs, data=b"\0" * 1000)

    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("yinzi_orders_created_total", order_type="extract-text", priority="queue") == 2
    assert grew("yinzi_orders_created_total", order_type="track-separation") == 1
    assert grew("yinzi_orders_ended_total", order_type="extract-text", status="finish", reason="none") == 2
    assert (
        grew(
            "yinzi_orders_ended_total",
            order_type="track-separation",
            status="failed",
            reason="unsupported_media",
        )
        == 1
    )
    route = "/api/open/v1/order/create"
    assert grew("yinzi_http_requests_total", route=route, method="POST", status="200") == 3
    assert grew("yinzi_http_requests_total", route="/api/open/v1/order/query", status="401") == 1
    assert grew("yinzi_http_request_duration_seconds_count", route=route, status="200") == 3
    assert grew("yinzi_http_request_duration_seconds_bucket", route=route, status="200", le="+Inf") == 3
    # Route templates, never raw paths: order numbers and upload ids do not become label values.
    assert any(labels >= {("route", "/uploads/{uploadId}")} for _, labels in after)
    assert grew("yinzi_upload_bytes_total") == 1000
    # The copy engine stands in for a plugged-in engine: named by its class.
    assert grew("yinzi_engine_seconds_total", engine="CopyEngine") > 0
    assert grew("yinzi_engine_realtime_factor_count", engine="CopyEngine") == 2
    for priority in ("queue", "lightning"):
        for state in ("waiting", "running"):
            assert ("yinzi_queue_orders", frozenset({("priority", priority), ("state", state)})) in after
    assert total(after, "yinzi_queue_orders") == 0  # everything ended


async def test_queue_depth_counts_waiting_orders_by_priority(
    client: TestClient, media_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YINZI_TEST_ENGINE_SECONDS", "3")
    account = await add_account(client.app[DB])
    for priority in ("queue", "queue", "queue", "lightning"):
        resp = await client.post(
            "/api/open/v1/order/create",
            json={
                "orderType": "extract-text",
                "stuff": {"pathKey": media_url("/m/tone.wav")},
                "priority": priority,
            },
            headers=account.headers,
        )
        assert resp.status == 200
    samples = await scrape(client)
    assert total(samples, "yinzi_queue_orders") == 4
    assert total(samples, "yinzi_queue_orders", priority="lightning") == 1


def test_reason_kinds_are_few_and_fixed() -> None:
    assert reason_kind("unsupported media: no audio stream") == "unsupported_media"
    assert reason_kind("download failed: HTTP 404 from x.org") == "download_failed"
    assert (
        reason_kind("refused to fetch pathKey: 10.0.0.1 is not a public address (...)") == "refused_address"
    )
    assert reason_kind("processing took longer than the limit of 300 s") == "timeout"
    assert reason_kind("whisper model small is not installed in /m: run `yinzi models pull small`") == (
        "model_missing"
    )
    assert reason_kind("something nobody foresaw") == "other"


@pytest.mark.slow
def test_several_api_processes_add_up(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "YINZI_DATA_DIR": str(tmp_path / "data"),
        "YINZI_PORT": str(port),
        "YINZI_REDIS_URL": REDIS_URL,
        "YINZI_QUEUE_NAME": f"yinzi-test:{uuid.uuid4().hex}",
        "YINZI_SECRET_KEY": "metrics-test",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "yinzi", "serve", "--processes", "2"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        for _ in range(60):  # each on a new connection: the kernel spreads them over both processes
            try:
                urllib.request.urlopen(f"{base}/readyz-nothing", timeout=5)
            except urllib.error.HTTPError as exc:
                assert exc.code == 404
        deadline = time.monotonic() + 10
        while len(list((tmp_path / "data" / "metrics").glob("counter_*.db"))) < 2:
            assert time.monotonic() < deadline, "both processes should have counted requests"
            time.sleep(0.1)
        for _ in range(4):  # whichever process answers, it reports the sum of both
            text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
            assert total(parse(text), "yinzi_http_requests_total", route="unmatched", status="404") == 60
    finally:
        proc.terminate()
        proc.wait(15)
