"""The streamed overlap-add gives Demucs' own result: the same stems as ``apply_model`` on the whole track."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.support.models import DEMUCS_NAME
from workers.engines.audio import Audio
from workers.engines.demucs_stream import random_shift, segment_length, separate_stream
from workers.engines.models import demucs_repo


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Any:
    from demucs.pretrained import get_model

    return get_model(DEMUCS_NAME, repo=demucs_repo(model_dir))


def reader(track: Audio, sizes: list[int]) -> Callable[[int], Audio]:
    """Hands the track out in blocks of the given sizes in turn, whatever is asked: a decoder's short reads."""
    position, turn = 0, 0

    def read(frames: int) -> Audio:
        nonlocal position, turn
        size = sizes[turn % len(sizes)]
        turn += 1
        block = track[:, position : position + size]
        position += block.shape[1]
        return block

    return read


@pytest.mark.parametrize(
    ("seconds", "sizes"),
    [
        (3.3, [4096]),  # several segments, the last one short
        (0.4, [1000, 7]),  # shorter than one segment
        (3.0, [44100 * 5]),  # all in one read
    ],
)
def test_stems_equal_apply_model_on_the_whole_track(
    model: Any, seconds: float, sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from demucs.apply import apply_model

    rng = np.random.default_rng(3)
    track = rng.standard_normal((model.audio_channels, int(seconds * model.samplerate))).astype(np.float32)

    random.seed(11)
    with torch.no_grad():
        whole = apply_model(model, torch.from_numpy(track)[None], shifts=1, split=True, overlap=0.25)[
            0
        ].numpy()
    random.seed(11)
    shift = random_shift(model)
    assert 0 <= shift <= model.samplerate // 2
    streamed = np.concatenate(list(separate_stream(model, reader(track, sizes), shift)), axis=-1)

    assert streamed.shape == whole.shape == (len(model.sources), model.audio_channels, track.shape[1])
    np.testing.assert_allclose(streamed, whole, rtol=1e-4, atol=1e-5)


def test_holds_a_few_segments_whatever_the_length(model: Any) -> None:
    """The input kept and the output not yet final stay within three segments and a read, for any duration."""
    segment = segment_length(model)
    held_most = 0
    total = 40 * segment
    position = 0

    def read(frames: int) -> Audio:
        nonlocal position, held_most
        n = min(frames, total - position)
        position += n
        return np.zeros((model.audio_channels, n), dtype=np.float32)

    out = 0
    for block in separate_stream(model, read, 0):
        out += block.shape[-1]
        held_most = max(held_most, position - out)  # read but not yet given back
    assert out == total
    assert held_most <= 3 * segment
