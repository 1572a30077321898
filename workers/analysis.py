"""AI analysis of a transcript (extract-text's ``stuff.aiPrompt``): the transcript and the customer's prompt go to
the operator's language model (yinzi/llm.py), and the answer is written as ``analysis.json``.

A transcript longer than the model's context (``YINZI_LLM_CONTEXT_CHARS``) is cut into parts at line ends; each
part is summarised with the prompt in mind, and the summaries, in order, are answered as a whole (again in parts
if they are still too long). A failing or absent model never fails the transcription: ``analysis.json`` then has
no text and says why in ``error``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from yinzi.llm import LlmClient, LlmError, Message
from yinzi.settings import Settings
from yinzi.store import ResultFile

log = logging.getLogger(__name__)

ANALYSIS_FILE = "analysis.json"
# Room in the context for the instructions and the prompt around the transcript, in characters.
INSTRUCTION_CHARS = 600
# Parts smaller than this are too small to say anything about, whatever the setting says.
MIN_PART_CHARS = 500
# Rounds of summarising summaries before giving up on a model whose summaries do not get shorter.
MAX_ROUNDS = 4

SYSTEM = (
    "You analyse transcripts of recordings made by speech recognition, which may contain recognition errors. "
    "Do what the user asks about the recording. Answer in the language the user writes in."
)


def part_messages(prompt: str, part: str, number: int, parts: int) -> list[Message]:
    return [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": (
                f"This is part {number} of {parts} of a transcript too long to read at once. Summarise this "
                f"part, keeping every fact, name, number and decision the following request will need:\n"
                f"{prompt}\n\nPart {number} of {parts}:\n{part}"
            ),
        },
    ]


def whole_messages(prompt: str, text: str, summarised: bool) -> list[Message]:
    what = (
        "The transcript was too long to send whole; these are summaries of its parts, in order"
        if summarised
        else "The transcript"
    )
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{prompt}\n\n{what}:\n{text}"},
    ]


def split(text: str, size: int) -> list[str]:
    """``text`` in pieces of at most ``size`` characters, cut at line ends (a longer line is cut where it must)."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines():
        while len(line) > size:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:size])
            line = line[size:]
        if current and len(current) + 1 + len(line) > size:
            pieces.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current.strip():
        pieces.append(current)
    return pieces


async def answer(llm: LlmClient, prompt: str, transcript: str, context_chars: int) -> tuple[str, int]:
    """The model's answer to ``prompt`` about ``transcript``, and how many requests it took."""
    budget = max(context_chars - len(prompt) - INSTRUCTION_CHARS, MIN_PART_CHARS)
    text, summarised, requests = transcript, False, 0
    for _ in range(MAX_ROUNDS):
        if len(text) <= budget:
            return await llm.complete(whole_messages(prompt, text, summarised)), requests + 1
        parts = split(text, budget)
        summaries = []
        for number, part in enumerate(parts, 1):
            summaries.append(
                f"[{number}/{len(parts)}] {await llm.complete(part_messages(prompt, part, number, len(parts)))}"
            )
            requests += 1
        text, summarised = "\n\n".join(summaries), True
    raise LlmError(
        f"the transcript's summaries still exceed the model's context ({context_chars} characters, "
        f"YINZI_LLM_CONTEXT_CHARS) after {MAX_ROUNDS} rounds"
    )


async def analyse(settings: Settings, prompt: str, transcript: str) -> dict[str, Any]:
    """``analysis.json``'s content: the model, the prompt, the answer, and why there is none."""
    result: dict[str, Any] = {
        "model": settings.llm_model,
        "prompt": prompt,
        "text": None,
        "error": None,
        "requests": 0,
    }
    try:
        if not transcript.strip():
            raise LlmError("the transcript is empty: no speech was recognised")
        async with LlmClient.for_settings(settings) as llm:
            result["model"] = await llm.model()
            result["text"], result["requests"] = await answer(
                llm, prompt, transcript, settings.llm_context_chars
            )
    except LlmError as exc:
        log.warning("AI analysis: %s", exc.reason)
        result["error"] = exc.reason
    except Exception:  # the transcription stands whatever happens here
        log.exception("AI analysis failed")
        result["error"] = "internal error during the analysis"
    return result


async def write_analysis(settings: Settings, prompt: str, out_dir: Path) -> ResultFile:
    """Answers ``prompt`` about the transcript in ``out_dir`` (transcript.txt, speakers labelled)."""
    transcript = await asyncio.to_thread((out_dir / "transcript.txt").read_text, encoding="utf-8")
    result = await analyse(settings, prompt, transcript)
    content = json.dumps(result, ensure_ascii=False, indent=1)
    await asyncio.to_thread((out_dir / ANALYSIS_FILE).write_text, content, encoding="utf-8")
    return ResultFile(ANALYSIS_FILE, "analysis")
