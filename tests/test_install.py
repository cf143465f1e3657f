"""ragtune installed as a wheel (not editable, no checkout on the path) works from an empty folder: a sweep runs its
configurations through the notebook that ships in the package and writes its results there.

The fresh virtual environment takes ragtune from the wheel and every other package from this environment's
site-packages (a ``.pth`` line), so nothing is downloaded; the checkout's own ``src`` is not on its path.
"""
from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.evaluation.run import evaluate

REPO = Path(__file__).resolve().parents[1]


def run(argv: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_wheel_sweeps_from_an_empty_folder(tmp_path, workspace):
    # no PYTHONPATH: a checkout's src/ (with its egg-info) on it would pass for an installed ragtune
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", wheels, REPO],
        tmp_path, env)
    (wheel,) = wheels.glob("ragtune-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    target = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
                  .stdout.strip())
    # this environment's packages, but not the editable checkout: only site-packages itself goes on the path (its
    # .pth files are not read); --ignore-installed: the editable ragtune found there is neither kept nor uninstalled
    (target / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--ignore-installed",
         wheel], tmp_path, env)

    project = tmp_path / "empty"
    project.mkdir()
    (project / "spec.yaml").write_text(yaml.safe_dump({
        "name": "installed", "dataset": "sample", "queries": 5,
        "grid": {"retrieval.mode": ["hybrid"]}, "baseline": {"retrieval.mode": "hybrid"},
        "tracking": {"mode": "disabled"},
    }))
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    where = run([python, "-c", "import ragtune; print(ragtune.__file__)"], project, env).stdout.strip()
    assert where.startswith(str(env_dir)) and str(REPO / "src") not in where

    out = run([env_dir / "bin" / "ragtune", "sweep", "spec.yaml", "--out", "sweep", "--home", workspace.home],
              project, env)
    assert "1 run, 0 already complete, 0 failed" in out.stdout
    summary = pd.read_parquet(project / "sweep" / "summary.parquet")
    # the installed wheel scores what this checkout scores on the same five questions
    expected = evaluate(RagConfig.from_dict({"retrieval": {"mode": "hybrid"}}), load_dataset("sample", queries=5),
                        workspace).summary["ndcg@10"]
    assert list(summary["status"]) == ["done"] and summary["ndcg@10"].iloc[0] == pytest.approx(expected)
    assert all((project / "sweep" / "configs" / cid / "notebook.ipynb").is_file() for cid in summary["config_id"])
    assert not (project / ".ragtune").exists()  # the workspace named by --home was used
