"""Who spoke when: speaker turns for a transcript (``stuff.diarize``; ``stuff.speakers`` when the caller knows
how many there are).

The transcription engine feeds the media block by block with the voiced regions its VAD found. Each voiced
region is cut into short overlapping windows and every window becomes one voice embedding from the GE2E
speaker encoder that the ``resemblyzer`` package ships (``resemblyzer/pretrained.pt``). Only the embeddings
and their times are kept, never the audio, so memory grows by about a kilobyte per window however long the
media is. At the end the windows are clustered on cosine similarity (spectral clustering; the number of
speakers, when not given, from the largest eigengap of the affinity's Laplacian), each window speaks for the
stretch around its centre, and neighbouring stretches of one speaker merge into turns. Each speaker's voice is
the unit-length mean of its windows' embeddings: two voices (from this media or another) are as alike as their
dot product.

The encoder's forward pass and its mel front end are written here rather than imported: ``resemblyzer``
itself imports librosa and webrtcvad at import time and uses a scipy module that scipy has deprecated. They
compute what ``resemblyzer.VoiceEncoder`` and ``resemblyzer.wav_to_mel_spectrogram`` compute (librosa's
Slaney mel filterbank on a centred, zero-padded Hann STFT, power 2, not logarithmic).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from yinzi.errors import OrderFailed

Floats = npt.NDArray[np.float32]

SAMPLE_RATE = 16_000
# The encoder's front end (resemblyzer.hparams): 25 ms Hann window, 10 ms hop, 40 mel channels.
N_FFT = 400
HOP = 160
N_MELS = 40
HIDDEN = 256
LAYERS = 3
# resemblyzer raises quiet speech to -30 dBFS before embedding it; the mel is not logarithmic, so level matters.
TARGET_DBFS = -30.0
INT16_MAX = 2**15 - 1

WINDOW_SECONDS = 1.5
STEP_SECONDS = 0.75
# A voiced stretch shorter than this carries too little voice for an embedding of its own; it takes the
# speaker of the nearest window instead.
MIN_WINDOW_SECONDS = 0.5
# Shorter windows (a region's short end, a block's edge) hear too little to vote on who the speakers are;
# they go to the speaker whose voice they are most like.
VOTE_SECONDS = 1.0
# With the count unknown, a cluster of one window is no evidence of another voice: an odd window (a laugh, a
# cough, noise) joins the voice it is most like. A turn of 2.25 s or more has two windows.
MIN_CLUSTER = 2
BATCH = 64
MAX_SPEAKERS = 8
# Two clusters whose centroids are at least this similar are one voice: cosine of mean GE2E embeddings of
# 1.5 s windows. Measured on English and Mandarin conversations, clean and with noise 30 and 20 dB down:
# one voice split in two 0.74-0.93, two voices 0.51-0.71.
SAME_SPEAKER = 0.72
# The eigengap's affinity keeps, per window, its strongest NEIGHBOURS fraction of the others.
NEIGHBOURS = 0.2
# A VAD bridges short silences (Silero's default in faster-whisper bridges 2 s), so one voiced region often
# holds several turns. A window that straddles a pause hears two voices; cutting regions where the level stays
# near the region's floor for PAUSE_SECONDS keeps windows inside one turn. "Near": below the floor plus
# PAUSE_FRACTION of the span from floor (5th percentile of 20 ms frame levels) to loud speech (95th), and only
# where that span is at least PAUSE_MIN_DB (else speech and noise are too alike to tell apart by level).
PAUSE_SECONDS = 0.25
PAUSE_FRACTION = 0.3
PAUSE_MIN_DB = 15.0
PAUSE_FRAME = 0.02
# Stretches of one speaker closer than this merge into one turn.
JOIN_GAP = 0.05

PACKAGE = "resemblyzer==0.1.4"
INSTALL = f"make setup, or pip install scikit-learn and pip install --no-deps {PACKAGE}"


@dataclass(frozen=True)
class Turn:
    start: float  # seconds on the media's timeline
    end: float
    speaker: int  # 0-based, numbered in order of first appearance


@dataclass(frozen=True)
class Speakers:
    turns: list[Turn]
    # speaker number -> voice (HIDDEN values, unit length). A speaker heard only in stretches too short to
    # embed has none.
    voices: dict[int, Floats]


def _weights_path() -> Path:
    try:
        spec = importlib.util.find_spec("resemblyzer")
    except (ImportError, ValueError):
        spec = None
    # find_spec locates the package without running its __init__ (which needs librosa and webrtcvad).
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / "pretrained.pt"
        if path.is_file():
            return path
    raise OrderFailed(
        f"speaker diarization needs the speaker encoder weights from {PACKAGE}: install them with {INSTALL}"
    )


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Slaney's scale (librosa's default): linear below 1 kHz, logarithmic above.
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


def mel_filterbank() -> Floats:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40): triangles on Slaney's scale, area-normalised."""
    fft_freqs = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array(SAMPLE_RATE / 2.0))), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


_HANN = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic
_MEL = mel_filterbank()


def mel_spectrogram(wav: Floats) -> Floats:
    """Power mel spectrogram, shape (frames, 40), frames = 1 + len(wav) // 160 (centred frames)."""
    padded = np.pad(wav.astype(np.float32, copy=False), N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=1)) ** 2
    return (power.astype(np.float32) @ _MEL.T).astype(np.float32)


def normalize_volume(wav: Floats) -> Floats:
    """Raises quiet audio to -30 dBFS RMS and leaves louder audio as it is, as resemblyzer does."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    if rms <= 0.0:
        return wav
    change = TARGET_DBFS - 20 * np.log10(rms)
    if change <= 0:
        return wav
    return (wav * np.float32(10 ** (change / 20))).astype(np.float32)


class SpeakerEncoder:
    """resemblyzer's VoiceEncoder forward pass: 3-layer LSTM 40->256, last hidden state of the top layer,
    Linear 256->256, ReLU, L2 norm."""

    def __init__(self, weights: Path | None = None) -> None:
        try:
            import torch
        except ModuleNotFoundError:
            raise OrderFailed(
                f"speaker diarization needs torch: install the engines with {INSTALL}"
            ) from None
        self._torch = torch
        path = weights or _weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        self._lstm = torch.nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self._linear = torch.nn.Linear(HIDDEN, HIDDEN)
        self._lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self._linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self._lstm.eval()
        self._linear.eval()

    def embed_mels(self, mels: Floats) -> Floats:
        """(batch, frames, 40) mel spectrograms -> (batch, 256) unit-length embeddings."""
        torch = self._torch
        with torch.inference_mode():
            _, (hidden, _) = self._lstm(torch.from_numpy(np.ascontiguousarray(mels, dtype=np.float32)))
            raw = torch.relu(self._linear(hidden[-1]))
            out = raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)
        result: Floats = out.numpy().astype(np.float32)
        return result

    def embed(self, wavs: Sequence[Floats]) -> Floats:
        """One embedding per waveform; waveforms of equal length share a forward pass."""
        out = np.zeros((len(wavs), HIDDEN), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, wav in enumerate(wavs):
            by_length.setdefault(len(wav), []).append(i)
        for indices in by_length.values():
            for first in range(0, len(indices), BATCH):
                chunk = indices[first : first + BATCH]
                mels = np.stack([mel_spectrogram(normalize_volume(wavs[i])) for i in chunk])
                out[chunk] = self.embed_mels(mels)
        return out


def _split_at_pauses(wav: Floats, start: float, end: float) -> list[tuple[float, float]]:
    """The voiced region start..end (seconds in `wav`) less its pauses."""
    step = round(PAUSE_FRAME * SAMPLE_RATE)
    first = round(start * SAMPLE_RATE)
    frames = (round(end * SAMPLE_RATE) - first) // step
    if end - start < 2 * MIN_WINDOW_SECONDS + PAUSE_SECONDS or frames < 1:
        return [(start, end)]
    chunk = wav[first : first + frames * step].reshape(frames, step)
    level = 10 * np.log10(np.mean(np.square(chunk, dtype=np.float64), axis=1) + 1e-12)
    floor, loud = np.percentile(level, [5, 95])
    if loud - floor < PAUSE_MIN_DB:
        return [(start, end)]
    quiet = level < floor + PAUSE_FRACTION * (loud - floor)
    run = round(PAUSE_SECONDS / PAUSE_FRAME)
    pieces: list[tuple[float, float]] = []
    piece_start = 0
    i = 0
    while i < frames:
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < frames and quiet[j]:
            j += 1
        if j - i >= run:
            if i > piece_start:
                pieces.append((piece_start, i))
            piece_start = j
        i = j
    if frames > piece_start:
        pieces.append((piece_start, frames))
    bounds = [(start + a * PAUSE_FRAME, start + b * PAUSE_FRAME) for a, b in pieces]
    if bounds:  # the region's tail beyond the last whole frame belongs to its last piece
        bounds[-1] = (bounds[-1][0], end if pieces[-1][1] == frames else bounds[-1][1])
    return bounds


@functools.cache
def _shared_encoder() -> SpeakerEncoder:
    """One encoder per process, however many diarizers the engine makes."""
    return SpeakerEncoder()


@dataclass(frozen=True)
class _Window:
    start: float  # the audio the embedding heard
    end: float
    owns_from: float  # the stretch this window speaks for (windows overlap; each point has one owner)
    owns_to: float


def _windows(start: float, end: float) -> list[tuple[float, float]]:
    """Window spans over one voiced region: WINDOW_SECONDS long every STEP_SECONDS, the last one flush with the
    region's end so its tail is heard too; a region shorter than a window is one window."""
    if end - start <= WINDOW_SECONDS:
        return [(start, end)]
    count = int(np.ceil((end - start - WINDOW_SECONDS) / STEP_SECONDS)) + 1
    starts = [start + i * STEP_SECONDS for i in range(count - 1)] + [end - WINDOW_SECONDS]
    return [(s, s + WINDOW_SECONDS) for s in starts]


class Diarizer:
    def __init__(self) -> None:
        try:
            import sklearn  # noqa: F401
        except ModuleNotFoundError:
            raise OrderFailed(f"speaker diarization needs scikit-learn: install it with {INSTALL}") from None
        self._encoder = _shared_encoder()
        self._embeddings: list[Floats] = []  # one (n, 256) array per block
        self._windows: list[_Window] = []
        self._short: list[tuple[float, float]] = []  # voiced stretches too short for an embedding

    def reset(self) -> None:
        """Forgets everything added, for the next file; the encoder stays loaded."""
        self._embeddings.clear()
        self._windows.clear()
        self._short.clear()

    @property
    def stored_bytes(self) -> int:
        """What the added blocks left behind: embeddings and their times, no audio."""
        return sum(e.nbytes for e in self._embeddings) + 32 * (len(self._windows) + len(self._short))

    def add(self, audio: npt.NDArray[Any], offset: float, speech: Sequence[tuple[float, float]]) -> None:
        """One block of 16 kHz mono audio starting `offset` s into the media, with its voiced regions in seconds
        from the block's start. Blocks come in time order; only their windows' embeddings and times are kept."""
        wav = np.asarray(audio, dtype=np.float32).reshape(-1)
        length = len(wav) / SAMPLE_RATE
        pieces: list[Floats] = []
        regions = [
            piece
            for raw_start, raw_end in sorted(speech)
            for piece in _split_at_pauses(wav, max(0.0, float(raw_start)), min(length, float(raw_end)))
        ]
        for start, end in regions:
            if end - start < MIN_WINDOW_SECONDS:
                if end > start:
                    self._short.append((offset + start, offset + end))
                continue
            spans = _windows(start, end)
            centres = [(s + e) / 2 for s, e in spans]
            for i, (s, e) in enumerate(spans):
                owns_from = start if i == 0 else (centres[i - 1] + centres[i]) / 2
                owns_to = end if i == len(spans) - 1 else (centres[i] + centres[i + 1]) / 2
                self._windows.append(_Window(offset + s, offset + e, offset + owns_from, offset + owns_to))
                pieces.append(wav[round(s * SAMPLE_RATE) : round(e * SAMPLE_RATE)])
        if pieces:
            self._embeddings.append(self._encoder.embed(pieces))

    def turns(self, speakers: int | None = None) -> list[Turn]:
        """Turns over everything added, non-overlapping and in time order; the number of speakers is estimated
        when `speakers` is None. No speech gives no turns."""
        return self.speakers(speakers).turns

    def speakers(self, speakers: int | None = None) -> Speakers:
        """The turns, and the voice of each speaker in them."""
        if not self._windows:
            return Speakers(_join([(s, e, 0) for s, e in self._short])[0], {})
        embeddings = np.concatenate(self._embeddings)
        votes = np.array([w.end - w.start >= VOTE_SECONDS for w in self._windows])
        if votes.sum() < 2:
            votes[:] = True
        labels = np.zeros(len(embeddings), dtype=np.int64)
        labels[votes] = cluster(embeddings[votes], speakers)
        if not votes.all():
            centroids = _centroids(embeddings[votes], labels[votes])
            labels[~votes] = np.argmax(embeddings[~votes] @ centroids.T, axis=1)
        stretches = [(w.owns_from, w.owns_to, int(k)) for w, k in zip(self._windows, labels, strict=True)]
        centres = np.array([(w.start + w.end) / 2 for w in self._windows])
        for s, e in self._short:
            nearest = int(np.argmin(np.abs(centres - (s + e) / 2)))
            stretches.append((s, e, int(labels[nearest])))
        turns, numbers = _join(stretches)
        voices = _centroids(embeddings, labels)
        return Speakers(turns, {number: voices[label] for label, number in numbers.items()})


def _join(stretches: list[tuple[float, float, int]]) -> tuple[list[Turn], dict[int, int]]:
    """Sorted, merged turns with speakers renumbered in order of first appearance; and that numbering (a label
    whose every stretch was overlapped away has no number)."""
    merged: list[list[Any]] = []
    for start, end, speaker in sorted(stretches):
        if merged and merged[-1][2] == speaker and start - merged[-1][1] <= JOIN_GAP:
            merged[-1][1] = max(merged[-1][1], end)
        elif merged and start < merged[-1][1]:
            # Overlapping stretches of two voices: the earlier one ends where the later one starts.
            merged[-1][1] = start
            merged.append([start, end, speaker])
        else:
            merged.append([start, end, speaker])
    order: dict[int, int] = {}
    turns = []
    for start, end, speaker in merged:
        if end - start <= 0:
            continue
        number = order.setdefault(speaker, len(order))
        turns.append(Turn(round(float(start), 3), round(float(end), 3), number))
    return turns, order


def _affinity(embeddings: Floats) -> npt.NDArray[np.float64]:
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    similarity: npt.NDArray[np.float64] = np.clip(
        unit.astype(np.float64) @ unit.T.astype(np.float64), 0.0, 1.0
    )
    return similarity


def _centroids(embeddings: Floats, labels: npt.NDArray[np.int64]) -> Floats:
    """Unit-length mean embedding of each label 0..max(labels) (labels are dense)."""
    centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in range(int(labels.max()) + 1)])
    unit: Floats = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return unit


def _dense(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    dense: npt.NDArray[np.int64] = np.unique(labels, return_inverse=True)[1].astype(np.int64)
    return dense


def _merge_similar(embeddings: Floats, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Joins clusters of fewer than MIN_CLUSTER windows, then clusters whose centroids are one voice by
    SAME_SPEAKER, always the most similar pair first."""
    labels = _dense(labels)
    while labels.max() > 0:
        centroids = _centroids(embeddings, labels)
        similarity = centroids @ centroids.T
        np.fill_diagonal(similarity, -np.inf)
        sizes = np.bincount(labels)
        if sizes.min() < MIN_CLUSTER:
            a = int(np.argmin(sizes))
            b = int(np.argmax(similarity[a]))
        else:
            a, b = (int(x) for x in np.unravel_index(int(np.argmax(similarity)), similarity.shape))
            if similarity[a, b] < SAME_SPEAKER:
                break
        labels = _dense(np.where(labels == a, b, labels))
    return labels


def _eigengap_count(affinity: npt.NDArray[np.float64], most: int) -> int:
    """The number of clusters at the largest gap between consecutive eigenvalues of the normalised Laplacian
    of the affinity, each row kept to its strongest neighbours so that one voice forms one connected block."""
    n = len(affinity)
    keep = max(2, int(np.ceil(NEIGHBOURS * n)))
    pruned = np.zeros_like(affinity)
    strongest = np.argsort(-affinity, axis=1)[:, :keep]
    rows = np.arange(n)[:, None]
    pruned[rows, strongest] = affinity[rows, strongest]
    pruned = np.maximum(pruned, pruned.T)
    scale = 1.0 / np.sqrt(np.maximum(pruned.sum(axis=1), 1e-12))
    laplacian = np.eye(n) - scale[:, None] * pruned * scale[None, :]
    eigenvalues = np.linalg.eigvalsh(laplacian)[: most + 1]
    return int(np.argmax(np.diff(eigenvalues))) + 1


def _spectral(affinity: npt.NDArray[np.float64], count: int) -> npt.NDArray[np.int64]:
    from sklearn.cluster import SpectralClustering

    if count < 2:
        return np.zeros(len(affinity), dtype=np.int64)
    model = SpectralClustering(
        n_clusters=count, affinity="precomputed", random_state=0, assign_labels="cluster_qr"
    )
    labels: npt.NDArray[np.int64] = model.fit_predict(affinity).astype(np.int64)
    return labels


def cluster(embeddings: Floats, speakers: int | None = None) -> npt.NDArray[np.int64]:
    """A speaker number for each embedding; `speakers` fixes how many there are.

    Unknown count: the eigengap's count (at least two) over-splits rather than under-splits; then clusters
    whose centroids are one voice by SAME_SPEAKER are joined, down to one when everything is one voice, and
    the affinity is clustered again into that many."""
    if speakers is not None and speakers < 1:
        raise ValueError(f"speakers must be at least 1, got {speakers}")
    n = len(embeddings)
    if n < 2 or speakers == 1:
        return np.zeros(n, dtype=np.int64)
    affinity = _affinity(embeddings)
    if speakers is not None:
        return _spectral(affinity, min(speakers, n))
    first = max(2, _eigengap_count(affinity, min(MAX_SPEAKERS, n - 1)))
    labels = _merge_similar(embeddings, _spectral(affinity, first))
    count = len(np.unique(labels))
    return labels if count in (1, first) else _spectral(affinity, count)


def speaker_label(speaker: int) -> str:
    """How transcripts name a speaker: S1, S2, ..."""
    return f"S{speaker + 1}"


def assign(items: list[dict[str, Any]], turns: list[Turn]) -> None:
    """Labels each item that has "start" and "end" with the speaker ("S1", "S2", ...) it overlaps most, or the
    nearest one in time when it overlaps none."""
    if not turns:
        return
    for item in items:
        if "start" not in item or "end" not in item:
            continue
        start, end = float(item["start"]), float(item["end"])
        overlap: dict[int, float] = {}
        for turn in turns:
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        if overlap:
            speaker = max(overlap, key=lambda k: overlap[k])
        else:
            speaker = min(turns, key=lambda t: max(t.start - end, start - t.end)).speaker
        item["speaker"] = speaker_label(speaker)


def _activity(turns: list[Turn], times: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(len(times), speakers) matrix: 1 where that speaker talks at that time."""
    speakers = max((t.speaker for t in turns), default=-1) + 1
    active = np.zeros((len(times), speakers))
    for turn in turns:
        active[(times >= turn.start) & (times < turn.end), turn.speaker] = 1.0
    return active


def diarization_error_rate(reference: list[Turn], hypothesis: list[Turn], collar: float = 0.25) -> float:
    """(missed + false alarm + speaker confusion) / reference speech, in time, as NIST's md-eval scores it:
    hypothesis speakers mapped one-to-one onto reference speakers to maximise their shared time, nothing
    scored within `collar` seconds of a reference turn's start or end, overlapping speech counted per
    speaker. 0.0 when there is no reference speech and no hypothesis speech to score."""
    from scipy.optimize import linear_sum_assignment

    edges = {t.start for t in reference} | {t.end for t in reference}
    cuts = {x for t in hypothesis for x in (t.start, t.end)} | edges
    cuts |= {e + side * collar for e in edges for side in (-1, 1)}
    bounds = np.array(sorted(cuts), dtype=np.float64)
    if len(bounds) < 2:
        return 0.0
    mids = (bounds[:-1] + bounds[1:]) / 2
    lengths = np.diff(bounds)
    if edges and collar > 0:
        near = np.abs(mids[:, None] - np.array(sorted(edges))[None, :]).min(axis=1) < collar
        lengths = np.where(near, 0.0, lengths)
    ref = _activity(reference, mids)
    hyp = _activity(hypothesis, mids)
    n_ref, n_hyp = ref.sum(axis=1), hyp.sum(axis=1)
    total = float(lengths @ n_ref)
    correct = 0.0
    if ref.shape[1] and hyp.shape[1]:
        # Seconds each reference speaker shares with each hypothesis speaker.
        shared = (ref * lengths[:, None]).T @ hyp
        rows, cols = linear_sum_assignment(-shared)
        correct = float(shared[rows, cols].sum())
    # Per scored stretch: missed max(0, ref - hyp), false alarm max(0, hyp - ref), confusion min(ref, hyp) -
    # correct; summed over time, these add to this.
    errors = float(lengths @ np.maximum(n_ref, n_hyp)) - correct
    if total == 0.0:
        return 0.0 if errors == 0.0 else float("inf")
    return max(0.0, errors / total)  # max: float rounding of a perfect score
