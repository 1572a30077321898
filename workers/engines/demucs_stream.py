"""Demucs' own split-and-overlap-add, run over a stream instead of a whole track in memory.

``demucs.apply.apply_model(split=True)`` cuts the track into model-length segments that overlap by a quarter,
separates each and cross-fades them with triangular weights; ``shifts=1`` first delays the track by a random
0 to 0.5 s of silence. Both need the whole track as one tensor, so memory grows with duration. This module
does the same steps in the same order on audio that arrives block by block, holding only about three segments
of input and one of output: the stems equal ``apply_model``'s (the equality is tested), every segment is
computed exactly once (no extra context as with independent blocks), and finished audio leaves as soon as no
later segment can touch it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from workers.engines.audio import Audio

Stems = npt.NDArray[np.float32]  # shape (sources, channels, samples)
OVERLAP = 0.25  # apply_model's default, which demucs.separate uses


def segment_length(model: Any) -> int:
    """Samples per segment: the model's own, or for a bag the shortest of its models'."""
    from demucs.apply import BagOfModels

    models: list[Any] = list(model.models) if isinstance(model, BagOfModels) else [model]
    return int(model.samplerate * min(float(m.segment) for m in models))


def random_shift(model: Any) -> int:
    """The silence ``apply_model(shifts=1)`` puts in front of a track: up to half a second."""
    max_shift = int(0.5 * model.samplerate)
    return max_shift - random.randint(0, max_shift)


def separate_stream(model: Any, read: Callable[[int], Audio], shift: int) -> Iterator[Stems]:
    """Stems of the audio ``read(frames)`` returns (an empty block at the end), in order, normalised as given.

    ``shift`` is the silence put in front (``random_shift``); it is removed again from the output.
    """
    import torch
    from demucs.apply import TensorChunk, apply_model

    segment = segment_length(model)
    stride = int((1 - OVERLAP) * segment)
    half = segment // 2
    ramp = torch.cat([torch.arange(1, half + 1), torch.arange(segment - half, 0, -1)])
    weight = (ramp / ramp.max()).numpy()
    sources, channels = len(model.sources), model.audio_channels

    # Input held from `held_at` (track position, shift included): a segment before the current offset and two
    # after it, enough for any padding apply_model takes from a segment's neighbours.
    held = np.zeros((channels, shift), dtype=np.float32)
    held_at = 0
    ended = False
    # Output still open to later segments, from `open_at`, with the sum of the weights added to each sample.
    out = np.zeros((sources, channels, 0), dtype=np.float32)
    weights = np.zeros(0, dtype=np.float32)
    open_at = 0
    offset = 0
    while True:
        while not ended and held_at + held.shape[1] < offset + 2 * segment:
            block = read(stride)
            ended = block.shape[1] == 0
            held = np.concatenate([held, block], axis=1)
        end = held_at + held.shape[1]
        if offset >= end:
            return
        chunk = TensorChunk(torch.from_numpy(held)[None], offset - held_at, segment)  # type: ignore[no-untyped-call]
        with torch.no_grad():
            result = apply_model(model, chunk, shifts=0, split=False)[0].numpy()
        n = result.shape[-1]
        grow = offset + n - open_at - out.shape[-1]
        if grow > 0:
            out = np.concatenate([out, np.zeros((sources, channels, grow), np.float32)], axis=-1)
            weights = np.concatenate([weights, np.zeros(grow, np.float32)])
        at = offset - open_at
        out[..., at : at + n] += weight[:n] * result
        weights[at : at + n] += weight[:n]

        offset += stride
        # No later segment starts before `offset`: everything before it is final.
        final = min(offset, end) - open_at
        done = (out[..., :final] / weights[:final]).astype(np.float32)
        skip = max(0, shift - open_at)
        if skip < final:
            yield done[..., skip:]
        out, weights, open_at = out[..., final:], weights[final:], open_at + final
        keep = max(0, offset - segment - held_at)
        held, held_at = held[:, keep:], held_at + keep
