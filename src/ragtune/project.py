"""The project folder, found as Ploomber finds ``pipeline.yaml``: the nearest folder at or above the current
directory that holds one. Commands that work on a project's files (``ragtune lab`` opens its ``notebooks/``,
``ragtune promote`` rewrites its regression test) look for it; everything else runs from any folder."""

from __future__ import annotations

from pathlib import Path

from ragtune.errors import RagtuneError

MARKER = "pipeline.yaml"


def find_project(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the current directory) holding ``pipeline.yaml``."""
    here = (start or Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if (folder / MARKER).is_file()), None)


def project_root(start: Path | None = None, needs: str = "this command") -> Path:
    root = find_project(start)
    if root is None:
        raise RagtuneError(f"{needs} needs a ragtune project: no {MARKER} in {(start or Path.cwd()).resolve()} or "
                           "any folder above it; run it from the project folder (a checkout of ragtune, or any folder "
                           f"with a {MARKER})")
    return root
