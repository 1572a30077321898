"""An engine for tests that does real work, quickly: ffmpeg re-encodes the input to 16-bit WAV.

It runs in the real engine process like Demucs and Whisper do, reports progress in steps (slowed down by
``YINZI_TEST_ENGINE_SECONDS`` so tests can catch an order mid-job) and writes ``engine.json`` with its pid and
run count, so tests can see that one loaded engine served several orders.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from workers.engines import EngineTask, Progress
from yinzi.store import ResultFile

STEPS = 10


class CopyEngine:
    def __init__(self, model_dir: Path) -> None:
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
        (task.out_dir / "engine.json").write_text(json.dumps({"pid": self.pid, "runs": self.runs}))
        return [ResultFile("audio.wav", "audio"), ResultFile("engine.json", "info")]
