"""Helpers shared by the benchmark scripts (not part of the library)."""

from __future__ import annotations

import os
import platform
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAGTUNE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def dataset_path(name: str) -> Path:
    path = SHARED / name
    if not (path / "corpus.jsonl").is_file():
        sys.exit(f"needs {path} (set RAGTUNE_SHARED_DATASETS)")
    return path


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {date.today()}"
