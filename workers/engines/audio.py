"""Streaming audio through ffmpeg, so no engine ever holds a whole track in memory.

:class:`PcmReader` decodes any input ffmpeg reads (audio or the audio track of a video) to float32 PCM at the
rate and channel count a model wants, block by block; :class:`PcmWriter` encodes blocks in the background as
they are produced; :func:`transcode` turns one file into another format, rate and channel count. These run
inside engine processes, where blocking is fine.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np
import numpy.typing as npt

from yinzi.errors import OrderFailed

Audio = npt.NDArray[np.float32]  # shape (channels, samples)

CODECS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "320k"],
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
}


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "unknown error"


class _StderrDrain:
    """Reads a process's stderr in the background so a chatty ffmpeg can never block on a full pipe."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.data = b""
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream:
            self.data = stream.read()

    def text(self) -> str:
        self._thread.join(timeout=5)
        return _last_line(self.data)


class PcmReader:
    """``channels`` channels (ffmpeg mixes or spreads the input's to that many), or with ``channel`` only that
    channel of the input (0-based), as mono."""

    def __init__(self, path: Path, sample_rate: int, channels: int, channel: int | None = None) -> None:
        self.sample_rate = sample_rate
        self.channels = 1 if channel is not None else channels
        pick = ["-af", f"pan=mono|c0=c{channel}"] if channel is not None else []
        self._proc = subprocess.Popen(
            [
                "ffmpeg",
                "-v",
                "error",
                "-nostdin",
                "-i",
                str(path),
                "-vn",
                *pick,
                "-f",
                "f32le",
                "-ac",
                str(self.channels),
                "-ar",
                str(sample_rate),
                "-",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._stdout = self._proc.stdout
        self._stderr = _StderrDrain(self._proc.stderr)

    def read(self, frames: int) -> Audio:
        """Up to ``frames`` samples per channel; fewer only at the end of the stream."""
        want = frames * self.channels * 4
        chunks = []
        while want > 0:
            chunk = self._stdout.read(want)
            if not chunk:
                break
            chunks.append(chunk)
            want -= len(chunk)
        data = np.frombuffer(b"".join(chunks), dtype="<f4")
        data = data[: len(data) - len(data) % self.channels]
        if len(data) == 0 and self._proc.poll() not in (None, 0):
            raise OrderFailed(f"could not decode the audio: {self._stderr.text()}")
        return data.reshape(-1, self.channels).T.copy()

    def __enter__(self) -> PcmReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stdout.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


class PcmWriter:
    """Encodes float32 blocks at ``in_rate``/``in_channels`` to ``path``, converted to ``out_rate``/``out_channels``."""

    def __init__(
        self, path: Path, fmt: str, in_rate: int, in_channels: int, out_rate: int, out_channels: int
    ) -> None:
        self._channels = in_channels
        self._proc = subprocess.Popen(
            [
                "ffmpeg",
                "-v",
                "error",
                "-nostdin",
                "-y",
                "-f",
                "f32le",
                "-ar",
                str(in_rate),
                "-ac",
                str(in_channels),
                "-i",
                "-",
                "-ar",
                str(out_rate),
                "-ac",
                str(out_channels),
                *CODECS[fmt],
                str(path),
            ],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stdin is not None and self._proc.stderr is not None
        self._stderr = _StderrDrain(self._proc.stderr)
        # A feeder thread hands blocks to ffmpeg, so encoding overlaps with the model computing the next block
        # instead of the engine waiting on a full pipe; the short queue bounds what is held in memory.
        self._blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._feeder = threading.Thread(target=self._feed, args=(self._proc.stdin,), daemon=True)
        self._feeder.start()

    def _feed(self, stdin: IO[bytes]) -> None:
        try:
            while (data := self._blocks.get()) is not None:
                stdin.write(data)
        except BrokenPipeError:  # ffmpeg stopped early; __exit__ reports its message
            while self._blocks.get() is not None:
                pass  # keeps taking blocks, so that write() never blocks on a dead encoder
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    def write(self, audio: Audio) -> None:
        assert audio.shape[0] == self._channels
        self._blocks.put(np.ascontiguousarray(audio.T, dtype="<f4").tobytes())

    def __enter__(self) -> PcmWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._blocks.put(None)
        self._feeder.join()
        code = self._proc.wait()
        if code != 0 and kind is None:
            raise OrderFailed(f"could not encode the result: {self._stderr.text()}")


def transcode(source: Path, target: Path, fmt: str, sample_rate: int, channels: int) -> None:
    done = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-nostdin",
            "-y",
            "-i",
            str(source),
            "-ar",
            str(sample_rate),
            "-ac",
            str(channels),
            *CODECS[fmt],
            str(target),
        ],
        capture_output=True,
    )
    if done.returncode != 0:
        raise OrderFailed(f"could not encode the result: {_last_line(done.stderr)}")
