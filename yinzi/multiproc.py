"""Process setup that must happen before prometheus-client is first imported (it picks its storage then).

``yinzi serve`` and ``yinzi worker`` call :func:`use_metrics_dir`, so every process on one data directory
writes its metrics under ``<data>/metrics`` and any of them reports the sum (see yinzi/metrics.py).
"""

from __future__ import annotations

import os
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR_NAME = "metrics"


def use_metrics_dir(data_dir: Path) -> Path:
    """Points prometheus-client at ``<data>/metrics`` and removes the files of processes that are gone, so a
    restarted service does not report a dead process's numbers forever."""
    folder = (data_dir / METRICS_DIR_NAME).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(MULTIPROC_ENV, str(folder))
    for path in folder.glob("*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
