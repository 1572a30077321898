"""PDF reports of transcripts (extract-text's ``stuff.report: "pdf"``): ``transcript.pdf``, made after
transcription from ``transcript.json`` (and ``analysis.json`` when the order asked for an AI analysis).

The report names the file, its duration, language and speakers, then gives the transcript in timestamped
paragraphs: a paragraph ends where the speaker changes, after a pause, or when it grows long. One font
(``YINZI_REPORT_FONT``, a TrueType/OpenType file) draws every script: the default, WenQuanYi Micro Hei, has
Latin, Cyrillic and CJK glyphs, so Chinese, Russian and English reports all render. Rendering is CPU work: call
:func:`write_report` in a thread.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import WrapMode, XPos, YPos

from yinzi.errors import OrderFailed
from yinzi.store import ResultFile

log = logging.getLogger(__name__)

REPORT_FILE = "transcript.pdf"
FONT_FAMILY = "report"
FONT_HINT = (
    "install it (Debian: apt-get install fonts-wqy-microhei) or set YINZI_REPORT_FONT to a TrueType or "
    "OpenType font that has the transcript's script"
)
# A new paragraph after a pause this long, or once a paragraph has this many characters.
PARAGRAPH_PAUSE_S = 2.0
PARAGRAPH_MAX_CHARS = 600
# Written without spaces between words: segments join without one, and lines may break at any character.
UNSPACED_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "km", "my", "bo"})
# Points.
TITLE_SIZE, HEADING_SIZE, BODY_SIZE, SMALL_SIZE = 18, 13, 11, 9
LINE_HEIGHT = 6.0  # mm, for body text
MUTED = (110, 110, 110)
BLACK = (0, 0, 0)


@dataclass(frozen=True)
class Paragraph:
    start: float
    end: float
    speaker: str | None
    text: str


def check_font(font: Path) -> None:
    """Before any work is spent on an order that wants a report: its font is there."""
    if not font.is_file():
        raise OrderFailed(
            f"PDF reports need the font {font} (YINZI_REPORT_FONT), which is missing: {FONT_HINT}"
        )


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def paragraphs(segments: list[dict[str, Any]], language: str | None) -> list[Paragraph]:
    joiner = "" if language in UNSPACED_LANGUAGES else " "
    out: list[Paragraph] = []
    for segment in segments:
        text = str(segment.get("text", "")).strip()
        if not text:
            continue
        start, end, speaker = float(segment["start"]), float(segment["end"]), segment.get("speaker")
        last = out[-1] if out else None
        if (
            last is not None
            and last.speaker == speaker
            and start - last.end < PARAGRAPH_PAUSE_S
            and len(last.text) + len(text) <= PARAGRAPH_MAX_CHARS
        ):
            out[-1] = Paragraph(last.start, end, speaker, last.text + joiner + text)
        else:
            out.append(Paragraph(start, end, speaker, text))
    return out


class _Document(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT_FAMILY, size=SMALL_SIZE)
        self.set_text_color(*MUTED)
        self.cell(0, 5, f"{self.page_no()} / {{nb}}", align="C")


def render(
    font: Path,
    transcript: dict[str, Any],
    file_name: str | None,
    analysis: dict[str, Any] | None,
    created: float,
) -> bytes:
    """The report as PDF bytes."""
    language = transcript.get("language")
    wrap = WrapMode.CHAR if language in UNSPACED_LANGUAGES else WrapMode.WORD
    pdf = _Document(format="A4")
    pdf.set_auto_page_break(True, margin=18)
    pdf.set_margins(18, 18, 18)
    try:
        pdf.add_font(FONT_FAMILY, "", str(font))
    except Exception as exc:  # fpdf2 and fontTools raise many kinds for a file that is not a usable font
        raise OrderFailed(
            f"the report font {font} (YINZI_REPORT_FONT) cannot be used ({exc}): {FONT_HINT}"
        ) from None
    title = file_name or "Transcript"
    pdf.set_title(title)
    pdf.set_creator("yinzi")
    pdf.set_creation_date(datetime.fromtimestamp(created, UTC))
    pdf.add_page()

    def block(
        text: str, size: float, colour: tuple[int, int, int] = BLACK, height: float = LINE_HEIGHT
    ) -> None:
        pdf.set_font(FONT_FAMILY, size=size)
        pdf.set_text_color(*colour)
        pdf.multi_cell(0, height, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT, wrapmode=wrap)

    block(title, TITLE_SIZE, height=9)
    pdf.ln(2)
    facts = [
        ("File", file_name or "-"),
        ("Duration", clock(float(transcript.get("duration") or 0))),
        ("Language", language or "-"),
    ]
    speakers = transcript.get("speakers") or []
    if speakers:
        facts.append(("Speakers", ", ".join(str(s) for s in speakers)))
    facts.append(("Created", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(created))))
    for name, value in facts:
        block(f"{name}: {value}", BODY_SIZE, MUTED)
    if analysis is not None:
        pdf.ln(4)
        block("AI analysis", HEADING_SIZE, height=8)
        block(f"Request: {analysis.get('prompt', '')}", BODY_SIZE, MUTED)
        if analysis.get("text"):
            block(str(analysis["text"]), BODY_SIZE)
        else:
            block(f"Not available: {analysis.get('error') or 'no answer'}", BODY_SIZE, MUTED)
    pdf.ln(4)
    block("Transcript", HEADING_SIZE, height=8)
    found = paragraphs(transcript.get("segments") or [], language)
    if not found:
        block("No speech was recognised.", BODY_SIZE, MUTED)
    for paragraph in found:
        pdf.ln(2)
        heading = f"[{clock(paragraph.start)}]"
        if paragraph.speaker:
            heading += f"  {paragraph.speaker}"
        block(heading, SMALL_SIZE, MUTED, height=5)
        block(paragraph.text, BODY_SIZE)
    return bytes(pdf.output())


def write_report(font: Path, out_dir: Path, file_name: str | None, created: float) -> ResultFile:
    """Writes ``transcript.pdf`` beside the transcript (and its analysis, when there is one) in ``out_dir``."""
    transcript = json.loads((out_dir / "transcript.json").read_text(encoding="utf-8"))
    analysis_path = out_dir / "analysis.json"
    analysis = json.loads(analysis_path.read_text(encoding="utf-8")) if analysis_path.is_file() else None
    (out_dir / REPORT_FILE).write_bytes(render(font, transcript, file_name, analysis, created))
    return ResultFile(REPORT_FILE, "report")
