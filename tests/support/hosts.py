"""Settings and checks for processes that stand for separate machines: each its own data directory, sharing
only the database and the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yinzi.settings import Settings


def outside_scratch(settings: Settings) -> list[str]:
    """Files a process left in its data directory that are neither scratch nor the SQLite database."""
    root = settings.data_dir
    found = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()] if root.exists() else []
    scratch = settings.work_dir.relative_to(root)
    return sorted(
        name for name in found if not name.startswith(f"{scratch}/") and not name.startswith("yinzi.db")
    )


def another_host(settings: Settings, data_dir: Path, **changes: Any) -> Settings:
    """The settings of a process on another machine: its own empty data directory, the same database."""
    database = settings.database_url or f"sqlite:///{settings.db_path.resolve()}"
    return settings.replace(data_dir=data_dir, database_url=database, **changes)


def scratch_files(settings: Settings) -> list[Path]:
    return [p for p in settings.work_dir.rglob("*") if p.is_file()] if settings.work_dir.exists() else []
