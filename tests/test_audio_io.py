"""Streaming PCM through ffmpeg: what goes in comes out, and a failing encoder says why without hanging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workers.engines.audio import PcmReader, PcmWriter
from yinzi.errors import OrderFailed


def test_blocks_written_read_back_sample_for_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    blocks = [rng.uniform(-0.5, 0.5, (2, n)).astype(np.float32) for n in (1, 44100, 3000, 70000)]
    path = tmp_path / "out.flac"
    with PcmWriter(path, "flac", 44100, 2, 44100, 2) as writer:
        for block in blocks:
            writer.write(block)
    with PcmReader(path, 44100, 2) as reader:
        back = reader.read(10**6)
    expected = np.concatenate(blocks, axis=1)
    assert back.shape == expected.shape
    np.testing.assert_allclose(back, expected, atol=1 / 2**15)  # FLAC here stores 16 bits


def test_an_encoder_that_dies_reports_ffmpeg_and_never_blocks_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "no such folder" / "out.mp3"
    with pytest.raises(OrderFailed, match=r"could not encode the result: .*No such file or directory"):
        with PcmWriter(path, "mp3", 44100, 2, 44100, 2) as writer:
            for _ in range(20):  # far more than the queue and the pipe hold
                writer.write(np.zeros((2, 44100), dtype=np.float32))
