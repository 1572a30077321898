"""Demucs separation: vocals and accompaniment (the sum of every other stem).

The input streams through Demucs' own overlap-add (``workers.engines.demucs_stream``), so memory stays flat
whatever the duration, and every stem block goes straight to its encoders: a FLAC copy for the stem cache and
the file the order asked for, at the input's sample rate and channel count (mono in, mono out). Stems are cached
by content hash and model, so an ``extract-music`` after a ``track-separation`` of the same bytes only encodes.
"""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from workers.engines import EngineTask, Progress, file_digest, stem_cache_dir
from workers.engines.audio import Audio, PcmReader, PcmWriter, transcode
from workers.engines.models import demucs_repo, missing_model
from yinzi.errors import OrderFailed
from yinzi.settings import Settings
from yinzi.store import ResultFile

STEMS = ("vocals", "accompaniment")
OUTPUTS = {
    "track-separation": ("vocals", "accompaniment"),
    "extract-voice": ("vocals",),
    "extract-music": ("accompaniment",),
}
SEPARATION_SHARE = 0.99  # of the progress bar; the encoders finishing and the cache filling are the rest
READ_SECONDS = 30  # a block of the pass that measures the track's level


def level(path: Path, rate: int, channels: int) -> tuple[float, float]:
    """Mean and standard deviation of the track's mono mix, as demucs.separate normalises by them."""
    count, total, squares = 0, 0.0, 0.0
    with PcmReader(path, rate, channels) as reader:
        while (block := reader.read(READ_SECONDS * rate)).shape[1]:
            mono = block.mean(axis=0, dtype=np.float64)
            count += mono.size
            total += float(mono.sum())
            squares += float(np.square(mono).sum())
    if count == 0:
        raise OrderFailed("unsupported media: no audio could be decoded")
    mean = total / count
    variance = max(0.0, squares - count * mean * mean) / max(1, count - 1)
    return mean, variance**0.5 + 1e-8


class SeparationEngine:
    def __init__(self, settings: Settings) -> None:
        self._repo = demucs_repo(settings.models_dir)
        self._models: dict[str, Any] = {}

    def _model(self, name: str) -> Any:
        if name not in self._models:
            if not (self._repo / f"{name}.yaml").is_file():
                raise missing_model("Demucs", name, self._repo)
            from demucs.pretrained import get_model

            self._models[name] = get_model(name, repo=self._repo)
        return self._models[name]

    def run(self, task: EngineTask, progress: Progress) -> list[ResultFile]:
        fmt = task.options.get("format", "mp3")
        digest = task.input_sha256 or file_digest(task.input_path)
        stems = task.cache_dir / stem_cache_dir(digest, task.model)
        outputs = {stem: task.out_dir / f"{stem}.{fmt}" for stem in OUTPUTS[task.order_type]}
        if all((stems / f"{stem}.flac").is_file() for stem in STEMS):
            for stem, path in outputs.items():
                transcode(stems / f"{stem}.flac", path, fmt, task.sample_rate, task.channels)
        else:
            self._separate(task, stems, outputs, progress)
        progress(1.0)
        return [ResultFile(path.name, stem) for stem, path in outputs.items()]

    def _separate(self, task: EngineTask, target: Path, outputs: dict[str, Path], progress: Progress) -> None:
        from workers.engines.demucs_stream import random_shift, separate_stream

        model = self._model(task.model)
        rate, channels = model.samplerate, model.audio_channels
        vocals_index = model.sources.index("vocals")
        mean, std = level(task.input_path, rate, channels)
        expected = max(1.0, task.duration * rate)

        partial = target.parent / f"{target.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            with ExitStack() as stack:
                reader = stack.enter_context(PcmReader(task.input_path, rate, channels))
                writers: dict[str, list[PcmWriter]] = {stem: [] for stem in STEMS}
                for stem in STEMS:
                    flac = PcmWriter(partial / f"{stem}.flac", "flac", rate, channels, rate, channels)
                    writers[stem].append(stack.enter_context(flac))
                for stem, path in outputs.items():
                    fmt = path.suffix[1:]
                    out = PcmWriter(path, fmt, rate, channels, task.sample_rate, task.channels)
                    writers[stem].append(stack.enter_context(out))

                def read(frames: int) -> Audio:
                    block: Audio = (reader.read(frames) - mean) / std
                    return block

                done = 0
                for block in separate_stream(model, read, random_shift(model)):
                    block = block * std + mean
                    vocals = block[vocals_index]
                    for stem, audio in (("vocals", vocals), ("accompaniment", block.sum(axis=0) - vocals)):
                        for writer in writers[stem]:
                            writer.write(audio)
                    done += block.shape[-1]
                    progress(SEPARATION_SHARE * min(done / expected, 1.0))
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
