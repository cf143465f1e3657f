"""A study: run a sweep spec (with the overrides a notebook's parameters give) and compare it, in one call.
This is what the study notebooks do; they add the explanation and the plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.experiments.compare import Comparison
from ragtune.experiments.leaderboard import compare_sweeps
from ragtune.experiments.sweep import SweepReport, SweepSpec, run_sweep


@dataclass
class Study:
    spec: SweepSpec
    report: SweepReport
    comparison: Comparison
    plots: dict[str, Path]

    @property
    def out(self) -> Path:
        return self.report.out

    def leaderboard(self):
        cols = ["name", "mean", "ci_low", "ci_high", "delta", "p_holm", "effect_size", "latency_p95_ms"]
        return self.comparison.table[cols].round(4)


def run_study(spec_path: str | Path, out: str | Path | None = None, runner: str = "inprocess", workers: int = 1,
              home: str | Path | None = None, tracking_mode: str | None = None, **overrides: Any) -> Study:
    """``overrides`` replace top-level spec fields (dataset, queries, grid, configs...); None leaves them alone."""
    spec = SweepSpec.from_yaml(spec_path)
    if tracking_mode:
        overrides["tracking"] = {**spec.tracking.model_dump(), "mode": tracking_mode}
    spec = spec.with_overrides(str(spec_path), **overrides)
    out = Path(out) if out else Path(spec_path).parent / "out" / f"{spec.name}-notebook"
    report = run_sweep(spec, out, workers=workers, runner=runner, home=Path(home) if home else None)
    comparison, plots = compare_sweeps([out])
    return Study(spec, report, comparison, plots)
