"""moto's S3 server in a process of its own, for benchmarks that run the production shape (the tests run it
in a thread: tests/conftest.py, ``s3_server``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.processes import free_port

STARTUP_S = 60.0


def start_s3_server(log: Path, bucket: str) -> tuple[subprocess.Popen[bytes], str]:
    """Starts the server with ``bucket`` in it; returns the process and its endpoint URL. The stand-in checks
    no credentials, but boto3 signs every request, so some are set when none are."""
    import boto3

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            return proc, endpoint
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.2)
