"""The real Demucs and Whisper code paths, on tiny random models saved in the libraries' own formats.

The outputs' content means nothing; their structure is what is checked: files, names, formats, durations,
sample rates, channels, SRT syntax, timestamp order, progress.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Account, S3Server, add_account, create_order, wait_for_order, with_storage
from tests.support.hosts import another_host, outside_scratch, scratch_files
from tests.support.models import DEMUCS_NAME, WHISPER_NAME, save_tiny_whisper
from workers.engines import EngineTask, speech
from workers.engines.models import whisper_checkpoint
from workers.engines.separation import SeparationEngine
from workers.engines.subtitles import Caption, to_srt
from workers.engines.transcription import Timeline, TranscriptionEngine, in_script
from workers.probe import probe
from yinzi.appkeys import DB, SETTINGS
from yinzi.settings import Settings


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject here is the engines, not the database


QUERY = "/api/open/v1/order/query"


def media_info(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    info = json.loads(out)
    stream = info["streams"][0]
    return {
        "codec": stream["codec_name"],
        "rate": int(stream["sample_rate"]),
        "channels": stream["channels"],
        "duration": float(info["format"]["duration"]),
    }


async def finished_files(
    client: TestClient, account: Account, path_key: str, order_type: str, stuff: dict[str, Any] | None = None
) -> dict[str, Path]:
    body = {"orderType": order_type, "stuff": {"pathKey": path_key, **(stuff or {})}}
    resp = await client.post("/api/open/v1/order/create", json=body, headers=account.headers)
    assert resp.status == 200, await resp.text()
    order_no = (await resp.json())["data"]["orderNo"]
    order = await wait_for_order(client.app[DB], order_no)
    assert order.status == "finish", order.reason
    resp = await client.get(QUERY, params={"orderNo": order_no}, headers=account.headers)
    stuffs = (await resp.json())["data"]["stuffs"]
    folder = client.app[SETTINGS].results_dir / order_no
    return {s["business"]: folder / s["name"] for s in stuffs}


async def test_track_separation_keeps_rate_and_channels(
    engine_client: TestClient, media_url: Callable[[str], str]
) -> None:
    account = await add_account(engine_client.app[DB])
    files = await finished_files(engine_client, account, media_url("/m/tone.wav"), "track-separation")
    assert {b: p.name for b, p in files.items()} == {
        "vocals": "vocals.mp3",
        "accompaniment": "accompaniment.mp3",
    }
    for path in files.values():
        info = media_info(path)
        assert info["codec"] == "mp3" and info["rate"] == 22050 and info["channels"] == 1
        assert info["duration"] == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(
    ("order_type", "fmt", "codec"), [("extract-voice", "wav", "pcm_s16le"), ("extract-music", "flac", "flac")]
)
async def test_single_stems_in_the_asked_format(
    engine_client: TestClient, media_url: Callable[[str], str], order_type: str, fmt: str, codec: str
) -> None:
    account = await add_account(engine_client.app[DB])
    files = await finished_files(
        engine_client, account, media_url("/m/stereo48k.flac"), order_type, {"format": fmt}
    )
    business = "vocals" if order_type == "extract-voice" else "accompaniment"
    assert list(files) == [business] and files[business].name == f"{business}.{fmt}"
    info = media_info(files[business])
    assert info["codec"] == codec and info["rate"] == 48000 and info["channels"] == 2
    assert info["duration"] == pytest.approx(3.0, abs=0.1)


async def test_engines_run_in_arq_workers_too(
    make_client: Callable[[Settings], Any],
    engine_settings: Settings,
    redis_url: str,
    queue_name: str,
    run_worker: Callable[[Settings], Any],
    media_url: Callable[[str], str],
) -> None:
    settings = engine_settings.replace(redis_url=redis_url, queue_name=queue_name)
    client = await make_client(settings)
    account = await add_account(client.app[DB])
    order_no = await create_order(client, account, media_url("/m/tone.m4a"), "extract-voice")
    worker = await run_worker(settings)
    assert worker.jobs_complete == 1
    order = await wait_for_order(client.app[DB], order_no)
    assert order.status == "finish" and [r.name for r in order.results] == ["vocals.mp3"], order.reason


async def test_stems_are_cached_by_content_and_model(
    engine_client: TestClient, media_url: Callable[[str], str]
) -> None:
    account = await add_account(engine_client.app[DB])
    await finished_files(engine_client, account, media_url("/m/whole.mp3"), "track-separation")
    stems_dir = engine_client.app[SETTINGS].cache_dir / "stems"
    [cached] = list(stems_dir.iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in cached.iterdir()}
    files = await finished_files(engine_client, account, media_url("/m/whole.mp3"), "extract-music")
    assert list(stems_dir.iterdir()) == [cached]
    assert {p.name: p.stat().st_mtime_ns for p in cached.iterdir()} == before  # reused, not separated again
    assert media_info(files["accompaniment"])["duration"] == pytest.approx(4.0, abs=0.15)
    # both orders are billed for their own duration
    ledger = await engine_client.app[DB].ledger(account.user_id)
    assert [row["delta"] for row in ledger] == [1000, -10, -10]


async def test_stems_are_shared_through_the_store(
    make_client: Callable[[Settings], Any],
    engine_settings: Settings,
    media_url: Callable[[str], str],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """A second worker host, which has no Demucs model at all, serves an extract-music of the same bytes from
    the stems the first one separated: they can have come only from the store."""
    settings = with_storage(engine_settings, "s3", request)
    first = await make_client(settings)
    account = await add_account(first.app[DB])
    order_no = await create_order(first, account, media_url("/m/whole.mp3"), "track-separation")
    assert (await wait_for_order(first.app[DB], order_no)).status == "finish"
    s3: S3Server = request.getfixturevalue("s3_server")
    assert settings.storage_url is not None
    cached = [k for k in s3.keys(settings.storage_url) if k.startswith("cache/")]
    assert len(cached) == 2 and all(k.endswith(("/vocals.flac", "/accompaniment.flac")) for k in cached)
    assert cached[0].split("/")[2].endswith(f"-{DEMUCS_NAME}")

    bare = another_host(settings, tmp_path / "bare", model_dir=tmp_path / "no-models")
    second = await make_client(bare)
    order_no = await create_order(second, account, media_url("/m/whole.mp3"), "extract-music")
    order = await wait_for_order(second.app[DB], order_no)
    assert order.status == "finish", order.reason
    assert [r.name for r in order.results] == ["accompaniment.mp3"]
    assert outside_scratch(bare) == [] and scratch_files(bare) == []


def test_random_whisper_is_the_same_every_time(tmp_path: Path) -> None:
    """Every weight of the random checkpoint comes from the seed, none from what memory held before: torch.empty
    reuses freed blocks, so NaN left in one would otherwise reach a checkpoint and make it decode nothing."""
    import torch

    states = []
    for attempt in range(2):
        torch.full((4096, 64), float("nan")).sum()  # leaves freed memory full of NaN
        save_tiny_whisper(tmp_path / str(attempt))
        path = whisper_checkpoint(tmp_path / str(attempt), WHISPER_NAME)
        states.append(torch.load(path, weights_only=True)["model_state_dict"])
    assert states[0].keys() == states[1].keys()
    for key, weight in states[0].items():
        if weight.is_sparse:
            continue
        assert torch.isfinite(weight).all(), key
        assert torch.equal(weight, states[1][key]), key


@pytest.mark.parametrize("source", ["/m/tone.wav", "/m/tone.m4a", "/m/clip.mp4", "/m/whole.mp3"])
async def test_transcription_results(
    engine_client: TestClient, media_url: Callable[[str], str], source: str
) -> None:
    account = await add_account(engine_client.app[DB])
    files = await finished_files(engine_client, account, media_url(source), "extract-text", RANDOM_WEIGHTS)
    assert {b: p.name for b, p in files.items()} == {
        "caption": "caption.srt",
        "text": "transcript.txt",
        "json": "transcript.json",
    }
    doc = json.loads(files["json"].read_text())
    assert set(doc) == {
        "language",
        "language_probability",
        "duration",
        "text",
        "speakers",
        "turns",
        "voices",
        "segments",
        "words",
    }
    assert (
        doc["language"] == "en"
        and doc["language_probability"] is None
        and doc["speakers"] == doc["turns"] == []
        and doc["voices"] == {}
    )
    assert_timeline(doc["segments"], doc["duration"])
    assert_timeline(doc["words"], doc["duration"])
    assert doc["segments"], "random weights decode something from a tone"
    for seg in doc["segments"]:
        assert set(seg) == SEGMENT_FIELDS
    for word in doc["words"]:
        assert set(word) == {"word", "start", "end", "probability"}
    assert files["text"].read_text() == doc["text"] + "\n"
    assert assert_srt(files["caption"].read_text()) >= len(doc["segments"])


# Random weights hear words in anything: with voice activity detection off they decode the tones, and greedily,
# since a beam over random tokens only costs time.
RANDOM_WEIGHTS = {"language": "en", "vad": False, "beamSize": 1}

SEGMENT_FIELDS = {
    "id",
    "seek",
    "start",
    "end",
    "text",
    "tokens",
    "temperature",
    "avg_logprob",
    "compression_ratio",
    "no_speech_prob",
}


def assert_timeline(items: list[dict[str, Any]], duration: float) -> None:
    times = [t for item in items for t in (item["start"], item["end"])]
    assert times == sorted(times) and all(0 <= t <= duration for t in times)


SRT_BLOCK = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.*)\n", re.S)


def assert_srt(text: str) -> int:
    """Checks SRT syntax and times; returns the number of captions."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    for number, block in enumerate(blocks, 1):
        match = SRT_BLOCK.fullmatch(block if block.endswith("\n") else block + "\n")
        assert match and int(match.group(1)) == number and match.group(2) <= match.group(3), block
    return len(blocks)


def test_srt_and_timeline_helpers() -> None:
    assert to_srt([Caption(0.0, 3723.5, None, ["hi"])]) == "1\n00:00:00,000 --> 01:02:03,500\nhi\n"
    assert to_srt([Caption(1.0, 2.0, "S2", ["a", "b"])]) == "1\n00:00:01,000 --> 00:00:02,000\n[S2] a\nb\n"
    line = Timeline(10.0)
    assert [line.place(t) for t in (1.0, 0.5, 12.0, 3.0)] == [1.0, 1.0, 10.0, 10.0]


def test_chinese_script() -> None:
    assert in_script("漢語語音識別", "zh", "zh-hans") == "汉语语音识别"
    assert in_script("汉语语音识别", "zh", "zh-hant") == "漢語語音識別"
    assert in_script("漢", "ja", "zh-hans") == "漢"


async def test_missing_model_names_the_pull_command(
    make_client: Callable[[Settings], Any], engine_settings: Settings, media_url: Callable[[str], str]
) -> None:
    client = await make_client(engine_settings.replace(demucs_model="htdemucs"))
    account = await add_account(client.app[DB])
    order_no = await create_order(client, account, media_url("/m/tone.wav"), "extract-voice")
    order = await wait_for_order(client.app[DB], order_no)
    assert order.status == "failed" and "Demucs model htdemucs is not installed" in (order.reason or "")
    assert "yinzi models pull htdemucs" in (order.reason or "")
    order_no = await create_order(
        client, account, media_url("/m/tone.wav")
    )  # stuff.model picks the checkpoint
    resp = await client.post(
        "/api/open/v1/order/create",
        json={
            "orderType": "extract-text",
            "stuff": {"pathKey": media_url("/m/tone.wav"), "model": "large-v3"},
        },
        headers=account.headers,
    )
    order_no = (await resp.json())["data"]["orderNo"]
    order = await wait_for_order(client.app[DB], order_no)
    assert "Whisper model large-v3 is not installed" in (order.reason or "")


async def test_truncated_media_is_decoded_as_far_as_it_goes(
    engine_client: TestClient, media_url: Callable[[str], str]
) -> None:
    account = await add_account(engine_client.app[DB])
    files = await finished_files(engine_client, account, media_url("/m/truncated.mp3"), "extract-voice")
    assert 0 < media_info(files["vocals"])["duration"] <= 4.0


@pytest.mark.parametrize(
    ("stuff", "message"),
    [
        ({"format": "ogg"}, "stuff.format must be one of: mp3, wav, flac"),
        ({"language": "klingon"}, "stuff.language must be a language code"),
    ],
)
async def test_engine_options_are_validated(
    engine_client: TestClient, stuff: dict[str, Any], message: str
) -> None:
    account = await add_account(engine_client.app[DB])
    order_type = "extract-voice" if "format" in stuff else "extract-text"
    resp = await engine_client.post(
        "/api/open/v1/order/create",
        json={"orderType": order_type, "stuff": {"pathKey": "https://example.com/a.mp3", **stuff}},
        headers=account.headers,
    )
    assert resp.status == 400 and message in (await resp.json())["msg"]
    for bad in ({"model": "../../etc/passwd"}, {"prompt": 5}, {"chinese": "klingon"}, {"format": "mp3"}):
        resp = await engine_client.post(
            "/api/open/v1/order/create",
            json={"orderType": "extract-text", "stuff": {"pathKey": "https://example.com/a.mp3", **bad}},
            headers=account.headers,
        )
        assert resp.status == 400, bad


# ---- chunking, run in this process with blocks shrunk to fractions of a second ----------------------------


def engine_task(
    tmp_path: Path, source: Path, order_type: str, model: str, options: dict[str, Any] | None = None
) -> EngineTask:
    import asyncio

    info = asyncio.run(probe(source))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return EngineTask(
        order_no="chunked",
        order_type=order_type,
        input_path=source,
        out_dir=out,
        duration=info.duration,
        sample_rate=info.sample_rate,
        channels=info.channels,
        model=model,
        cache_dir=tmp_path / "cache",
        options=options or {},
    )


def test_separation_streams_to_the_exact_length_with_progress_per_segment(
    tmp_path: Path, model_dir: Path, media_dir: Path
) -> None:
    task = engine_task(
        tmp_path, media_dir / "stereo48k.flac", "track-separation", DEMUCS_NAME, {"format": "wav"}
    )
    seen: list[float] = []
    SeparationEngine(Settings(model_dir=model_dir)).run(task, seen.append)
    # The tiny model's segments are 1 s with a 0.75 s stride: at least four steps for 3 s, then the end.
    assert len(seen) >= 5 and seen == sorted(seen) and seen[-1] == 1.0 and seen[-2] < 1.0
    stems = next((tmp_path / "cache" / "stems").iterdir())
    for stem in ("vocals", "accompaniment"):
        info = media_info(stems / f"{stem}.flac")
        assert info["rate"] == 44100 and info["channels"] == 2
        assert info["duration"] == pytest.approx(3.0, abs=0.001)  # no gap, no overlap, shift removed
        out = media_info(tmp_path / "out" / f"{stem}.wav")  # encoded from the stream at the input's rate
        assert out["rate"] == 48000 and out["duration"] == pytest.approx(3.0, abs=0.001)


def test_transcription_in_blocks_keeps_one_timeline(
    tmp_path: Path, model_dir: Path, media_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speech, "BLOCK_SECONDS", 1.0)
    task = engine_task(
        tmp_path,
        media_dir / "whole.mp3",
        "extract-text",
        WHISPER_NAME,
        {"language": "zh", "vad": False, "beamSize": 1},
    )
    seen: list[float] = []
    TranscriptionEngine(Settings(model_dir=model_dir, whisper_engine="openai-whisper")).run(task, seen.append)
    # at least four blocks of at most 1 s (each cut at its quietest moment), then the files
    assert len(seen) >= 5 and seen == sorted(seen) and seen[-1] == 1.0 and seen[-2] < 1.0
    doc = json.loads((tmp_path / "out" / "transcript.json").read_text())
    assert_timeline(doc["segments"], doc["duration"])
    assert_timeline(doc["words"], doc["duration"])
