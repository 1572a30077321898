"""Whisper transcription of audio or video: caption.srt, transcript.txt and transcript.json.

One engine for both Whisper implementations (``YINZI_WHISPER_ENGINE``, see ``whisper_backends``); everything
around decoding happens here, so both give the same files. The media streams through in blocks that end in
pauses (``speech``), reduced to their speech when voice activity detection is on (the default), each decoded
with beam search (size 5, as the ``whisper`` command) unless the order asks for greedy decoding. The language
is detected once, on the first speech, as Whisper itself does. Times are put back on the media's timeline,
never going back and never past its end; Chinese comes out in Simplified characters unless ``stuff.chinese``
is ``traditional``; with ``stuff.diarize`` every segment and word gets a speaker. With ``stuff.splitChannels``
each audio channel is transcribed on its own and every segment and word gets its ``channel`` (0-based).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.engines import EngineTask, Progress
from workers.engines.audio import PcmReader
from workers.engines.diarization import Diarizer, Speakers, Turn, assign, speaker_label
from workers.engines.speech import SAMPLE_RATE, Block, SpeechMap, blocks
from workers.engines.subtitles import Shape, captions, to_srt
from workers.engines.whisper_backends import Decoding, Segment, WhisperBackend, load_backend
from yinzi.errors import OrderFailed
from yinzi.settings import Settings
from yinzi.store import ResultFile

BEAM_SIZE = 5
# splitChannels decodes the media once per channel: a stereo call, not a 7.1 film mix.
MAX_SPLIT_CHANNELS = 8
RECOVER_SECONDS = 1.0
# A voice in transcript.json: its values to this many decimals, plenty for dot products to three places.
VOICE_DECIMALS = 4


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


def _by_speaker(segment: dict[str, Any]) -> list[dict[str, Any]]:
    """A segment whose words two speakers share, as one segment per run of one speaker's words."""
    words = segment["words"]
    runs: list[list[dict[str, Any]]] = []
    for word in words:
        if runs and runs[-1][-1].get("speaker") == word.get("speaker"):
            runs[-1].append(word)
        else:
            runs.append([word])
    if len(runs) < 2:
        return [segment]
    return [
        {
            **segment,
            "start": run[0]["start"],
            "end": run[-1]["end"],
            "text": "".join(w["word"] for w in run).strip(),
            "tokens": [],  # the decoder's tokens belong to the whole segment
            "speaker": run[0]["speaker"],
            "words": run,
        }
        for run in runs
    ]


def _on_timeline(segment: Segment, speech: SpeechMap) -> Segment:
    """A decoded segment with its times (and its words') on the media's timeline."""
    return {
        **segment,
        "start": speech.seconds(segment["start"]),
        "end": speech.seconds(segment["end"]),
        "words": [
            {**word, "start": speech.seconds(word["start"]), "end": speech.seconds(word["end"])}
            for word in segment["words"]
        ],
    }


def _decode(backend: WhisperBackend, block: Block, speech: SpeechMap, decoding: Decoding) -> list[Segment]:
    """A block's segments on the media's timeline (``speech``: the block's speech, joined). Whisper sometimes ends
    a window early and never comes back for the speech after it (seen at the end of a block): a voiced stretch of
    ``RECOVER_SECONDS`` or more in which no word was decoded is decoded again on its own."""
    if not speech.audio.size:
        return []
    segments = [_on_timeline(s, speech) for s in backend.transcribe(speech.audio, decoding)]
    heard = [(w["start"] + w["end"]) / 2 for s in segments for w in s["words"]]
    for first, last in block.speech:
        start, end = (block.offset + first) / SAMPLE_RATE, (block.offset + last) / SAMPLE_RATE
        if end - start >= RECOVER_SECONDS and not any(start <= t <= end for t in heard):
            piece = SpeechMap(Block(block.offset + first, block.audio[first:last], [(0, last - first)]))
            segments += [_on_timeline(s, piece) for s in backend.transcribe(piece.audio, decoding)]
    return sorted(segments, key=lambda s: float(s["start"]))


def _labels(segment: dict[str, Any]) -> list[str]:
    """What a line of transcript.txt starts with: the channel (``ch0``, ``ch1``) and the speaker, when known."""
    return [
        *([f"ch{segment['channel']}"] if "channel" in segment else []),
        *([segment["speaker"]] if "speaker" in segment else []),
    ]


class _Placer:
    """Puts segments on the media's timeline for good (never going back, never past the end), in the asked-for
    Chinese script; drops empty ones."""

    def __init__(self, duration: float, script: str) -> None:
        self._segments, self._words = Timeline(duration), Timeline(duration)
        self._script = script

    def __call__(self, segment: Segment, seek: float, language: str) -> Segment | None:
        text = in_script(segment["text"].strip(), language, self._script)
        if not text:
            return None  # silence: no caption
        words = [
            {
                **word,
                "word": in_script(word["word"], language, self._script),
                "start": self._words.place(word["start"]),
                "end": self._words.place(word["end"]),
            }
            for word in segment["words"]
        ]
        return {
            "id": 0,  # numbered once the whole transcript is known
            **segment,
            "seek": round(seek, 3),
            "start": self._segments.place(segment["start"]),
            "end": self._segments.place(segment["end"]),
            "text": text,
            "words": words,
        }


@dataclass
class _Heard:
    """The language, named by the order or detected once on the first speech heard (in any channel)."""

    language: str | None
    probability: float | None = None  # of the detected language; none when the order names it


class TranscriptionEngine:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._backends: dict[str, WhisperBackend] = {}

    def _backend(self, name: str) -> WhisperBackend:
        if name not in self._backends:
            settings = self._settings
            self._backends[name] = load_backend(
                settings.whisper_engine_name, settings.models_dir, name, settings.threads_per_engine
            )
        return self._backends[name]

    def run(self, task: EngineTask, progress: Progress) -> list[ResultFile]:
        # With splitChannels each channel is transcribed on its own (a call centre records each party on one),
        # and every segment and word says its channel; otherwise the channels are mixed down.
        channels: list[int | None] = [None]
        if task.options.get("splitChannels") and task.channels > 1:
            if task.channels > MAX_SPLIT_CHANNELS:
                raise OrderFailed(
                    f"the media has {task.channels} audio channels; splitChannels takes at most {MAX_SPLIT_CHANNELS}"
                )
            channels = list(range(task.channels))
        heard = _Heard(task.options.get("language"))
        segments: list[dict[str, Any]] = []
        speakers = Speakers([], {})
        for index, channel in enumerate(channels):

            def overall(fraction: float, done: int = index) -> None:
                progress(min((done + fraction) / len(channels), 0.99))

            # Speakers are numbered across channels: channel 1's first speaker follows channel 0's last.
            first_speaker = max((t.speaker for t in speakers.turns), default=-1) + 1
            found, found_speakers = self._transcribe(task, channel, heard, overall, first_speaker)
            speakers = Speakers(
                speakers.turns + found_speakers.turns, {**speakers.voices, **found_speakers.voices}
            )
            segments += found
        segments.sort(key=lambda s: (float(s["start"]), s.get("channel", 0)))
        for number, segment in enumerate(segments):
            segment["id"] = number
        self._write(task, segments, heard.language, heard.probability, speakers)
        progress(1.0)
        return [
            ResultFile("caption.srt", "caption"),
            ResultFile("transcript.txt", "text"),
            ResultFile("transcript.json", "json"),
        ]

    def _transcribe(
        self, task: EngineTask, channel: int | None, heard: _Heard, progress: Progress, first_speaker: int
    ) -> tuple[list[dict[str, Any]], Speakers]:
        """One pass over the media (one channel of it, or all mixed): its segments on the media's timeline,
        with their speakers (numbered from ``first_speaker``), and those speakers' turns and voices when the
        order asks."""
        options = task.options
        backend = self._backend(task.model)
        place = _Placer(task.duration, "zh-hant" if options.get("chinese") == "traditional" else "zh-hans")
        beam_size = int(options.get("beamSize") or BEAM_SIZE)
        whisper_task = str(options.get("task") or "transcribe")
        temperature = float(options.get("temperature") or 0.0)
        diarizer = Diarizer() if options.get("diarize") else None
        segments: list[dict[str, Any]] = []
        total = max(task.duration * SAMPLE_RATE, 1.0)

        with PcmReader(task.input_path, SAMPLE_RATE, 1, channel) as reader:
            for block in blocks(reader, vad=options.get("vad", True)):
                if diarizer is not None:
                    speech_seconds = [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in block.speech]
                    diarizer.add(block.audio, block.offset / SAMPLE_RATE, speech_seconds)
                speech = SpeechMap(block)
                if heard.language is None and speech.audio.size:
                    heard.language, heard.probability = backend.detect_language(speech.audio)
                if heard.language is not None:
                    decoding = Decoding(
                        heard.language, options.get("prompt"), beam_size, whisper_task, temperature
                    )
                    for segment in _decode(backend, block, speech, decoding):
                        placed = place(segment, block.offset / SAMPLE_RATE, heard.language)
                        if placed is not None:
                            segments.append(placed)
                progress(min((block.offset + len(block.audio)) / total, 0.99))

        speakers = Speakers([], {})
        if diarizer is not None:
            found = diarizer.speakers(options.get("speakers"))
            speakers = Speakers(
                [Turn(t.start, t.end, t.speaker + first_speaker) for t in found.turns],
                {number + first_speaker: voice for number, voice in found.voices.items()},
            )
            assign([word for seg in segments for word in seg["words"]], speakers.turns)
            assign(segments, speakers.turns)
            segments = [part for seg in segments for part in _by_speaker(seg)]
        if channel is not None:
            for segment in segments:
                segment["channel"] = channel
                for word in segment["words"]:
                    word["channel"] = channel
        return segments, speakers

    def _write(
        self,
        task: EngineTask,
        segments: list[dict[str, Any]],
        language: str | None,
        probability: float | None,
        speakers: Speakers,
    ) -> None:
        out: Path = task.out_dir
        lines = ["".join(f"[{label}] " for label in _labels(s)) + s["text"] for s in segments]
        transcript = {
            "language": language,
            "language_probability": None if probability is None else round(probability, 4),
            "duration": round(task.duration, 3),
            "text": "\n".join(s["text"] for s in segments),
            "speakers": [speaker_label(n) for n in sorted({t.speaker for t in speakers.turns})],
            "turns": [
                {"start": round(t.start, 3), "end": round(t.end, 3), "speaker": speaker_label(t.speaker)}
                for t in speakers.turns
            ],
            "voices": {
                speaker_label(n): [round(float(x), VOICE_DECIMALS) for x in voice]
                for n, voice in sorted(speakers.voices.items())
            },
            "segments": [{k: v for k, v in s.items() if k != "words"} for s in segments],
            "words": [word for s in segments for word in s["words"]],
        }
        # A translation is English whatever was spoken: its captions are shaped as English.
        written = "en" if task.options.get("task") == "translate" else language
        shape = Shape.for_order(task.options, written)
        (out / "caption.srt").write_text(to_srt(captions(segments, shape)), encoding="utf-8")
        (out / "transcript.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (out / "transcript.json").write_text(
            json.dumps(transcript, ensure_ascii=False, indent=1), encoding="utf-8"
        )
