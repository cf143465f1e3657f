"""Models derived once per machine from the ones packages ship (an ONNX export, torch weights recovered from int8
ONNX), kept under ``RAGTUNE_MODEL_CACHE`` (default ``~/.cache/ragtune/models``) and keyed by the source's content."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def model_cache_dir() -> Path:
    root = os.environ.get("RAGTUNE_MODEL_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ragtune" / "models"


def fingerprint(source: Path, salt: str) -> str:
    """The source's content, sampled: each file's name, size and first and last 64 KiB (a whole directory, or one
    file). A changed model gets a new key, while a reinstall of the same model (new modification times) or a second
    environment shares what was derived from it."""
    h = hashlib.sha256(salt.encode())
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.relative_to(source) if f != source else f.name}\0{size}\0".encode())
        with open(f, "rb") as handle:
            h.update(handle.read(65536))
            if size > 65536:
                handle.seek(max(65536, size - 65536))
                h.update(handle.read())
    return h.hexdigest()[:16]


def build_once(out: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """``out``, built by ``build(directory)`` unless ``out/marker`` exists. Concurrent builders each write a private
    directory and the first rename wins, so no process ever reads a half-written model."""
    if (out / marker).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    try:
        build(tmp)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first: use its result
            if not (out / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
