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
             project: str = "ragtune", images: dict[str, Path] | None = None, tags: tuple[str, ...] = ()) -> str | None:
    """Log config, summary metrics, the per-query table and any images; returns the run id (None when disabled)."""
    cfg = result.config
    summary = {**result.summary, "queries": len(result.per_query), "embedded_texts": result.embedding.computed,
               "index_built": result.index.built}
    return _log_run(Path(directory), group, "eval", cfg.name or cfg.id, mode, project,
                    {"per_query": result.per_query.reset_index()}, images or {}, [],
                    config={"config_id": cfg.id, "dataset": result.dataset, **cfg.model_dump(mode="json")},
                    summary=summary, tags=[result.dataset, *tags])


def log_sweep_results(out: Path, group: str, mode: str | None = None, project: str = "ragtune") -> str | None:
    """One run for the sweep as a whole: its summary table, and results.parquet + summary.parquet as an artifact."""
    import pandas as pd

    out = Path(out)
    tables = {}
    if (out / "summary.parquet").is_file():
        tables["summary"] = pd.read_parquet(out / "summary.parquet")
    files = [out / n for n in ("results.parquet", "summary.parquet") if (out / n).is_file()]
    return _log_run(out, group, "sweep", f"{group}/results", mode, project, tables, {}, files)


def log_comparison(out: Path, group: str, leaderboard, images: dict[str, Path], mode: str | None = None,
                   project: str = "ragtune") -> str | None:
    """The comparison of a sweep: its leaderboard and plots."""
    return _log_run(Path(out), group, "compare", f"{group}/compare", mode, project,
                    {"leaderboard": leaderboard.reset_index()}, images, [])


def log_pipeline(directory: Path, summary: dict, per_query, images: dict[str, Path], config: dict,
                 mode: str | None = None, project: str = "ragtune") -> str | None:
    """One run per production build: freshness, gate and metrics in the summary, per-query scores, the gate plot."""
    return _log_run(Path(directory), "production", "pipeline", f"production/v{config.get('release')}", mode, project,
                    {"per_query": per_query.reset_index()}, images, [], config=config, summary=summary,
                    tags=["production"])


def _log_run(directory: Path, group: str | None, job_type: str, name: str, mode: str | None, project: str,
             tables: dict, images: dict[str, Path], files: list[Path], config: dict | None = None,
             summary: dict | None = None, tags: list[str] | None = None) -> str | None:
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    from ragtune.redact import scrub

    config, summary = scrub(config), scrub(summary)
    tables = {k: f.map(scrub) if hasattr(f, "map") else f for k, f in tables.items()}  # questions included
    directory.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, group=group, job_type=job_type, name=name, config=config, tags=tags,
                     dir=str(directory), mode=mode, reinit="create_new")
    try:
        if summary:
            run.summary.update(summary)
        for key, frame in tables.items():
            run.log({key: wandb.Table(dataframe=frame)})
        for key, path in images.items():
            run.log({key: wandb.Image(str(path))})
        if files:
            artifact = wandb.Artifact(f"{group}-results", type="sweep-results")
            for path in files:
                artifact.add_file(str(path))
            run.log_artifact(artifact)
        return run.id
    finally:
        run.finish()
