"""AI analysis of transcripts (workers/analysis.py) against a local stand-in for an OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.llm import MODEL, StandInLlm
from tests.support.processes import free_port
from workers.analysis import INSTRUCTION_CHARS, analyse, split, write_analysis
from yinzi.doctor import _language_model
from yinzi.llm import NOT_CONFIGURED
from yinzi.settings import Settings

PROMPT = "List the decisions made"


def transcript(lines: int) -> str:
    return "\n".join(
        f"[S{n % 2 + 1}] Line {n}: we agreed to move item {n} to next week." for n in range(lines)
    )


async def test_a_short_transcript_is_answered_in_one_request(llm: StandInLlm, llm_url: str) -> None:
    settings = Settings(llm_url=llm_url)
    result = await analyse(settings, PROMPT, transcript(3))
    assert result == {"model": MODEL, "prompt": PROMPT, "text": "answer 1", "error": None, "requests": 1}
    (only,) = llm.user_messages()
    assert only.startswith(PROMPT) and transcript(3) in only


async def test_a_long_transcript_is_summarised_in_parts_then_as_a_whole(
    llm: StandInLlm, llm_url: str
) -> None:
    context = 2000
    settings = Settings(
        llm_url=llm_url, llm_context_chars=context, llm_model="chosen-model", llm_api_key="k1"
    )
    text = transcript(80)  # about 4,800 characters
    result = await analyse(settings, PROMPT, text)
    budget = context - len(PROMPT) - INSTRUCTION_CHARS
    parts = split(text, budget)
    assert len(parts) >= 3 and all(len(p) <= budget for p in parts)
    assert result["requests"] == len(parts) + 1 and result["text"] == f"answer {len(parts) + 1}"
    assert result["model"] == "chosen-model" and {b["model"] for b in llm.completions} == {"chosen-model"}
    assert set(llm.authorizations) == {"Bearer k1"}  # and no /models call: the model is configured
    *part_requests, whole = llm.user_messages()
    for number, (request, part) in enumerate(zip(part_requests, parts, strict=True), 1):
        assert f"part {number} of {len(parts)}" in request and part in request and PROMPT in request
    # Every line went to exactly one part, in order.
    assert "\n".join(parts) == text
    assert whole.startswith(PROMPT) and "summaries of its parts" in whole
    assert all(f"[{n}/{len(parts)}] answer {n}" in whole for n in range(1, len(parts) + 1))


def test_split_cuts_at_line_ends_and_only_cuts_a_line_longer_than_a_part() -> None:
    assert split("aa\nbb\ncc", 5) == ["aa\nbb", "cc"]
    assert split("abcdefghij\nk", 4) == ["abcd", "efgh", "ij\nk"]
    assert split("", 10) == []


async def test_a_failing_model_leaves_the_reason_and_no_text(llm: StandInLlm, llm_url: str) -> None:
    llm.fail_status = 500
    result = await analyse(Settings(llm_url=llm_url), PROMPT, transcript(3))
    assert result["text"] is None
    assert "answered HTTP 500" in result["error"] and "the model crashed" in result["error"]


async def test_no_model_or_an_unreachable_one_says_why() -> None:
    assert (await analyse(Settings(), PROMPT, transcript(1)))["error"] == NOT_CONFIGURED
    gone = await analyse(Settings(llm_url=f"http://127.0.0.1:{free_port()}/v1"), PROMPT, transcript(1))
    assert gone["text"] is None and "could not be reached" in gone["error"]


async def test_an_empty_transcript_asks_nothing(llm: StandInLlm, llm_url: str) -> None:
    result = await analyse(Settings(llm_url=llm_url), PROMPT, "\n")
    assert "no speech was recognised" in result["error"] and llm.completions == []


async def test_the_answer_is_written_as_analysis_json(llm: StandInLlm, llm_url: str, tmp_path: Path) -> None:
    (tmp_path / "transcript.txt").write_text("[S1] 我们决定下周开会。\n", encoding="utf-8")
    written = await write_analysis(Settings(llm_url=llm_url), "总结", tmp_path)
    assert written.name == "analysis.json"
    saved = json.loads((tmp_path / "analysis.json").read_text(encoding="utf-8"))
    assert saved["text"] == "answer 1" and saved["prompt"] == "总结"
    assert "我们决定下周开会。" in llm.user_messages()[0]


async def test_the_doctor_checks_the_language_model(llm: StandInLlm, llm_url: str) -> None:
    assert (await _language_model(Settings())).warning
    ok = await _language_model(Settings(llm_url=llm_url))
    assert ok.ok and MODEL in ok.detail
    wrong = await _language_model(Settings(llm_url=llm_url, llm_model="absent"))
    assert not wrong.ok and "YINZI_LLM_MODEL" in wrong.fix
    llm.fail_status = 500
    failing = await _language_model(Settings(llm_url=llm_url))
    assert not failing.ok and "HTTP 500" in failing.detail
