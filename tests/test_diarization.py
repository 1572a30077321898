"""Speaker diarization on conversations assembled from real speech (English and Mandarin), the DER scorer on
hand-computed cases, labelling transcript items, and the memory bound."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.conversations import (
    ENGLISH,
    MANDARIN,
    Conversation,
    Floats,
    assemble,
    clip,
    diarize,
    read_wav,
    split,
)
from tests.support.speech_eval import EVAL, RATE
from workers.engines import diarization
from workers.engines.diarization import Diarizer, Turn, assign, diarization_error_rate
from yinzi.errors import OrderFailed


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """As in an engine process, which sets its thread count: torch's default of one thread per core, on cores
    other processes keep busy, runs the encoder's small batches 40 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def speaker_count(turns: list[Turn]) -> int:
    return len({t.speaker for t in turns})


def english(folder: Path, seed: int = 0, snr_db: float | None = None) -> Conversation:
    """Two speakers taking turns with their five Harvard sentences each, about 30 s."""
    voices = [[read_wav(clip(ENGLISH / f"spk{s}_snt{i}.wav")) for i in range(1, 6)] for s in (1, 2)]
    return assemble(folder, [(voices[i % 2][i // 2], i % 2) for i in range(10)], seed=seed, snr_db=snr_db)


def mandarin_voices() -> list[list[Floats]]:
    """Three Mandarin voices in pieces of 1.6-5 s: an AISHELL-1 speaker (S0764, two utterances), a WenetSpeech
    meeting speaker, and the speaker of mini_zh's two news clips. Their mean embeddings are 0.51-0.71 alike,
    the same voice's clips 0.87."""
    aishell = [*split(read_wav(clip(MANDARIN / "BAC009S0764W0121.wav")), 2)]
    aishell += split(read_wav(clip(MANDARIN / "BAC009S0764W0122.wav")), 2)
    meeting = split(read_wav(clip(MANDARIN / "TEST_MEETING_T0000000001_S00000.wav")), 4)
    news = split(read_wav(clip(EVAL / "triton_asr_client/mini_zh/long.wav")), 2)
    news.append(read_wav(clip(EVAL / "triton_asr_client/mini_zh/mid.wav")))
    return [aishell, meeting, news]


def mandarin(folder: Path, speakers: int, snr_db: float | None = None) -> Conversation:
    voices = mandarin_voices()[:speakers]
    order = [(voice, i) for i in range(4) for voice in range(speakers) if i < len(voices[voice])]
    return assemble(folder, [(voices[v][i], v) for v, i in order], snr_db=snr_db)


@pytest.mark.parametrize("seed", [0, 1])
def test_english_two_speakers(tmp_path: Path, seed: int) -> None:
    conv = english(tmp_path, seed)
    diarizer = diarize(Diarizer(), conv.path, block_seconds=10.0)
    found = diarizer.turns()
    assert speaker_count(found) == 2
    assert diarization_error_rate(conv.truth, found) <= 0.15
    assert diarization_error_rate(conv.truth, diarizer.turns(speakers=2)) <= 0.15
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))
    assert found[0].speaker == 0


def test_english_under_a_noise_floor(tmp_path: Path) -> None:
    # Pauses are no longer digital silence: the regions' pauses must be found against the noise.
    conv = english(tmp_path, snr_db=20)
    found = diarize(Diarizer(), conv.path, block_seconds=60.0).turns()
    assert speaker_count(found) == 2
    assert diarization_error_rate(conv.truth, found) <= 0.15


@pytest.mark.parametrize(("speakers", "snr_db"), [(2, None), (3, None), (3, 20)])
def test_mandarin_conversations(tmp_path: Path, speakers: int, snr_db: float | None) -> None:
    conv = mandarin(tmp_path, speakers, snr_db)
    diarizer = diarize(Diarizer(), conv.path, block_seconds=10.0)
    found = diarizer.turns()
    assert speaker_count(found) == speakers
    # Measured: 0.0 (2 voices), 0.05 (3), 0.08 (3 under noise 20 dB down).
    assert diarization_error_rate(conv.truth, found) <= 0.15
    assert diarization_error_rate(conv.truth, diarizer.turns(speakers=speakers)) <= 0.15


def test_voices_say_who_spoke_in_another_recording(tmp_path: Path) -> None:
    """Each speaker's voice from a three-voice conversation, against the voice from a recording of the same
    speaker's other utterances. Measured: 0.86-0.88 for the same voice, 0.43-0.62 for another."""
    voices = mandarin_voices()
    (tmp_path / "conversation").mkdir()
    conv = assemble(tmp_path / "conversation", [(voices[v][i], v) for i in range(2) for v in range(3)])
    found = diarize(Diarizer(), conv.path).speakers()
    assert [t.speaker for t in found.turns] == [t.speaker for t in conv.truth]  # voice v is speaker v
    assert sorted(found.voices) == [0, 1, 2]
    for v in range(3):
        (tmp_path / str(v)).mkdir()
        probe = assemble(tmp_path / str(v), [(audio, 0) for audio in voices[v][2:]])
        (voice,) = diarize(Diarizer(), probe.path).speakers(speakers=1).voices.values()
        assert voice.shape == (256,) and abs(float(np.linalg.norm(voice)) - 1) < 1e-5
        alike = [float(voice @ found.voices[k]) for k in range(3)]
        assert alike[v] >= 0.8 and max(a for k, a in enumerate(alike) if k != v) <= 0.7, (v, alike)


@pytest.mark.parametrize("voice", ["english", "meeting", "aishell"])
def test_one_speaker_is_one_speaker(tmp_path: Path, voice: str) -> None:
    if voice == "english":
        clips = [read_wav(clip(ENGLISH / f"spk1_snt{i}.wav")) for i in range(1, 6)]
    else:
        clips = mandarin_voices()[1 if voice == "meeting" else 0]
    conv = assemble(tmp_path, [(audio, 0) for audio in clips])
    found = diarize(Diarizer(), conv.path).turns()
    assert speaker_count(found) == 1
    assert diarization_error_rate(conv.truth, found) <= 0.05


def test_silence_and_nothing_give_no_turns() -> None:
    diarizer = Diarizer()
    assert diarizer.turns() == []
    diarizer.add(np.zeros(10 * RATE, np.float32), 0.0, [])
    assert diarizer.turns() == []
    assert diarizer.turns(speakers=2) == []


def test_very_short_speech_is_one_speaker() -> None:
    audio = read_wav(clip(ENGLISH / "spk2_snt2.wav"))
    diarizer = Diarizer()
    diarizer.add(audio, 5.0, [(0.2, 0.6)])  # 0.4 s: too short for an embedding, still speech
    assert diarizer.turns() == [Turn(5.2, 5.6, 0)]
    diarizer.reset()
    diarizer.add(audio, 0.0, [(0.1, 1.2)])
    assert diarizer.turns(speakers=3) == [Turn(0.1, 1.2, 0)]


def test_memory_stays_bounded() -> None:
    rng = np.random.default_rng(0)
    voice = read_wav(clip(ENGLISH / "spk1_snt1.wav"))[: 2 * RATE]
    diarizer = Diarizer()
    block = np.zeros(3 * RATE, np.float32)
    for i in range(100):
        block[RATE // 2 : RATE // 2 + len(voice)] = voice * rng.uniform(0.5, 1.0)
        diarizer.add(block, 3.0 * i, [(0.5, 2.5)])
    windows = 2 * 100  # a 2 s region: a window from its start, one flush with its end
    assert len(diarizer._windows) == windows
    assert sum(e.shape[0] for e in diarizer._embeddings) == windows
    assert diarizer.stored_bytes == windows * (256 * 4 + 32)  # embeddings and their times, no audio
    assert all(e.dtype == np.float32 and e.shape[1] == 256 for e in diarizer._embeddings)
    turns = diarizer.turns()
    assert speaker_count(turns) == 1
    assert len(turns) == 100 and turns[-1].end == 299.5


def test_assign_labels_by_overlap_then_nearest() -> None:
    turns = [Turn(0.0, 2.0, 0), Turn(2.5, 5.0, 1), Turn(6.0, 7.0, 0)]
    items: list[dict[str, object]] = [
        {"start": 0.1, "end": 0.5, "word": "a"},
        {"start": 1.5, "end": 3.5, "text": "mostly the second"},
        {"start": 1.0, "end": 2.9, "text": "mostly the first"},
        {"start": 5.2, "end": 5.4},  # in a gap: nearer the second turn
        {"start": 5.7, "end": 5.8},  # nearer the third
        {"start": 9.0, "end": 9.5},  # past the end
        {"text": "no times"},
    ]
    assign(items, turns)
    assert [item.get("speaker") for item in items] == ["S1", "S2", "S1", "S2", "S1", "S1", None]
    untouched: list[dict[str, object]] = [{"start": 0.0, "end": 1.0}]
    assign(untouched, [])
    assert "speaker" not in untouched[0]


def test_der_hand_computed() -> None:
    ref = [Turn(0.0, 10.0, 0), Turn(10.0, 20.0, 1)]
    der = diarization_error_rate
    assert der(ref, ref, collar=0.0) == 0.0
    assert der(ref, [Turn(0.0, 10.0, 1), Turn(10.0, 20.0, 0)], collar=0.0) == 0.0  # names do not matter
    assert der(ref, [Turn(0.0, 10.0, 0)], collar=0.0) == pytest.approx(0.5)  # half missed
    assert der(ref, [], collar=0.0) == pytest.approx(1.0)
    assert der(ref, [Turn(0.0, 20.0, 0)], collar=0.0) == pytest.approx(0.5)  # half confused
    assert der(ref, [*ref, Turn(25.0, 30.0, 1)], collar=0.0) == pytest.approx(0.25)  # false alarm
    assert der(ref, [Turn(0.0, 10.0, 0), Turn(10.0, 20.0, 2)], collar=0.0) == 0.0  # any numbering
    # A 0.5 s late boundary lies inside a 0.5 s collar, not inside a 0.25 s one.
    late = [Turn(0.0, 10.5, 0), Turn(10.5, 20.0, 1)]
    assert der(ref, late, collar=0.5) == 0.0
    assert der(ref, late, collar=0.25) == pytest.approx(0.25 / 19.0)
    # Overlapping reference speech counts per speaker: 12 s of speech, the overlap's second voice missed.
    overlap = [Turn(0.0, 6.0, 0), Turn(4.0, 10.0, 1)]
    assert der(overlap, [Turn(0.0, 5.0, 0), Turn(5.0, 10.0, 1)], collar=0.0) == pytest.approx(2 / 12)
    assert der([], [], collar=0.0) == 0.0


def test_the_encoder_front_end_is_librosas_mel() -> None:
    # Peaks of rows 0 and 20 of librosa 0.11's filters.mel(sr=16000, n_fft=400, n_mels=40), which resemblyzer
    # uses; the whole bank, the mel and the embeddings were compared with librosa's and resemblyzer's (1e-7).
    bank = diarization.mel_filterbank()
    assert bank.shape == (40, 201)
    assert float(bank[0].max()) == pytest.approx(0.012404521, rel=1e-5)
    assert float(bank[20].max()) == pytest.approx(0.0071919174, rel=1e-5)
    assert diarization.mel_spectrogram(np.zeros(RATE, np.float32)).shape == (101, 40)


def test_missing_weights_name_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diarization.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        OrderFailed,
        match=r"resemblyzer==0\.1\.4.*make setup, or .*pip install --no-deps resemblyzer==0\.1\.4",
    ):
        diarization.SpeakerEncoder()
