"""`yinzi doctor`, /healthz and /readyz on a machine with the tiny models and on one without any."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.support.models import DEMUCS_NAME, WHISPER_NAME
from tests.support.platforms import HOSTS, platforms_app
from yinzi.cli import main
from yinzi.doctor import QuickChecks, report, run_checks
from yinzi.errors import ServiceUnavailable
from yinzi.settings import ORDER_TYPES, Settings


@pytest.fixture
async def platforms(aiohttp_server: Callable[..., Any], media_dir: Path) -> TestServer:
    server: TestServer = await aiohttp_server(platforms_app(media_dir))
    return server


async def test_doctor_passes_with_models_tools_and_platforms(
    engine_settings: Settings, platforms: TestServer
) -> None:
    base = str(platforms.make_url("")).rstrip("/")
    settings = engine_settings.replace(host_map={host: base for host in (*HOSTS, "www.youtube.com")})
    checks = await run_checks(settings)
    failed = [check for check in checks if not check.ok]
    assert failed == []
    names = {check.name for check in checks}
    assert {"ffmpeg", "ffprobe", "engine demucs", "engine whisper", "database", "disk", "memory"} <= names
    assert {f"model {DEMUCS_NAME}", f"model {WHISPER_NAME}"} <= names
    assert {f"platform {p}" for p in ("douyin", "kuaishou", "xiaohongshu", "weibo", "ytdlp")} <= names
    assert next(c for c in checks if c.name == f"model {WHISPER_NAME}").detail.startswith("loads")
    lines: list[str] = []
    assert report(checks, settings, lines.append) == 0
    assert lines[-1] == "everything needed is in place"


async def test_doctor_names_each_missing_piece_and_its_fix(tmp_path: Path, settings: Settings) -> None:
    bare = settings.replace(
        engines={}, model_dir=tmp_path / "no-models", host_map={"www.douyin.com": "http://nowhere.invalid"}
    )
    checks = {check.name: check for check in await run_checks(bare)}
    demucs, whisper = checks["model htdemucs"], checks["model small"]
    assert not demucs.ok and demucs.fix == "yinzi models pull htdemucs"
    assert not whisper.ok and whisper.fix == "yinzi models pull small"
    douyin = checks["platform douyin"]
    assert not douyin.ok and "YINZI_DOUYIN_PROXY" in douyin.fix


def test_doctor_command_exits_non_zero_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YINZI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("YINZI_MODEL_DIR", str(tmp_path / "models"))
    assert main(["doctor", "--offline"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  model small" in out and "-> yinzi models pull small" in out
    assert "platform" not in out  # --offline
    assert f"data directory: {tmp_path / 'data'}" in out


async def test_doctor_reports_a_broken_model_file(engine_settings: Settings, tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "whisper").mkdir(parents=True)
    (models / "whisper" / "small.pt").write_bytes(b"not a checkpoint")
    checks = {
        c.name: c
        for c in await run_checks(
            engine_settings.replace(model_dir=models, whisper_model="small"), network=False
        )
    }
    assert not checks["model small"].ok and "does not load" in checks["model small"].detail


async def test_healthz_says_which_order_types_can_run(engine_client: TestClient) -> None:
    body = await (await engine_client.get("/healthz")).json()
    assert body["data"]["status"] == "ok"
    assert body["data"]["orderTypes"] == {t: {"ok": True, "reason": None} for t in ORDER_TYPES}


async def test_healthz_without_models_is_degraded(
    make_client: Callable[[Settings], Any], settings: Settings, tmp_path: Path
) -> None:
    client = await make_client(settings.replace(engines={}, model_dir=tmp_path / "empty"))
    resp = await client.get("/healthz")
    data = (await resp.json())["data"]
    assert resp.status == 200 and data["status"] == "degraded"
    text = data["orderTypes"]["extract-text"]
    assert text["ok"] is False and "yinzi models pull small" in text["reason"]
    assert data["orderTypes"]["track-separation"]["reason"].endswith("yinzi models pull htdemucs`")


async def test_healthz_of_an_api_host_does_not_count_the_workers_engines(
    make_client: Callable[[Settings], Any],
    settings: Settings,
    tmp_path: Path,
    redis_url: str,
    queue_name: str,
) -> None:
    """With the arq queue an API host has no engines or models of its own: it is healthy all the same."""
    api_host = settings.replace(
        engines={}, model_dir=tmp_path / "empty", redis_url=redis_url, queue_name=queue_name
    )
    data = (await (await (await make_client(api_host)).get("/healthz")).json())["data"]
    assert data["queue"] == "arq" and data["status"] == "ok"
    assert data["orderTypes"]["extract-text"]["ok"] is False  # still said, for whoever reads it


async def test_readyz(
    client: TestClient, make_client: Callable[[Settings], Any], arq_settings: Settings
) -> None:
    assert (await client.get("/readyz")).status == 200
    arq_client = await make_client(arq_settings)
    resp = await arq_client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["data"] == {"ready": True}


@pytest.mark.parametrize("backend", ["sqlite"])  # no database is involved
async def test_health_checks_are_shared_and_taken_again_when_stale(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many probes at once make one round of checks; once it is stale the next probe checks again and sees a
    store that has gone away."""

    class CountedStore:
        kind = "local"
        calls = 0
        broken = False

        async def check(self) -> str:
            self.calls += 1
            await asyncio.sleep(0.05)  # the checks are still running when the other probes arrive
            if self.broken:
                raise ServiceUnavailable("the disk went read-only")
            return "writable"

    store = CountedStore()
    checks = QuickChecks(settings, store)  # type: ignore[arg-type]
    answers = await asyncio.gather(*(checks.report() for _ in range(20)))
    assert store.calls == 1 and all(a["storage"]["ok"] for a in answers)
    store.broken = True
    assert (await checks.report())["storage"]["ok"]  # within QUICK_CHECK_EVERY_S: the answer just taken
    monkeypatch.setattr("yinzi.doctor.QUICK_CHECK_EVERY_S", 0.0)
    stale = await checks.report()
    assert store.calls == 2 and stale["storage"] == {
        "kind": "local",
        "ok": False,
        "detail": "the disk went read-only",
    }
    assert not stale["fine"]
