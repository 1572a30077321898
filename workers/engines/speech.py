"""Finding the speech in a stream and cutting it into blocks only where nobody speaks.

Long media is transcribed block by block so memory stays flat. A cut inside a word loses the word, so every
block ends in a pause: the longest one that voice activity detection (Silero, as shipped inside faster-whisper)
finds in the last ``SEARCH_SECONDS`` of the block, or, with detection off, the quietest tenth of a second there.
With detection on, each block is then reduced to its speech: stretches of silence or music longer than
``KEEP_SILENCE_SECONDS`` are left out before Whisper hears it (Whisper invents words over them), and
:class:`SpeechMap` puts the times Whisper reports back on the media's timeline.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from workers.engines.audio import PcmReader
from yinzi.errors import OrderFailed

SAMPLE_RATE = 16_000  # what every Whisper model hears
BLOCK_SECONDS = 60.0  # longest block; longer costs memory, shorter costs context
SEARCH_SECONDS = 20.0  # where, at the end of a full block, a pause to cut at is looked for
READ_SECONDS = 10.0
KEEP_SILENCE_SECONDS = 2.0  # pauses up to this long stay in the audio Whisper hears: they carry rhythm
SPEECH_PAD_MS = 400  # faster-whisper's default: less clips soft onsets (a Mandarin "好", "富")
MIN_SILENCE_MS = 250  # a pause at least this long separates two speech regions
QUIET_FRAME = SAMPLE_RATE // 10

Samples = npt.NDArray[np.float32]
Region = tuple[int, int]  # [start, end) in samples


def speech_regions(audio: Samples) -> list[Region]:
    """The voiced stretches of 16 kHz mono audio, in samples."""
    try:
        from faster_whisper.vad import VadOptions, get_speech_timestamps
    except ImportError:
        raise OrderFailed(
            "voice activity detection needs faster-whisper installed (make setup), or order with stuff.vad false"
        ) from None
    options = VadOptions(min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS)
    return [(int(c["start"]), int(c["end"])) for c in get_speech_timestamps(audio, options)]


def _quietest(audio: Samples, start: int, end: int) -> int:
    """The middle of the quietest tenth of a second in ``audio[start:end]``."""
    frames = (end - start) // QUIET_FRAME
    if frames < 1:
        return end
    window = audio[start : start + frames * QUIET_FRAME].reshape(frames, QUIET_FRAME)
    return start + int(np.argmin(np.square(window).mean(axis=1))) * QUIET_FRAME + QUIET_FRAME // 2


def _cut(audio: Samples, regions: list[Region], limit: int, search: int) -> int:
    """Where a full buffer ends its block: inside the longest pause that overlaps the last ``search`` samples
    before ``limit`` (at its middle, or as near it as the window allows), else (speech without a pause, or no
    detection) at the quietest moment there."""
    low = limit - search
    edges = [0, *(x for region in regions for x in region), len(audio)]
    pauses = [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if a < limit and b > low and b > a]
    if pauses:
        a, b = max(pauses, key=lambda p: (min(p[1], limit) - max(p[0], low), p[0]))
        return min(max((a + b) // 2, low, a), limit)
    return _quietest(audio, low, limit)


@dataclass
class Block:
    offset: int  # of its first sample, on the media's timeline
    audio: Samples
    speech: list[Region]  # within the block; the whole block when detection is off


def blocks(reader: PcmReader, vad: bool) -> Iterator[Block]:
    """The stream as consecutive blocks of at most ``BLOCK_SECONDS``, each ending in a pause."""
    limit = int(BLOCK_SECONDS * SAMPLE_RATE)
    search = min(int(SEARCH_SECONDS * SAMPLE_RATE), limit // 2)
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0
    ended = False
    while not ended or len(buffer):
        while not ended and len(buffer) <= limit:
            chunk = reader.read(min(int(READ_SECONDS * SAMPLE_RATE), limit))[0]
            ended = chunk.size == 0
            buffer = np.concatenate([buffer, chunk])
        regions = speech_regions(buffer) if vad else [(0, len(buffer))]
        end = len(buffer) if len(buffer) <= limit else _cut(buffer, regions, limit, search)
        inside = [(a, min(b, end)) for a, b in regions if a < end]
        yield Block(offset, buffer[:end], inside if vad else [(0, end)])
        buffer = buffer[end:]
        offset += end


class SpeechMap:
    """Joins a block's speech regions (pauses up to ``keep`` samples stay in) and maps times in the joined
    audio back to seconds on the media's timeline."""

    def __init__(self, block: Block, keep: int = int(KEEP_SILENCE_SECONDS * SAMPLE_RATE)) -> None:
        merged: list[list[int]] = []
        for start, end in block.speech:
            if merged and start - merged[-1][1] <= keep:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        # Silence at the block's edges is a pause too: up to ``keep`` of it stays (Whisper learnt on windows
        # that start and end in silence; cut away, short Mandarin clips lose characters).
        if merged and merged[0][0] <= keep:
            merged[0][0] = 0
        if merged and len(block.audio) - merged[-1][1] <= keep:
            merged[-1][1] = len(block.audio)
        self.audio = (
            np.concatenate([block.audio[a:b] for a, b in merged]) if merged else np.zeros(0, dtype=np.float32)
        )
        self._joined_starts: list[int] = []
        self._sources: list[int] = []
        position = 0
        for start, end in merged:
            self._joined_starts.append(position)
            self._sources.append(block.offset + start)
            position += end - start

    def seconds(self, joined: float) -> float:
        """A time in seconds within the joined audio, on the media's timeline."""
        sample = joined * SAMPLE_RATE
        index = max(0, bisect.bisect_right(self._joined_starts, sample) - 1)
        return (self._sources[index] + sample - self._joined_starts[index]) / SAMPLE_RATE
