"""Captions shaped for reading: lines no longer than a number of characters, a number of lines per caption, and
no caption on screen longer than a number of seconds. Built from word timings, never across a segment (a
segment is a sentence or a clause) or a change of speaker. CJK text is measured in characters, like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Common subtitle practice: about 42 characters a line in alphabetic scripts, 16 in Chinese and Japanese.
LINE_CHARS = 42
CJK_LINE_CHARS = 16
CJK_LANGUAGES = frozenset({"zh", "yue", "ja", "ko"})
LINES = 2
CAPTION_SECONDS = 7.0


@dataclass(frozen=True)
class Shape:
    line_chars: int
    lines: int = LINES
    seconds: float = CAPTION_SECONDS

    @classmethod
    def for_order(cls, options: dict[str, Any], language: str | None) -> Shape:
        default_chars = CJK_LINE_CHARS if language in CJK_LANGUAGES else LINE_CHARS
        return cls(
            line_chars=int(options.get("maxLineChars") or default_chars),
            lines=int(options.get("maxLines") or LINES),
            seconds=float(options.get("maxCaptionSeconds") or CAPTION_SECONDS),
        )


@dataclass
class Caption:
    start: float
    end: float
    speaker: str | None
    lines: list[str] = field(default_factory=lambda: [""])


def _lines_of(text: str, width: int) -> list[str]:
    """Text without word timings, wrapped at spaces where it has them, else at ``width`` characters."""
    lines = [""]
    for piece in (
        text.split(" ") if " " in text else [text[i : i + width] for i in range(0, len(text), width)]
    ):
        joined = f"{lines[-1]} {piece}".strip() if " " in text else lines[-1] + piece
        if lines[-1] and len(joined) > width:
            lines.append(piece)
        else:
            lines[-1] = joined
    return lines


def captions(segments: list[dict[str, Any]], shape: Shape) -> list[Caption]:
    """Segments (each with its ``words``) as captions of the given shape."""
    out: list[Caption] = []
    for segment in segments:
        words = segment.get("words") or []
        if not words:
            lines = _lines_of(segment["text"], shape.line_chars)
            for i in range(0, len(lines), shape.lines):
                out.append(
                    Caption(
                        segment["start"], segment["end"], segment.get("speaker"), lines[i : i + shape.lines]
                    )
                )
            continue
        current: Caption | None = None
        for word in words:
            text = word["word"]
            speaker = word.get("speaker", segment.get("speaker"))
            if (
                current is None
                or speaker != current.speaker
                or (word["end"] - current.start > shape.seconds and current.lines != [""])
            ):
                current = Caption(word["start"], word["end"], speaker)
                out.append(current)
            candidate = (current.lines[-1] + text).lstrip()
            if current.lines[-1] and len(candidate) > shape.line_chars:
                if len(current.lines) == shape.lines:
                    current = Caption(word["start"], word["end"], speaker)
                    out.append(current)
                else:
                    current.lines.append("")
                candidate = text.lstrip()
            current.lines[-1] = candidate
            current.end = word["end"]
    return [c for c in out if any(line.strip() for line in c.lines)]


def srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


def to_srt(items: list[Caption]) -> str:
    blocks = []
    for i, caption in enumerate(items, 1):
        lines = [line.strip() for line in caption.lines if line.strip()]
        if caption.speaker:
            lines[0] = f"[{caption.speaker}] {lines[0]}"
        blocks.append(
            f"{i}\n{srt_time(caption.start)} --> {srt_time(caption.end)}\n" + "\n".join(lines) + "\n"
        )
    return "\n".join(blocks)


def srt_to_vtt(srt: str) -> str:
    """The same captions as WebVTT: a header, cues without their numbers, a dot before the milliseconds."""
    cues = []
    for block in srt.strip().split("\n\n"):
        lines = block.strip().split("\n")
        timing = next((i for i, line in enumerate(lines) if " --> " in line), None)
        if timing is None:
            continue
        start, _, end = lines[timing].partition(" --> ")
        cues.append(
            f"{start.replace(',', '.')} --> {end.replace(',', '.')}\n" + "\n".join(lines[timing + 1 :])
        )
    return "WEBVTT\n\n" + "".join(cue + "\n\n" for cue in cues)
