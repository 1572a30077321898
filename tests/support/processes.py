"""Small /proc helpers for tests and benchmarks that start real processes."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def wait_healthy(base_url: str, timeout: float = 30.0) -> None:
    """Blocks until ``GET {base_url}/healthz`` answers, or fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{base_url}/healthz", timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base_url} did not become healthy within {timeout:g} s") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ends a process politely (SIGTERM, 10 s to finish), then for good."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat_fields(pid: int) -> list[str]:
    # The command name in field 2 may hold spaces and parentheses; everything after the last ')' is plain.
    return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


def alive(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def peak_rss_gib(pid: int) -> float:
    """The process's resident-memory high-water mark (VmHWM)."""
    match = re.search(r"VmHWM:\s+(\d+) kB", (Path("/proc") / str(pid) / "status").read_text())
    assert match
    return int(match.group(1)) / 1024**2
