"""The two Whisper implementations behind one small interface: faster-whisper (CTranslate2) and openai-whisper.

Each loads one model once and then decodes 16 kHz mono blocks handed to it by the transcription engine, which
owns everything around decoding (blocks, voice activity, timelines, scripts, subtitles, speakers) so both
backends give the same files. Segments come back as plain dicts with times relative to the block:

    {"start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob",
     "words": [{"word", "start", "end", "probability"}]}
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from workers.engines.models import (
    FASTER_WHISPER,
    OPENAI_WHISPER,
    missing_model,
    whisper_model_file,
)
from yinzi.errors import OrderFailed
from yinzi.settings import WHISPER_ENGINES

Samples = npt.NDArray[np.float32]  # 16 kHz mono
Segment = dict[str, Any]

# Whisper's default fallback: decode again, hotter, when the text repeats itself or is unlikely.
TEMPERATURE_STEP = 0.2
# Above temperature 0 Whisper samples. openai-whisper reseeds torch before every block, so the same audio gives the
# same text whatever the engine process decoded before it. CTranslate2 has no seed per call (its sampling threads
# keep their own generators), so faster-whisper's sampled passes may differ from run to run.
SAMPLING_SEED = 0
GREEDY = 1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoding:
    language: str
    prompt: str | None
    beam_size: int  # 1: greedy
    # "translate": into English (multilingual models; English-only ones just transcribe)
    task: str = "transcribe"
    temperature: float = 0.0  # where the fallback schedule starts

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The fallback schedule, as the ``whisper`` command makes it: from ``temperature`` up to 1 in 0.2 steps
        (0, 0.2, ... 1 by default)."""
        steps = math.floor((1.0 - self.temperature) / TEMPERATURE_STEP + 1e-9)
        return tuple(round(self.temperature + TEMPERATURE_STEP * n, 4) for n in range(steps + 1))


class WhisperBackend(Protocol):
    def detect_language(self, audio: Samples) -> tuple[str, float]:
        """The language spoken in the first 30 s of ``audio`` and its probability."""
        ...

    def transcribe(self, audio: Samples, decoding: Decoding) -> list[Segment]: ...


def load_backend(engine: str, model_dir: Path, name: str, threads: int) -> WhisperBackend:
    if engine == FASTER_WHISPER:
        return FasterWhisper(model_dir, name, threads)
    if engine == OPENAI_WHISPER:
        return OpenAIWhisper(model_dir, name)
    raise OrderFailed(
        f"unknown Whisper engine {engine!r}: YINZI_WHISPER_ENGINE is one of {', '.join(WHISPER_ENGINES)}"
    )


def _rounded(value: float) -> float:
    return round(float(value), 4)


class FasterWhisper:
    """CTranslate2: int8 on a CPU, float16 on a GPU."""

    def __init__(self, model_dir: Path, name: str, threads: int) -> None:
        weights = whisper_model_file(model_dir, FASTER_WHISPER, name)
        if not weights.is_file():
            raise missing_model("Whisper", name, weights.parent.parent)
        import ctranslate2
        from faster_whisper import WhisperModel

        cuda = ctranslate2.get_cuda_device_count() > 0
        self._model = WhisperModel(
            str(weights.parent),
            device="cuda" if cuda else "cpu",
            compute_type="float16" if cuda else "int8",
            cpu_threads=threads,
        )

    def detect_language(self, audio: Samples) -> tuple[str, float]:
        if not self._model.model.is_multilingual:
            return "en", 1.0
        language, probability, _ = self._model.detect_language(audio)
        return str(language), float(probability)

    def transcribe(self, audio: Samples, decoding: Decoding) -> list[Segment]:
        segments, _ = self._model.transcribe(
            audio,
            language=decoding.language,
            task=decoding.task,
            initial_prompt=decoding.prompt,
            beam_size=decoding.beam_size,
            temperature=list(decoding.temperatures),
            word_timestamps=True,
            vad_filter=False,  # the engine finds the speech itself, the same way for both backends
        )
        return [
            {
                "start": _rounded(s.start),
                "end": _rounded(s.end),
                "text": s.text,
                "tokens": list(s.tokens),
                "temperature": _rounded(s.temperature or 0.0),
                "avg_logprob": _rounded(s.avg_logprob),
                "compression_ratio": _rounded(s.compression_ratio),
                "no_speech_prob": _rounded(s.no_speech_prob),
                "words": [
                    {"word": w.word, "start": w.start, "end": w.end, "probability": _rounded(w.probability)}
                    for w in s.words or []
                ],
            }
            for s in segments
        ]


class OpenAIWhisper:
    """openai-whisper, float32 on a CPU, float16 on a GPU. Word timings follow the model's alignment heads:
    the official ones for official names, else those saved in the checkpoint (``yinzi models add`` keeps a
    CTranslate2 folder's), else whisper's default (every head of the upper half of the decoder)."""

    def __init__(self, model_dir: Path, name: str) -> None:
        path = whisper_model_file(model_dir, OPENAI_WHISPER, name)
        if not path.is_file():
            raise missing_model("Whisper", name, path.parent)
        import torch
        import whisper
        from whisper.model import ModelDimensions, Whisper

        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = Whisper(ModelDimensions(**checkpoint["dims"]))
        model.load_state_dict(checkpoint["model_state_dict"])
        if name in whisper._ALIGNMENT_HEADS:
            model.set_alignment_heads(whisper._ALIGNMENT_HEADS[name])
        elif checkpoint.get("alignment_heads"):
            dims = model.dims
            heads = torch.zeros(dims.n_text_layer, dims.n_text_head, dtype=torch.bool)
            for layer, head in checkpoint["alignment_heads"]:
                heads[layer, head] = True
            model.register_buffer("alignment_heads", heads.to_sparse(), persistent=False)
        self._model = model.to(self._device)

    def detect_language(self, audio: Samples) -> tuple[str, float]:
        import whisper

        if not self._model.is_multilingual:
            return "en", 1.0
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), self._model.dims.n_mels).to(
            self._device
        )
        _, probs = self._model.detect_language(mel)
        language = max(probs, key=probs.get)
        return str(language), float(probs[language])

    def transcribe(self, audio: Samples, decoding: Decoding) -> list[Segment]:
        beam = decoding.beam_size if decoding.beam_size > GREEDY else None
        options: dict[str, Any] = {
            "language": decoding.language,
            "task": decoding.task,
            "initial_prompt": decoding.prompt,
            "beam_size": beam,
            "best_of": 5 if beam else None,
            "word_timestamps": True,
            "fp16": self._device == "cuda",
            "verbose": None,
        }
        import torch

        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(SAMPLING_SEED)
            # The engine needs word times of a translation too (captions, finding speech left undecoded); whisper
            # warns on every block that they are rougher than a transcription's, which is known and accepted.
            warnings.filterwarnings("ignore", "Word-level timestamps on translations", UserWarning)
            try:
                result = self._model.transcribe(audio, temperature=decoding.temperatures, **options)
            except ValueError as exc:
                # The temperature fallback samples from the logits; when they come out NaN (seen on near-silent or
                # very short audio, and on random weights) torch refuses to sample. Greedy decoding takes no sample.
                if "Expected parameter logits" not in str(exc):
                    raise
                log.warning("sampling failed on NaN logits; decoding this block greedily instead")
                result = self._model.transcribe(
                    audio, temperature=0.0, **{**options, "beam_size": None, "best_of": None}
                )
        return [
            {
                "start": _rounded(s["start"]),
                "end": _rounded(s["end"]),
                "text": s["text"],
                "tokens": list(s["tokens"]),
                "temperature": _rounded(s["temperature"]),
                "avg_logprob": _rounded(s["avg_logprob"]),
                "compression_ratio": _rounded(s["compression_ratio"]),
                "no_speech_prob": _rounded(s["no_speech_prob"]),
                "words": [
                    {
                        "word": w["word"],
                        "start": w["start"],
                        "end": w["end"],
                        "probability": _rounded(w["probability"]),
                    }
                    for w in s.get("words", [])
                ],
            }
            for s in result["segments"]
        ]
