"""What a downloaded file is, asked of ffprobe (an async subprocess: the event loop never waits on it)."""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from yinzi.errors import OrderFailed

PROBE_TIMEOUT_S = 60
INSTALL_HINT = "install it with: apt-get install -y ffmpeg"


@dataclass(frozen=True)
class MediaInfo:
    duration: float  # seconds
    sample_rate: int
    channels: int
    has_video: bool


@functools.cache  # a PATH search per call would show in /healthz; installing ffmpeg needs a restart anyway
def ffprobe_missing(ffprobe: str) -> str | None:
    """None when ffprobe can run, else a message telling the operator how to install it."""
    return None if shutil.which(ffprobe) else f"{ffprobe} not found: {INSTALL_HINT}"


async def probe(path: Path | str, ffprobe: str = "ffprobe") -> MediaInfo:
    """``path``: a file, or a URL ffprobe reads (an upload in an object store, through a presigned URL)."""
    if isinstance(path, Path) and path.stat().st_size == 0:
        raise OrderFailed("unsupported media: the file is empty")
    missing = ffprobe_missing(ffprobe)
    if missing:
        raise OrderFailed(f"server misconfigured: {missing}")
    proc = await asyncio.create_subprocess_exec(
        ffprobe,
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise OrderFailed("unsupported media: ffprobe could not read the file in time") from None
    if proc.returncode != 0:
        # ffprobe starts its complaint with the file's path: a server detail the client must not see.
        text = err.decode(errors="replace").replace(f"{path}: ", "").replace(str(path), "the file")
        detail = text.strip().splitlines()
        raise OrderFailed(f"unsupported media: {detail[-1] if detail else 'not an audio or video file'}")
    info = json.loads(out or b"{}")
    streams = info.get("streams", [])
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if audio is None:
        raise OrderFailed("unsupported media: no audio stream")
    duration = _duration(info.get("format", {}), audio)
    if duration is None or duration <= 0:
        raise OrderFailed("unsupported media: the audio has no measurable duration")
    return MediaInfo(
        duration=duration,
        sample_rate=int(audio.get("sample_rate") or 0),
        channels=int(audio.get("channels") or 0),
        has_video=any(s.get("codec_type") == "video" and not _is_cover_art(s) for s in streams),
    )


def _duration(fmt: dict[str, object], audio: dict[str, object]) -> float | None:
    for source in (audio, fmt):
        try:
            return float(source["duration"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _is_cover_art(stream: dict[str, object]) -> bool:
    disposition = stream.get("disposition")
    return isinstance(disposition, dict) and bool(disposition.get("attached_pic"))
