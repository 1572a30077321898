"""The pieces around Whisper: pause-aligned blocks, the speech map, subtitle shaping, model files, threads.

Real speech and real Whisper weights where they matter (blocks, models add), synthetic data elsewhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import add_account
from tests.support.speech_eval import RATE, assemble, ct2_sources, english_clips, read_16k
from tests.test_engines import finished_files
from workers.engines import speech
from workers.engines.audio import PcmReader
from workers.engines.models import FASTER_WHISPER, OPENAI_WHISPER, list_installed
from workers.engines.speech import Block, SpeechMap, blocks
from workers.engines.subtitles import Shape, captions
from workers.engines.whisper_backends import OpenAIWhisper
from yinzi.appkeys import DB
from yinzi.cli import main
from yinzi.settings import Settings


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject here is the transcript's parts, not the database


# ---- blocks end in pauses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vad", [True, False])
def test_blocks_cover_the_stream_and_end_in_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vad: bool
) -> None:
    monkeypatch.setattr(speech, "BLOCK_SECONDS", 12.0)
    monkeypatch.setattr(speech, "SEARCH_SECONDS", 5.0)
    talk = assemble(english_clips(), tmp_path / "talk.wav", seconds=60)
    audio = read_16k(talk.path)
    with PcmReader(talk.path, RATE, 1) as reader:
        found = list(blocks(reader, vad))
    assert [b.offset for b in found] == [0, *np.cumsum([len(b.audio) for b in found])[:-1]]
    assert sum(len(b.audio) for b in found) == len(audio)
    assert all(len(b.audio) <= 12 * RATE for b in found) and len(found) >= 5
    loud = float(np.sqrt(np.mean(np.square(audio))))
    for block in found[:-1]:
        cut = block.offset + len(block.audio)
        around = audio[cut - RATE // 20 : cut + RATE // 20]
        assert float(np.sqrt(np.mean(np.square(around)))) < 0.2 * loud, (
            f"cut at {cut / RATE:.2f} s is not a pause"
        )
    if vad:
        assert all(0 <= a < b <= len(block.audio) for block in found for a, b in block.speech)


def test_the_speech_map_joins_speech_and_puts_times_back() -> None:
    audio = np.arange(20 * RATE, dtype=np.float32)
    block = Block(
        offset=10 * RATE, audio=audio, speech=[(0, RATE), (2 * RATE, 3 * RATE), (10 * RATE, 11 * RATE)]
    )
    joined = SpeechMap(block)
    # the 1 s pause stays (pauses up to 2 s carry rhythm); the 7 s one goes
    assert len(joined.audio) == 4 * RATE and joined.audio[3 * RATE] == 10 * RATE
    assert [joined.seconds(t) for t in (0.0, 0.5, 2.5, 3.0, 3.5)] == [10.0, 10.5, 12.5, 20.0, 20.5]
    assert SpeechMap(Block(0, audio, [])).audio.size == 0


# ---- subtitles ------------------------------------------------------------------------------------------


def timed_words(text: str, start: float = 0.0, each: float = 0.4, joiner: str = " ") -> list[dict[str, Any]]:
    tokens = text.split() if joiner == " " else list(text)
    return [
        {
            "word": (joiner if joiner == " " else "") + token,
            "start": start + i * each,
            "end": start + (i + 1) * each,
        }
        for i, token in enumerate(tokens)
    ]


def test_captions_keep_to_line_length_lines_and_duration() -> None:
    words = timed_words("ask not what your country can do for you ask what you can do for your country " * 3)
    segment = {"start": 0.0, "end": words[-1]["end"], "text": "", "words": words}
    shaped = captions([segment], Shape(line_chars=20, lines=2, seconds=5.0))
    assert len(shaped) > 3
    for caption in shaped:
        assert 1 <= len(caption.lines) <= 2 and all(len(line.strip()) <= 20 for line in caption.lines)
        assert caption.end - caption.start <= 5.0
    assert " ".join(" ".join(c.lines) for c in shaped).split() == [w["word"].strip() for w in words]


def test_chinese_captions_are_measured_in_characters() -> None:
    text = "甚至出现交易几乎停滞的情况一二线城市虽然也处于调整中大学生利用漏洞免费吃肯德基获刑"
    words = timed_words(text, each=0.2, joiner="")
    shaped = captions(
        [{"start": 0.0, "end": words[-1]["end"], "text": text, "words": words}], Shape.for_order({}, "zh")
    )
    assert all(len(line) <= 16 for c in shaped for line in c.lines)
    assert "".join("".join(c.lines) for c in shaped) == text
    assert Shape.for_order({}, "en").line_chars == 42
    assert Shape.for_order({"maxLineChars": 30, "maxLines": 1, "maxCaptionSeconds": 3}, "zh") == Shape(
        30, 1, 3.0
    )


def test_a_caption_never_spans_two_speakers_or_two_segments() -> None:
    first = timed_words("we are sure that one war is enough")
    for word in first[4:]:
        word["speaker"] = "S2"
    for word in first[:4]:
        word["speaker"] = "S1"
    second = timed_words("mend the coat", start=10.0)
    segments = [
        {"start": 0.0, "end": 3.2, "text": "", "speaker": "S1", "words": first},
        {"start": 10.0, "end": 11.2, "text": "", "speaker": "S1", "words": second},
        {"start": 12.0, "end": 13.0, "text": "no word timings here at all, so wrap the text", "words": []},
    ]
    shaped = captions(segments, Shape(line_chars=42))
    assert [(c.speaker, " ".join(c.lines).strip()) for c in shaped] == [
        ("S1", "we are sure that"),
        ("S2", "one war is enough"),
        ("S1", "mend the coat"),
        (None, "no word timings here at all, so wrap the text"),
    ]


# ---- model files ----------------------------------------------------------------------------------------


def test_models_add_installs_a_ctranslate2_folder_for_both_engines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YINZI_DATA_DIR", str(tmp_path / "data"))
    tiny = ct2_sources(tmp_path / "scratch")["tiny.en"]
    assert main(["models", "add", str(tiny), "--name", "tiny.en"]) == 0
    out = capsys.readouterr().out
    assert "tiny.en: ready for faster-whisper" in out and "tiny.en: ready for openai-whisper" in out
    model_dir = tmp_path / "data" / "models"
    assert {(m.name, m.engine) for m in list_installed(model_dir)} == {
        ("tiny.en", FASTER_WHISPER),
        ("tiny.en", OPENAI_WHISPER),
    }
    assert main(["models", "list"]) == 0
    listed = [line.split()[:2] for line in capsys.readouterr().out.splitlines()]
    assert listed == [["tiny.en", FASTER_WHISPER], ["tiny.en", OPENAI_WHISPER]]

    # the converted checkpoint loads strictly and keeps the model's own alignment heads
    heads = json.loads((tiny / "config.json").read_text())["alignment_heads"]
    converted = OpenAIWhisper(model_dir, "tiny.en")._model
    assert sorted(map(list, converted.alignment_heads.to_dense().nonzero().tolist())) == sorted(heads)

    # an openai-whisper checkpoint goes in as it is, under its own name
    assert main(["models", "add", str(model_dir / "whisper" / "tiny.en.pt"), "--name", "copy"]) == 0
    assert "copy: ready for openai-whisper" in capsys.readouterr().out
    assert main(["models", "add", str(tmp_path)]) == 2
    assert "not a CTranslate2 model folder" in capsys.readouterr().err


def test_no_models_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YINZI_DATA_DIR", str(tmp_path / "data"))
    assert main(["models", "list"]) == 0
    assert "yinzi models add PATH" in capsys.readouterr().out


# ---- engine processes share the cores -------------------------------------------------------------------


def test_thread_share_follows_cores_and_engine_processes() -> None:
    cores = len(os.sched_getaffinity(0))
    assert Settings().threads_per_engine == max(
        1, cores // 2
    )  # two engines (Demucs, Whisper) may run at once
    assert Settings(worker_concurrency=1).threads_per_engine == cores
    assert Settings(engine_threads=3).threads_per_engine == 3


@pytest.mark.parametrize("threads", [0, 3])
async def test_engine_processes_use_their_share_of_threads(
    make_client: Callable[[Settings], Any], settings: Settings, media_url: Callable[[str], str], threads: int
) -> None:
    client: TestClient = await make_client(settings.replace(engine_threads=threads))
    account = await add_account(client.app[DB])
    files = await finished_files(client, account, media_url("/m/tone.wav"), "extract-text")
    seen = json.loads(files["info"].read_text())
    assert seen["threads"] == (threads or Settings().threads_per_engine)
    # torch takes its thread count from the environment the engine process set, capped at the cores
    assert seen["torch_threads"] == min(seen["threads"], len(os.sched_getaffinity(0)))
