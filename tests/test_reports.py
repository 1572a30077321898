"""PDF reports of transcripts (workers/reports.py): what they say, in which scripts, and how a missing font fails."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pypdf
import pytest

from workers.reports import Paragraph, check_font, paragraphs, render
from yinzi.doctor import _report_font
from yinzi.errors import OrderFailed
from yinzi.settings import Settings

FONT = Settings().report_font


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def segment(start: float, end: float, text: str, speaker: str | None = None) -> dict[str, Any]:
    return {"start": start, "end": end, "text": text, **({"speaker": speaker} if speaker else {})}


MEETING = {
    "language": "zh",
    "duration": 125.5,
    "speakers": ["S1", "S2"],
    "segments": [
        segment(0.0, 3.2, "大家好，今天我们讨论预算。", "S1"),
        segment(3.4, 5.0, "先看上半年的销售。", "S1"),
        segment(5.5, 9.0, "好的，我先说一下。", "S2"),
        segment(70.0, 73.0, "第二个问题是时间表。", "S2"),
    ],
}


def test_a_chinese_report_names_the_file_and_keeps_every_word() -> None:
    analysis = {"model": "m", "prompt": "关键要点", "text": "预算和时间表。", "error": None}
    text = pdf_text(render(FONT, MEETING, "会议记录.mp3", analysis, time.time()))
    for expected in (
        "会议记录.mp3",
        "Duration: 00:02:05",
        "Language: zh",
        "Speakers: S1, S2",
        "[00:00:00]  S1",
        "大家好，今天我们讨论预算。先看上半年的销售。",  # one speaker, no pause: one paragraph, no space
        "[00:00:05]  S2",
        "[00:01:10]  S2",  # the same speaker after a long pause: a new paragraph
        "第二个问题是时间表。",
        "Request: 关键要点",
        "预算和时间表。",
    ):
        assert expected in text, (expected, text)


def test_russian_and_english_render_with_the_same_font() -> None:
    transcript = {
        "language": "ru",
        "duration": 4.0,
        "speakers": [],
        "segments": [segment(0.0, 2.0, "Привет, это запись встречи."), segment(2.1, 4.0, "Hello again.")],
    }
    failed = {"model": None, "prompt": "Итоги", "text": None, "error": "no language model is configured"}
    text = pdf_text(render(FONT, transcript, "встреча.mp3", failed, time.time()))
    assert "Привет, это запись встречи. Hello again." in text  # spaced languages join with a space
    assert "Not available: no language model is configured" in text
    assert "Speakers" not in text  # not diarized


def test_a_report_without_speech_says_so() -> None:
    transcript = {"language": None, "duration": 2.0, "speakers": [], "segments": []}
    text = pdf_text(render(FONT, transcript, None, None, time.time()))
    assert "No speech was recognised." in text and "AI analysis" not in text


def test_paragraphs_end_at_a_new_speaker_a_pause_or_a_long_text() -> None:
    long = "x" * 400
    found = paragraphs(
        [
            segment(0, 1, "a", "S1"),
            segment(1.5, 2, "b", "S1"),
            segment(2.1, 3, "c", "S2"),
            segment(6, 7, "d", "S2"),
            segment(7, 8, long, "S2"),
            segment(8, 9, long, "S2"),
            segment(9, 10, " ", "S2"),
        ],
        "en",
    )
    assert found == [
        Paragraph(0, 2, "S1", "a b"),
        Paragraph(2.1, 3, "S2", "c"),
        Paragraph(6, 8, "S2", f"d {long}"),
        Paragraph(8, 9, "S2", long),
    ]


# fontTools leaves the file of a font it cannot parse open; nothing of ours to close.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_missing_font_fails_the_order_saying_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(OrderFailed) as missing:
        check_font(tmp_path / "nothing.ttf")
    assert "YINZI_REPORT_FONT" in missing.value.reason and "fonts-wqy-microhei" in missing.value.reason
    not_a_font = tmp_path / "font.ttf"
    not_a_font.write_bytes(b"not a font at all" * 100)
    check_font(not_a_font)  # there; whether it is a font shows when it is used
    with pytest.raises(OrderFailed, match="cannot be used"):
        render(not_a_font, MEETING, "a.mp3", None, time.time())


def test_the_doctor_checks_the_report_font(tmp_path: Path) -> None:
    assert _report_font(Settings()).ok
    missing = _report_font(Settings(report_font=tmp_path / "none.ttc"))
    assert not missing.ok and "fonts-wqy-microhei" in missing.fix
