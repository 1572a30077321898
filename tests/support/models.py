"""Tiny random-initialised models saved exactly as the libraries save theirs, so the real loading code runs.

Their output means nothing; they cost milliseconds. The Demucs one is the real HTDemucs architecture at a
fraction of its width (depth 4 like htdemucs, so the transformer's sequence stays short, and a 1 s segment).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Any

import torch
import yaml

from workers.engines.models import demucs_repo, whisper_checkpoint

DEMUCS_NAME = "tiny-htdemucs"
WHISPER_NAME = "tiny-whisper"


def save_demucs(model_dir: Path, name: str, model: Any, signature: str) -> None:
    """Saves a Demucs model as a one-model bag, the layout demucs.pretrained.get_model(name, repo=...) reads."""
    from demucs.states import get_state

    args, kwargs = model._init_args_kwargs
    package = {
        "klass": type(model),
        "args": args,
        "kwargs": kwargs,
        "state": get_state(model, None, False),
        "training_args": {},
    }
    buffer = io.BytesIO()
    torch.save(package, buffer)
    # demucs names a model file <signature>-<first 8 hex of its sha256> and checks that on load
    checksum = hashlib.sha256(buffer.getvalue()).hexdigest()[:8]
    repo = demucs_repo(model_dir)
    repo.mkdir(parents=True, exist_ok=True)
    (repo / f"{signature}-{checksum}.th").write_bytes(buffer.getvalue())
    (repo / f"{name}.yaml").write_text(yaml.safe_dump({"models": [signature]}))


def save_whisper(model_dir: Path, name: str, dims: Any) -> None:
    """Saves a randomly initialised Whisper of these ModelDimensions as whisper.load_model reads it."""
    from whisper.model import Whisper

    model = Whisper(dims)
    # Whisper allocates the decoder's learned positions with torch.empty (a checkpoint always fills them): left so,
    # they are whatever memory held, now and then NaN, and the model decodes nothing.
    torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    path = whisper_checkpoint(model_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)


def save_tiny_demucs(model_dir: Path, name: str = DEMUCS_NAME) -> None:
    from demucs.htdemucs import HTDemucs
    from demucs.pretrained import SOURCES

    torch.manual_seed(0)
    model = HTDemucs(
        sources=SOURCES,
        channels=4,
        depth=4,
        t_layers=1,
        t_heads=1,
        t_hidden_scale=1.0,
        dconv_comp=2,
        segment=1,
    )
    save_demucs(model_dir, name, model, "t1ny0001")


def save_tiny_whisper(model_dir: Path, name: str = WHISPER_NAME) -> None:
    from whisper.model import ModelDimensions

    torch.manual_seed(0)
    # n_audio_ctx and n_vocab are fixed by Whisper's 30 s window and its multilingual tokenizer; a short
    # n_text_ctx caps decoding (random weights never stop early) at 32 tokens a window.
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=64,
        n_audio_head=2,
        n_audio_layer=1,
        n_vocab=51865,
        n_text_ctx=64,
        n_text_state=64,
        n_text_head=2,
        n_text_layer=1,
    )
    save_whisper(model_dir, name, dims)
