"""Whisper transcription of audio or video: caption.srt, transcript.txt and transcript.json.

Long media is decoded and transcribed block by block so memory stays flat whatever the duration. Each block is
prompted with the caller's prompt and the end of the text so far, so sentences carry across blocks. Every
timestamp is shifted by its block's start and clamped so that timestamps never go back and never pass the end
of the media. Chinese comes out in Simplified characters unless ``stuff.chinese`` is ``traditional``.
"""

from __future__ import annotations

import json
import logging
import math
from itertools import count
from pathlib import Path
from typing import Any

from workers.engines import EngineTask, Progress
from workers.engines.audio import PcmReader
from workers.engines.models import missing_model, whisper_checkpoint
from yinzi.store import ResultFile

BLOCK_SECONDS = 60
PROMPT_TAIL_CHARS = 200
SAMPLE_RATE = 16_000  # whisper.audio.SAMPLE_RATE, what every Whisper model hears

log = logging.getLogger(__name__)


def srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


def to_srt(segments: list[dict[str, Any]]) -> str:
    blocks = [
        f"{i}\n{srt_time(s['start'])} --> {srt_time(s['end'])}\n{s['text']}\n"
        for i, s in enumerate(segments, 1)
    ]
    return "\n".join(blocks)


class Timeline:
    """Places times on the media's timeline: never before the previous one, never past the end."""

    def __init__(self, duration: float) -> None:
        self._duration = duration
        self._last = 0.0

    def place(self, seconds: float) -> float:
        self._last = round(min(max(float(seconds), self._last), self._duration), 3)
        return self._last


def in_script(text: str, language: str | None, script: str) -> str:
    """Chinese in the asked-for script (zh-hans or zh-hant); other languages unchanged."""
    if language not in ("zh", "yue"):
        return text
    import zhconv

    return str(zhconv.convert(text, script))


def _transcribe(model: Any, audio: Any, language: str | None, prompt: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "language": language,
        "initial_prompt": prompt,
        "word_timestamps": True,
        "fp16": False,
        "verbose": None,
    }
    try:
        return dict(model.transcribe(audio, **options))
    except ValueError as exc:
        # Whisper's temperature fallback samples from the logits; when they come out NaN (seen on near-silent
        # or very short audio) torch refuses to sample. Greedy decoding alone takes no sample.
        if "Expected parameter logits" not in str(exc):
            raise
        log.warning("sampling failed on NaN logits; decoding this block greedily instead")
        return dict(model.transcribe(audio, temperature=0.0, **options))


class TranscriptionEngine:
    def __init__(self, model_dir: Path) -> None:
        self._model_dir = model_dir
        self._models: dict[str, Any] = {}

    def _model(self, name: str) -> Any:
        if name not in self._models:
            path = whisper_checkpoint(self._model_dir, name)
            if not path.is_file():
                raise missing_model("Whisper", name, path.parent)
            import whisper

            self._models[name] = whisper.load_model(str(path), device="cpu")
        return self._models[name]

    def run(self, task: EngineTask, progress: Progress) -> list[ResultFile]:
        model = self._model(task.model)
        language: str | None = task.options.get("language")
        script = "zh-hant" if task.options.get("chinese") == "traditional" else "zh-hans"
        segments: list[dict[str, Any]] = []
        words: list[dict[str, Any]] = []
        segment_times, word_times = Timeline(task.duration), Timeline(task.duration)
        blocks = max(1, math.ceil(task.duration / BLOCK_SECONDS))

        with PcmReader(task.input_path, SAMPLE_RATE, 1) as reader:
            for block in count():
                audio = reader.read(int(BLOCK_SECONDS * SAMPLE_RATE))[0]
                if audio.size == 0:
                    break
                offset = block * BLOCK_SECONDS
                so_far = " ".join(s["text"] for s in segments)[-PROMPT_TAIL_CHARS:]
                prompt = " ".join(p for p in (task.options.get("prompt"), so_far) if p) or None
                result = _transcribe(model, audio, language, prompt)
                language = language or result["language"]
                for seg in result["segments"]:
                    if not seg["text"].strip():
                        continue  # silence: no caption
                    for word in seg.get("words", []):
                        words.append(
                            {
                                "word": in_script(word["word"], language, script),
                                "start": word_times.place(offset + word["start"]),
                                "end": word_times.place(offset + word["end"]),
                                "probability": round(float(word["probability"]), 4),
                            }
                        )
                    segments.append(
                        {
                            "id": len(segments),
                            "start": segment_times.place(offset + seg["start"]),
                            "end": segment_times.place(offset + seg["end"]),
                            "text": in_script(seg["text"].strip(), language, script),
                            "avg_logprob": round(float(seg["avg_logprob"]), 4),
                            "no_speech_prob": round(float(seg["no_speech_prob"]), 4),
                        }
                    )
                progress(min((block + 1) / blocks, 0.99))

        full_text = "\n".join(s["text"] for s in segments)
        transcript = {
            "language": language,
            "duration": round(task.duration, 3),
            "text": full_text,
            "segments": segments,
            "words": words,
        }
        out = task.out_dir
        (out / "caption.srt").write_text(to_srt(segments), encoding="utf-8")
        (out / "transcript.txt").write_text(full_text + "\n", encoding="utf-8")
        (out / "transcript.json").write_text(
            json.dumps(transcript, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        progress(1.0)
        return [
            ResultFile("caption.srt", "caption"),
            ResultFile("transcript.txt", "text"),
            ResultFile("transcript.json", "json"),
        ]
