"""JupyterLab on the project's notebooks.

The notebooks live in git as jupytext percent scripts (``notebooks/*.py``: reviewable diffs, no outputs). Before Lab
starts, each gets its paired ``.ipynb`` (git-ignored); jupytext keeps the pair in sync when Lab saves. Ploomber's
Jupyter server extension breaks Lab's file browser (HTTP 500), so it is switched off for this server. The kernels
use the project's workspace (``<project>/.ragtune``, or ``$RAGTUNE_HOME``), the one the CLI uses from the project
folder, so nothing the CLI embedded is embedded again in a notebook.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ragtune.errors import RagtuneError
from ragtune.project import project_root

def sync_notebooks(folder: Path) -> list[Path]:
    """Write ``name.ipynb`` for every ``name.py`` notebook that has none or an older one; returns what was written."""
    import jupytext

    written = []
    for script in sorted(folder.glob("*.py")):
        target = script.with_suffix(".ipynb")
        if target.exists() and target.stat().st_mtime >= script.stat().st_mtime:
            continue
        notebook = jupytext.read(script)
        notebook.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
        jupytext.write(notebook, target)
        written.append(target)
    return written


#: Jupyter data folder shipped with ragtune: its ``python3`` kernel spec is ipykernel's, with the kernel's own
#: start-up log at ERROR ("running over TCP without encryption": a local kernel on the loopback, not the user's
#: business; errors still show, and the cells' own warnings stay in the notebook)
JUPYTER_DATA = Path(__file__).parent / "jupyter"


def kernel_env(base: dict[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    """An environment whose ``python`` is this interpreter (Jupyter's ``python3`` kernel spec runs ``python`` from
    PATH, which outside an activated virtual environment is another Python, without ragtune), whose ``python3``
    kernel spec is ragtune's quiet one (``JUPYTER_DATA``), and whose workspace is ``home`` unless ``$RAGTUNE_HOME``
    names one."""
    env = dict(os.environ if base is None else base)
    if home is not None:
        env.setdefault("RAGTUNE_HOME", str(home))
    bindir = str(Path(sys.executable).parent)
    if not env.get("PATH", "").startswith(bindir + os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    data = str(JUPYTER_DATA)
    if not env.get("JUPYTER_PATH", "").startswith(data):
        env["JUPYTER_PATH"] = os.pathsep.join(p for p in (data, env.get("JUPYTER_PATH")) if p)
    return env


def notebooks_folder(start: Path | None = None) -> Path:
    """The ``notebooks/`` folder of the project at or above ``start`` (the current directory)."""
    folder = project_root(start, "ragtune lab") / "notebooks"
    if not folder.is_dir():
        raise RagtuneError(f"{folder}: the project has no notebooks folder")
    return folder


#: server extensions kept off: Ploomber's two (they break the file browser) and nbclassic (a migration banner and
#: deprecation warnings on every start, for an interface Lab does not use)
OFF = ("ploomber", "ploomber_extension", "nbclassic")


def lab_command(port: int, no_browser: bool, folder: Path, extra: list[str] | None = None, ip: str = "localhost",
                token: str | None = None) -> tuple[str, list[str]]:
    """(program, argv) that starts JupyterLab on ``folder``; run it with ``kernel_env()``. ``token``: None for
    Jupyter's own random token, "" for none. The ``.py`` notebooks are hidden from the file browser: each opens as
    its paired ``.ipynb`` (jupytext writes both on save), so every notebook is listed once."""
    sync_notebooks(folder)
    argv = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={folder}", f"--port={port}",
            f"--ServerApp.ip={ip}", *[f"--ServerApp.jpserver_extensions={name}=False" for name in OFF],
            "--ContentsManager.hide_globs=__pycache__", "--ContentsManager.hide_globs=*.pyc",
            "--ContentsManager.hide_globs=*.py", "--ContentsManager.hide_globs=.ipynb_checkpoints",
            *([f"--IdentityProvider.token={token}"] if token is not None else []), *(extra or [])]
    if no_browser:
        argv.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")
    return sys.executable, argv
