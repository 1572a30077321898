"""stuff.splitChannels: each audio channel transcribed on its own, every segment and word labelled with its channel.

The decoder here is a stand-in that "hears" the loudest frequency in the audio it is handed, so the test sees
exactly which samples reached it: a channel leaking into the other, or a mixdown, would show in the text.
Everything around it (ffmpeg decoding, blocks, timelines, diarization, the files) is the real engine.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workers.engines import EngineTask, transcription
from workers.engines.speech import SAMPLE_RATE
from workers.engines.transcription import TranscriptionEngine
from workers.engines.whisper_backends import Decoding, Samples, Segment
from workers.probe import probe
from yinzi.errors import OrderFailed
from yinzi.settings import Settings

LEFT_HZ, RIGHT_HZ = 440, 880


class LoudestFrequency:
    """A Whisper stand-in: one segment over the whole block, its text the block's loudest frequency."""

    def detect_language(self, audio: Samples) -> tuple[str, float]:
        return "en", 1.0

    def transcribe(self, audio: Samples, decoding: Decoding) -> list[Segment]:
        spectrum = np.abs(np.fft.rfft(audio))
        hertz = round(float(np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)[int(np.argmax(spectrum))]))
        end = len(audio) / SAMPLE_RATE
        return [
            {
                "start": 0.0,
                "end": end,
                "text": f" {hertz} Hz",
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
                "words": [{"word": f" {hertz}", "start": 0.0, "end": end, "probability": 1.0}],
            }
        ]


@pytest.fixture(autouse=True)
def loudest_frequency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcription, "load_backend", lambda *args: LoudestFrequency())


def tones(path: Path, *channels: str) -> Path:
    """A 4 s file with one ffmpeg source expression per channel (a stereo file for two)."""
    expr = "|".join(channels).replace(",", "\\,")  # a comma would end the filter
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"aevalsrc={expr}:s=44100:d=4", str(path)],
        check=True,
    )
    return path


# The left channel sounds in the first two seconds, the right in the last two, as two parties of a call.
LEFT = f"0.5*sin({LEFT_HZ}*2*PI*t)*lt(t,2)"
RIGHT = f"0.5*sin({RIGHT_HZ}*2*PI*t)*gte(t,2)"


def run(path: Path, tmp_path: Path, **options: Any) -> dict[str, Any]:
    info = asyncio.run(probe(path))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    task = EngineTask(
        "split", "extract-text", path, out, info.duration, info.sample_rate, info.channels, "stand-in",
        tmp_path / "cache", {"language": "en", "vad": False, **options},
    )  # fmt: skip
    seen: list[float] = []
    TranscriptionEngine(Settings(engine_threads=1)).run(task, seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0
    doc: dict[str, Any] = json.loads((out / "transcript.json").read_text())
    doc["txt"] = (out / "transcript.txt").read_text()
    return doc


def test_each_channel_is_heard_on_its_own(tmp_path: Path) -> None:
    doc = run(tones(tmp_path / "call.wav", LEFT, RIGHT), tmp_path, splitChannels=True)
    assert [(s["id"], s["channel"], s["text"]) for s in doc["segments"]] == [
        (0, 0, f"{LEFT_HZ} Hz"),
        (1, 1, f"{RIGHT_HZ} Hz"),
    ]
    assert [(w["channel"], w["word"]) for w in doc["words"]] == [(0, f" {LEFT_HZ}"), (1, f" {RIGHT_HZ}")]
    assert doc["txt"] == f"[ch0] {LEFT_HZ} Hz\n[ch1] {RIGHT_HZ} Hz\n"


def test_without_the_option_the_channels_are_mixed(tmp_path: Path) -> None:
    # The right channel louder: the mix's loudest frequency is its, and nothing says a channel.
    louder = RIGHT.replace("0.5*", "0.8*")
    doc = run(tones(tmp_path / "call.wav", LEFT, louder), tmp_path)
    assert [s["text"] for s in doc["segments"]] == [f"{RIGHT_HZ} Hz"]
    assert "channel" not in doc["segments"][0] and "channel" not in doc["words"][0]


def test_mono_media_has_one_channel_to_hear(tmp_path: Path) -> None:
    doc = run(tones(tmp_path / "mono.wav", LEFT), tmp_path, splitChannels=True)
    assert [s["text"] for s in doc["segments"]] == [f"{LEFT_HZ} Hz"] and "channel" not in doc["segments"][0]


def test_speakers_are_numbered_across_channels(tmp_path: Path) -> None:
    doc = run(
        tones(tmp_path / "call.wav", LEFT, RIGHT), tmp_path, splitChannels=True, diarize=True, speakers=1
    )
    assert [(s["channel"], s["speaker"]) for s in doc["segments"]] == [(0, "S1"), (1, "S2")]
    assert [(w["channel"], w["speaker"]) for w in doc["words"]] == [(0, "S1"), (1, "S2")]
    assert doc["speakers"] == ["S1", "S2"] and sorted(doc["voices"]) == ["S1", "S2"]
    assert doc["txt"] == f"[ch0] [S1] {LEFT_HZ} Hz\n[ch1] [S2] {RIGHT_HZ} Hz\n"


def test_too_many_channels_fail_with_a_reason(tmp_path: Path) -> None:
    nine = tones(tmp_path / "nine.wav", *[LEFT] * 9)
    with pytest.raises(OrderFailed, match="9 audio channels; splitChannels takes at most 8"):
        run(nine, tmp_path, splitChannels=True)
