"""An engine for tests that does real work, quickly: ffmpeg re-encodes the input to 16-bit WAV.

It runs in the real engine process like Demucs and Whisper do, reports progress in steps (slowed down by
``YINZI_TEST_ENGINE_SECONDS`` so tests can catch an order mid-job) and writes ``engine.json`` with its pid and
run count, so tests can see that one loaded engine served several orders, and the thread counts it was given.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from workers.engines import EngineTask, Progress
from yinzi.settings import Settings
from yinzi.store import ResultFile

STEPS = 10


class CopyEngine:
    def __init__(self, settings: Settings) -> None:
        import torch  # once the engine process has set its thread count, as the real engines import it

        self.torch_threads = torch.get_num_threads()
        self.pid = os.getpid()
        self.runs = 0

    def run(self, task: EngineTask, progress: Progress) -> list[ResultFile]:
        self.runs += 1
        delay = float(os.environ.get("YINZI_TEST_ENGINE_SECONDS", "0"))
        for step in range(STEPS):
            time.sleep(delay / STEPS)
            progress((step + 1) / STEPS)
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-i",
                str(task.input_path),
                "-c:a",
                "pcm_s16le",
                "-y",
                str(task.out_dir / "audio.wav"),
            ],
            check=True,
        )
        seen = {
            "pid": self.pid,
            "runs": self.runs,
            "threads": int(os.environ["OMP_NUM_THREADS"]),
            "torch_threads": self.torch_threads,
        }
        (task.out_dir / "engine.json").write_text(json.dumps(seen))
        return [ResultFile("audio.wav", "audio"), ResultFile("engine.json", "info")]


class ScriptEngine:
    """A transcription stand-in with a fixed script: three timed lines by two speakers over the media, in the
    files and shapes the Whisper engine writes, so pages can be tested without random-model output."""

    def __init__(self, settings: Settings) -> None:
        pass

    def run(self, task: EngineTask, progress: Progress) -> list[ResultFile]:
        third = task.duration / 3
        segments = [
            {"start": round(i * third, 2), "end": round((i + 1) * third, 2), "text": text, "speaker": speaker}
            for i, (text, speaker) in enumerate(
                [
                    (" Good morning.", "S1"),
                    (" Morning! Shall we start?", "S2"),
                    (" Yes.", "S1"),
                ]
            )
        ]
        progress(1.0)
        text = "".join(s["text"] for s in segments).strip()
        (task.out_dir / "transcript.json").write_text(
            json.dumps(
                {
                    "language": "en",
                    "duration": task.duration,
                    "text": text,
                    "speakers": ["S1", "S2"],
                    "turns": [{k: s[k] for k in ("start", "end", "speaker")} for s in segments],
                    "segments": segments,
                    "words": [],
                }
            )
        )
        (task.out_dir / "transcript.txt").write_text(text + "\n")
        (task.out_dir / "caption.srt").write_text(
            "".join(
                f"{i + 1}\n00:00:00,000 --> 00:00:01,000\n{s['text'].strip()}\n\n"
                for i, s in enumerate(segments)
            )
        )
        return [
            ResultFile("caption.srt", "caption"),
            ResultFile("transcript.txt", "text"),
            ResultFile("transcript.json", "json"),
        ]
