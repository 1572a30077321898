"""The engine interface and which engine serves which order type.

An engine is a class that loads its model once in ``__init__`` and then turns input files into result files
in ``run``. It runs inside an engine process (see ``workers.engine_host``), never in the event loop's process,
so it may block and use every core. Operators and tests can plug their own with ``YINZI_ENGINES``
(``orderType=module:Class``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from yinzi.errors import OrderFailed
from yinzi.settings import Settings
from yinzi.store import ResultFile

# Called by an engine with the fraction of its work done (0.0 to 1.0).
Progress = Callable[[float], None]

BUILTIN_ENGINES: Mapping[str, str] = {
    "track-separation": "workers.engines.separation:SeparationEngine",
    "extract-voice": "workers.engines.separation:SeparationEngine",
    "extract-music": "workers.engines.separation:SeparationEngine",
    "extract-text": "workers.engines.transcription:TranscriptionEngine",
}

# Order types the separation engine serves: they share its stem cache.
SEPARATION_TYPES = frozenset({"track-separation", "extract-voice", "extract-music"})

INSTALL_HINT = "install the engines: make setup, or see README, Engines"


@dataclass(frozen=True)
class EngineTask:
    order_no: str
    order_type: str
    input_path: Path
    out_dir: Path
    duration: float  # seconds, from ffprobe
    sample_rate: int  # of the input's audio stream; results keep it
    channels: int
    model: str  # the model name this order runs with
    cache_dir: Path  # for results worth reusing across orders (separated stems)
    options: dict[str, Any] = field(default_factory=dict)  # the order's stuff, less pathKey
    input_sha256: str | None = None  # the input's SHA-256 when the job knows it already (None: not taken)


def file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stem_cache_dir(digest: str, model: str) -> str:
    """Where, under the cache folder, the stems of an input with this SHA-256 are kept for this model."""
    return f"stems/{digest}-{model}"


class Engine(Protocol):
    def __init__(self, settings: Settings) -> None: ...

    def run(self, task: EngineTask, progress: Progress) -> list[ResultFile]: ...


class EngineUnavailable(OrderFailed):
    pass


def engine_spec(order_type: str, overrides: Mapping[str, str]) -> str:
    return overrides.get(order_type) or BUILTIN_ENGINES[order_type]


def check_installed(spec: str) -> None:
    """Cheap check in the calling process: finds the engine's module without importing it (or torch)."""
    module = spec.partition(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        found = None
    if found is None:
        raise EngineUnavailable(f"engine not installed: {module} ({INSTALL_HINT})")


def load_engine_class(spec: str) -> type[Engine]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise EngineUnavailable(f"engine not installed: {exc.name} is missing ({INSTALL_HINT})") from None
    cls: type[Engine] = getattr(module, attr)
    return cls
