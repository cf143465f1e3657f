"""A sweep's leaderboard: read one or more sweep folders (shards of one sweep, say), compare every configuration
with the baseline, write ``leaderboard.csv``, ``verdict.txt`` and the plots, and log them to W&B. The one call of
``ragtune compare`` and the compare notebook; the comparison itself is ``experiments.compare.compare``."""

from __future__ import annotations

from pathlib import Path

from ragtune.errors import RagtuneError
from ragtune.experiments.compare import Comparison, compare
from ragtune.experiments.plots import plot_comparison
from ragtune.experiments.sweep import SweepSpec, read_results
from ragtune.experiments.tracking import log_comparison


def compare_sweeps(folders: list[Path], metric: str | None = None, baseline: str | None = None,
                   test: str = "randomization", alpha: float = 0.05, out: Path | None = None,
                   track: bool = True) -> tuple[Comparison, dict[str, Path]]:
    """Read one or more sweep folders (shards of one sweep, say), compare, write leaderboard and plots."""
    folders = [Path(f) for f in folders]
    summary, results = read_results(folders)
    if summary.empty:
        raise RagtuneError(f"no results in {', '.join(map(str, folders))}")
    spec = SweepSpec.of_folder(folders[0])
    metric = metric or (spec.primary_metric if spec else "ndcg@10")
    if baseline is None:
        if spec is None:
            raise RagtuneError(f"{folders[0]}: no spec.yaml to name the baseline; pass --baseline CONFIG_ID")
        baseline = spec.baseline_config().id
    comp = compare(summary, results, metric, baseline, test, alpha)
    out = out or folders[0] / "compare"
    out.mkdir(parents=True, exist_ok=True)
    comp.table.to_csv(out / "leaderboard.csv")
    (out / "verdict.txt").write_text(comp.verdict() + "\n", encoding="utf-8")
    paths = plot_comparison(comp, summary, results, out)
    if track and spec is not None:
        log_comparison(folders[0], spec.name, comp.table, paths, spec.tracking.mode, spec.tracking.project)
    return comp, paths
