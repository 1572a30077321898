"""CTranslate2 Whisper models (faster-whisper's format) read without CTranslate2, and turned into openai-whisper
checkpoints, so one set of weights serves both engines.

``model.bin`` is: u32 format version, the spec's name, u32 spec revision, then each variable (name, u8 rank,
u32 dimensions, u8 data type, u32 byte count, raw little-endian bytes), then aliases (name, target). Strings are a
u16 length followed by that many bytes, the last one NUL. What maps where:

    encoder/conv{1,2}                                 encoder.conv{1,2}
    encoder/position_encodings/encodings              encoder.positional_embedding
    {en,de}coder/layer_N/self_attention/linear_0      attn.query | key | value, fused along rows
    {en,de}coder/layer_N/self_attention/linear_1      attn.out
    decoder/layer_N/attention/linear_0 | _1 | _2      cross_attn.query | key+value fused | out
    */ffn/linear_0 | _1                               mlp.0 | mlp.2
    */layer_norm (gamma, beta)                        the block's *_ln (weight, bias); encoder.ln_post, decoder.ln
    decoder/embeddings/weight                         decoder.token_embedding.weight (the output projection too)

Whisper's key projections have no bias; CTranslate2 stores zeros for them, which are dropped.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

# CTranslate2's DataType enum, in its order.
DTYPES: dict[int, str] = {0: "<f4", 1: "i1", 2: "<i2", 3: "<i4", 4: "<f2"}
SPEC_NAME = "WhisperSpec"

Array = npt.NDArray[Any]


class NotAWhisperModel(ValueError):
    pass


def _u32(stream: IO[bytes]) -> int:
    value: int = struct.unpack("<I", stream.read(4))[0]
    return value


def _string(stream: IO[bytes]) -> str:
    (length,) = struct.unpack("<H", stream.read(2))
    return stream.read(length)[:-1].decode()


def read_variables(path: Path) -> dict[str, Array]:
    """Every variable of a CTranslate2 Whisper ``model.bin``, aliases resolved."""
    with path.open("rb") as stream:
        _u32(stream)  # format version
        spec = _string(stream)
        if spec != SPEC_NAME:
            raise NotAWhisperModel(f"{path} holds a {spec}, not a Whisper model")
        _u32(stream)  # spec revision
        variables: dict[str, Array] = {}
        for _ in range(_u32(stream)):
            name = _string(stream)
            rank = stream.read(1)[0]
            shape = struct.unpack(f"<{rank}I", stream.read(4 * rank))
            dtype = stream.read(1)[0]
            size = _u32(stream)
            if dtype not in DTYPES:
                raise NotAWhisperModel(
                    f"{name} in {path} has a data type ({dtype}) this reader does not know"
                )
            variables[name] = np.frombuffer(stream.read(size), dtype=DTYPES[dtype]).reshape(shape)
        for _ in range(_u32(stream)):
            alias, target = _string(stream), _string(stream)
            variables[alias] = variables[target]
    return variables


def _layers(variables: dict[str, Array], stack: str) -> int:
    return len({name.split("/")[1] for name in variables if re.match(rf"{stack}/layer_\d+/", name)})


def _linear(out: dict[str, Array], target: str, variables: dict[str, Array], source: str) -> None:
    out[f"{target}.weight"] = variables[f"{source}/weight"]
    if f"{source}/bias" in variables:
        out[f"{target}.bias"] = variables[f"{source}/bias"]


def _norm(out: dict[str, Array], target: str, variables: dict[str, Array], source: str) -> None:
    out[f"{target}.weight"] = variables[f"{source}/gamma"]
    out[f"{target}.bias"] = variables[f"{source}/beta"]


def _split(
    out: dict[str, Array], targets: list[str], variables: dict[str, Array], source: str, keyless: str
) -> None:
    """A fused projection into its parts; the key part's bias (stored as zeros) is dropped."""
    weights = np.split(variables[f"{source}/weight"], len(targets))
    biases = np.split(variables[f"{source}/bias"], len(targets))
    for target, weight, bias in zip(targets, weights, biases, strict=True):
        out[f"{target}.weight"] = weight
        if not target.endswith(keyless):
            out[f"{target}.bias"] = bias


def _block(out: dict[str, Array], variables: dict[str, Array], stack: str, index: int) -> None:
    src, dst = f"{stack}/layer_{index}", f"{stack}.blocks.{index}"
    _split(
        out,
        [f"{dst}.attn.{p}" for p in ("query", "key", "value")],
        variables,
        f"{src}/self_attention/linear_0",
        "key",
    )
    _linear(out, f"{dst}.attn.out", variables, f"{src}/self_attention/linear_1")
    _norm(out, f"{dst}.attn_ln", variables, f"{src}/self_attention/layer_norm")
    if stack == "decoder":
        _linear(out, f"{dst}.cross_attn.query", variables, f"{src}/attention/linear_0")
        _split(
            out,
            [f"{dst}.cross_attn.{p}" for p in ("key", "value")],
            variables,
            f"{src}/attention/linear_1",
            "key",
        )
        _linear(out, f"{dst}.cross_attn.out", variables, f"{src}/attention/linear_2")
        _norm(out, f"{dst}.cross_attn_ln", variables, f"{src}/attention/layer_norm")
    _linear(out, f"{dst}.mlp.0", variables, f"{src}/ffn/linear_0")
    _linear(out, f"{dst}.mlp.2", variables, f"{src}/ffn/linear_1")
    _norm(out, f"{dst}.mlp_ln", variables, f"{src}/ffn/layer_norm")


def alignment_heads(folder: Path) -> list[list[int]] | None:
    """The [layer, head] pairs whose cross-attention follows the words, from the folder's ``config.json``."""
    config = folder / "config.json"
    if not config.is_file():
        return None
    heads = json.loads(config.read_text()).get("alignment_heads")
    return [list(map(int, pair)) for pair in heads] if heads else None


def to_openai_checkpoint(folder: Path) -> dict[str, Any]:
    """An openai-whisper checkpoint (``dims``, ``model_state_dict``, ``alignment_heads``) from a CTranslate2
    Whisper folder. The weights keep their stored precision; whisper casts them when it loads them."""
    import torch

    variables = read_variables(folder / "model.bin")
    state: dict[str, Array] = {}
    for stack in ("encoder", "decoder"):
        for index in range(_layers(variables, stack)):
            _block(state, variables, stack, index)
    _linear(state, "encoder.conv1", variables, "encoder/conv1")
    _linear(state, "encoder.conv2", variables, "encoder/conv2")
    _norm(state, "encoder.ln_post", variables, "encoder/layer_norm")
    _norm(state, "decoder.ln", variables, "decoder/layer_norm")
    state["encoder.positional_embedding"] = variables["encoder/position_encodings/encodings"]
    state["decoder.positional_embedding"] = variables["decoder/position_encodings/encodings"]
    state["decoder.token_embedding.weight"] = variables["decoder/embeddings/weight"]

    conv1 = variables["encoder/conv1/weight"]
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(state["encoder.positional_embedding"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": _layers(variables, "encoder"),
        "n_vocab": int(state["decoder.token_embedding.weight"].shape[0]),
        "n_text_ctx": int(state["decoder.positional_embedding"].shape[0]),
        "n_text_state": int(state["decoder.token_embedding.weight"].shape[1]),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": _layers(variables, "decoder"),
    }
    tensors = {name: torch.from_numpy(value.copy()) for name, value in state.items()}
    return {"dims": dims, "model_state_dict": tensors, "alignment_heads": alignment_heads(folder)}
