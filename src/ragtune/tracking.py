"""Weights & Biases tracking: one run per evaluated configuration, offline unless told otherwise.

Mode: the ``mode`` argument, else ``$WANDB_MODE``, else ``online`` when ``$WANDB_API_KEY`` is set, else ``offline``.
Offline runs land in ``<dir>/wandb/offline-run-*``; ``wandb sync <that folder>`` uploads them later.
"""

from __future__ import annotations

import os
from pathlib import Path


def resolve_mode(mode: str | None = None) -> str:
    if mode:
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def log_eval(result, directory: Path, group: str | None = None, mode: str | None = None,
             project: str = "ragtune", images: dict[str, Path] | None = None) -> str | None:
    """Log config, summary metrics, the per-query table and any images; returns the run id (None when disabled)."""
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    run = wandb.init(
        project=project,
        group=group,
        job_type="eval",
        name=cfg.name or cfg.id,
        config={"config_id": cfg.id, "dataset": result.dataset, **cfg.model_dump(mode="json")},
        tags=[result.dataset],
        dir=str(directory),
        mode=mode,
        reinit="create_new",
    )
    try:
        run.summary.update({**result.summary, "queries": len(result.per_query),
                            "embedded_texts": result.embedding.computed, "index_built": result.index.built})
        table = result.per_query.reset_index()
        run.log({"per_query": wandb.Table(dataframe=table)})
        for name, path in (images or {}).items():
            run.log({name: wandb.Image(str(path))})
        return run.id
    finally:
        run.finish()


def log_sweep_summary(out: Path, group: str, mode: str | None = None, project: str = "ragtune",
                      images: dict[str, Path] | None = None) -> str | None:
    """One run for the sweep as a whole: the leaderboard, plots, and results.parquet as an artifact."""
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import pandas as pd
    import wandb

    out = Path(out)
    run = wandb.init(project=project, group=group, job_type="compare", name=f"{group}/compare",
                     dir=str(out), mode=mode, reinit="create_new")
    try:
        leaderboard = out / "compare" / "leaderboard.csv"
        if leaderboard.is_file():
            run.log({"leaderboard": wandb.Table(dataframe=pd.read_csv(leaderboard))})
        for name, path in (images or {}).items():
            run.log({name: wandb.Image(str(path))})
        artifact = wandb.Artifact(f"{group}-results", type="sweep-results")
        for name in ("results.parquet", "summary.parquet"):
            if (out / name).is_file():
                artifact.add_file(str(out / name))
        run.log_artifact(artifact)
        return run.id
    finally:
        run.finish()
