"""Conversations assembled from real speech clips, with the truth known from how they were put together.

The clips are read from the shared evaluation folder by path (never copied into the project); the assembled
conversation is written to a WAV under the test's tmp_path and fed to a diarizer block by block, the way the
transcription engine feeds it, with voiced regions from a small energy VAD.
"""

from __future__ import annotations

import itertools
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.support.speech_eval import EVAL, RATE, write_wav
from workers.engines.diarization import Diarizer, Turn

ENGLISH = EVAL / "speechbrain_asr"
MANDARIN = EVAL / "fireredasr_zh"

Floats = npt.NDArray[np.float32]


def clip(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"evaluation audio not found: {path} (set YINZI_EVAL_AUDIO to the eval-audio folder)")
    return path


def read_wav(path: Path) -> Floats:
    with wave.open(str(path)) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (RATE, 1, 2), path
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    return (pcm.astype(np.float32) / 32768).astype(np.float32)


@dataclass(frozen=True)
class Conversation:
    path: Path
    truth: list[Turn]
    duration: float


def assemble(
    folder: Path,
    parts: Sequence[tuple[Floats, int]],
    seed: int = 0,
    pauses: tuple[float, float] = (0.3, 0.8),
    lead: float = 0.5,
    snr_db: float | None = None,
) -> Conversation:
    """Speech parts (audio, speaker) one after another with random pauses between them; the truth turns are the
    parts' voiced spans (a clip's own leading and trailing silence is not speech)."""
    rng = np.random.default_rng(seed)
    pieces: list[Floats] = [np.zeros(int(lead * RATE), np.float32)]
    truth: list[Turn] = []
    at = lead
    for i, (audio, speaker) in enumerate(parts):
        if i:
            gap = np.zeros(int(rng.uniform(*pauses) * RATE), np.float32)
            pieces.append(gap)
            at += len(gap) / RATE
        voiced = energy_vad(audio, min_silence=10.0)
        if voiced:
            truth.append(Turn(round(at + voiced[0][0], 3), round(at + voiced[-1][1], 3), speaker))
        pieces.append(audio)
        at += len(audio) / RATE
    pieces.append(np.zeros(int(lead * RATE), np.float32))
    audio = np.concatenate(pieces)
    if snr_db is not None:  # a steady noise floor under everything, pauses included
        speech = np.concatenate([a for a, _ in parts])
        level = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) * 10 ** (-snr_db / 20)
        audio = (audio + rng.normal(0.0, level, len(audio))).astype(np.float32)
    path = write_wav(folder / "conversation.wav", audio)
    return Conversation(path, renumber(truth), len(audio) / RATE)


def renumber(turns: list[Turn]) -> list[Turn]:
    order: dict[int, int] = {}
    return [Turn(t.start, t.end, order.setdefault(t.speaker, len(order))) for t in turns]


def energy_vad(audio: Floats, min_silence: float = 2.0, frame: float = 0.03) -> list[tuple[float, float]]:
    """Voiced regions in seconds: 30 ms frames within 35 dB of the loudest, gaps under `min_silence` bridged
    (Silero's default in faster-whisper bridges 2 s, so regions often span several turns)."""
    step = int(frame * RATE)
    frames = len(audio) // step
    if frames == 0:
        return []
    rms = np.sqrt(np.mean(np.square(audio[: frames * step].reshape(frames, step), dtype=np.float64), axis=1))
    loud = rms > max(float(rms.max()) * 10 ** (-35 / 20), 1e-4)
    regions: list[tuple[float, float]] = []
    for i in np.flatnonzero(loud):
        start, end = i * frame, (i + 1) * frame
        if regions and start - regions[-1][1] < min_silence:
            regions[-1] = (regions[-1][0], end)
        else:
            regions.append((start, end))
    return [(float(s), float(e)) for s, e in regions]


def split(audio: Floats, pieces: int, search: float = 0.5) -> list[Floats]:
    """Cuts a clip into about equal pieces, each cut at the quietest 50 ms within `search` s of its mark."""
    frame = RATE // 20
    cuts = [0]
    for k in range(1, pieces):
        mark = len(audio) * k // pieces
        lo, hi = (
            max(cuts[-1] + frame, mark - int(search * RATE)),
            min(len(audio) - frame, mark + int(search * RATE)),
        )
        starts = np.arange(lo, hi, frame // 5)
        energy = [float(np.sum(np.square(audio[s : s + frame]))) for s in starts]
        cuts.append(int(starts[int(np.argmin(energy))]) + frame // 2)
    cuts.append(len(audio))
    return [audio[a:b] for a, b in itertools.pairwise(cuts)]


def diarize(
    diarizer: Diarizer, path: Path, block_seconds: float = 10.0, min_silence: float = 2.0
) -> Diarizer:
    """Feeds a WAV to the diarizer block by block, each with its own VAD regions."""
    audio = read_wav(path)
    size = int(block_seconds * RATE)
    for first in range(0, len(audio), size):
        block = audio[first : first + size]
        diarizer.add(block, first / RATE, energy_vad(block, min_silence))
    return diarizer
