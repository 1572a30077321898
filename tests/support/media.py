"""Test media made on the spot with ffmpeg, and a local web server standing in for remote hosts."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
from pathlib import Path

from aiohttp import web


def make_media(folder: Path) -> Path:
    def ffmpeg(*args: str) -> None:
        subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)

    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-ar", "22050", str(folder / "tone.wav"))
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=330:duration=65",
        "-ac",
        "1",
        "-b:a",
        "32k",
        str(folder / "long.mp3"),
    )
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=64x64:d=1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(folder / "silent.mp4"),
    )
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=500:duration=3",
        "-ac",
        "2",
        "-ar",
        "48000",
        str(folder / "stereo48k.flac"),
    )
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=600:duration=2", "-c:a", "aac", str(folder / "tone.m4a"))
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=700:duration=2",
        "-f",
        "lavfi",
        "-i",
        "color=c=blue:s=64x64:d=2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        str(folder / "clip.mp4"),
    )
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=800:duration=4", "-b:a", "64k", str(folder / "whole.mp3"))
    whole = (folder / "whole.mp3").read_bytes()
    (folder / "truncated.mp3").write_bytes(whole[: len(whole) // 2])
    # Edge cases that are still audio: a tenth of a second, telephone quality, 96 kHz 5.1.
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=900:duration=0.1", str(folder / "blip.wav"))
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=300:duration=2",
        "-ar",
        "8000",
        "-ac",
        "1",
        str(folder / "phone.wav"),
    )
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=2",
        "-ar",
        "96000",
        "-ac",
        "6",
        str(folder / "surround.flac"),
    )
    # Cut short: a FLAC loses its tail; an MP4 loses its index (moov), which comes last.
    flac = (folder / "stereo48k.flac").read_bytes()
    (folder / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    clip = (folder / "clip.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(clip[: len(clip) // 2])
    (folder / "notes.mp3").write_text("these are not audio bytes\n" * 50)
    (folder / "empty.mp3").write_bytes(b"")
    return folder


def media_app(folder: Path) -> web.Application:
    """Serves /m/<file>, plus the misbehaving hosts a download must survive."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def chain(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        raise web.HTTPFound(f"/chain/{left - 1}" if left > 1 else "/m/tone.wav")

    async def hang(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"RIFF")
        await asyncio.sleep(3600)
        return response

    async def bomb(request: web.Request) -> web.Response:
        # 64 MiB of zeros that gzip to about 64 KiB.
        body = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "audio/wav"})

    async def forever(request: web.Request) -> web.StreamResponse:
        # A stream with no end and no length, paced like a live one (at most 64 MiB/s): a time limit stops it
        # long before the size cap, however fast the machine.
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        await response.prepare(request)
        chunk = b"\xff" * 65536
        while True:
            await response.write(chunk)
            await asyncio.sleep(0.001)

    app = web.Application()
    app.router.add_static("/m", folder)
    app.router.add_get("/forever", forever)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/chain/{n}", chain)
    app.router.add_get("/hang", hang)
    app.router.add_get("/bomb", bomb)
    return app
