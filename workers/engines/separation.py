"""Demucs separation: vocals and accompaniment (the sum of every other stem).

Memory stays flat whatever the duration: the input is decoded block by block, each block is separated with a
few seconds of context on both sides (so block edges sound like the middle), and the stems are encoded to disk
as they come. Stems are cached by content hash and model, so an ``extract-music`` after a
``track-separation`` of the same bytes reuses the work; each order then encodes only what it asked for, at the
input's sample rate and channel count (mono in, mono out).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from workers.engines import EngineTask, Progress
from workers.engines.audio import Audio, PcmReader, PcmWriter, transcode
from workers.engines.models import demucs_repo, missing_model
from yinzi.db import ResultFile
from yinzi.errors import OrderFailed

# Each block is separated with CONTEXT_SECONDS of audio on both sides, then trimmed: that much is computed
# twice, so blocks are long (about 5 % extra work) while memory stays far below the 3 GiB budget.
BLOCK_SECONDS = 120
CONTEXT_SECONDS = 3
STEMS = ("vocals", "accompaniment")
OUTPUTS = {
    "track-separation": ("vocals", "accompaniment"),
    "extract-voice": ("vocals",),
    "extract-music": ("accompaniment",),
}
SEPARATION_SHARE = 0.9  # of the progress bar; encoding the results is the rest
HASH_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class SeparationEngine:
    def __init__(self, model_dir: Path) -> None:
        self._repo = demucs_repo(model_dir)
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
        stems = task.cache_dir / "stems" / f"{file_digest(task.input_path)}-{task.model}"
        if not all((stems / f"{stem}.flac").is_file() for stem in STEMS):
            self._separate(task, stems, progress)
        results = []
        for stem in OUTPUTS[task.order_type]:
            name = f"{stem}.{fmt}"
            transcode(stems / f"{stem}.flac", task.out_dir / name, fmt, task.sample_rate, task.channels)
            results.append(ResultFile(name, stem))
        progress(1.0)
        return results

    def _separate(self, task: EngineTask, target: Path, progress: Progress) -> None:
        import torch
        from demucs.apply import apply_model

        model = self._model(task.model)
        rate, channels = model.samplerate, model.audio_channels
        vocals_index = model.sources.index("vocals")
        block, context = int(BLOCK_SECONDS * rate), int(CONTEXT_SECONDS * rate)
        total_blocks = max(1, math.ceil(task.duration / BLOCK_SECONDS))

        def separate(window: Audio) -> Audio:
            # Demucs expects a normalised mix and gives back stems on the same scale.
            mean, std = float(window.mean()), float(window.std()) or 1.0
            mix = torch.from_numpy((window - mean) / std)[None]
            with torch.no_grad():
                out = apply_model(model, mix, shifts=1, split=True, overlap=0.25, progress=False)[0]
            result: Audio = (out.numpy() * std + mean).astype(np.float32)
            return result

        partial = target.parent / f"{target.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            with (
                PcmReader(task.input_path, rate, channels) as reader,
                PcmWriter(partial / "vocals.flac", "flac", rate, channels, rate, channels) as vocals_out,
                PcmWriter(
                    partial / "accompaniment.flac", "flac", rate, channels, rate, channels
                ) as backing_out,
            ):
                before = np.zeros((channels, 0), dtype=np.float32)
                current = reader.read(block)
                done = 0
                while current.shape[1]:
                    after = reader.read(block)
                    window = np.concatenate([before, current, after[:, :context]], axis=1)
                    stems = separate(window)[:, :, before.shape[1] : before.shape[1] + current.shape[1]]
                    vocals = stems[vocals_index]
                    vocals_out.write(vocals)
                    backing_out.write(stems.sum(axis=0) - vocals)
                    before, current = current[:, -context:], after
                    done += 1
                    progress(SEPARATION_SHARE * min(done / total_blocks, 1.0))
            if done == 0:
                raise OrderFailed("unsupported media: no audio could be decoded")
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
