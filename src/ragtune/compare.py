"""Comparisons that hold up: a leaderboard with bootstrap confidence intervals, a paired test of every configuration
against the baseline on per-query scores, Holm's correction across the sweep, effect sizes, and a winner named only
when its gain is significant after correction.

Tests (as in ranx): ``randomization`` (Fisher's paired randomisation test, sign flips, two-sided) or ``t-test``
(paired Student's t-test, two-sided). Effect size: Cohen's d for paired samples (mean difference over the standard
deviation of the differences).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ragtune.errors import RagtuneError


def bootstrap_ci(values, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def paired_t_test(a, b) -> float:
    from scipy import stats

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        return 1.0 if np.allclose(diff, 0) or len(diff) < 2 else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


def randomization_test(a, b, resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired randomisation test: how often do random sign flips of the differences give a mean difference
    at least as large as the observed one? (p = (hits + 1) / (resamples + 1))"""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    observed = abs(diff.mean()) if len(diff) else 0.0
    if observed == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(resamples, len(diff)))
    hits = int((np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12).sum())
    return (hits + 1) / (resamples + 1)


TESTS = ("randomization", "t-test")


def paired_test(a, b, test: str = "randomization", resamples: int = 10_000, seed: int = 0) -> float:
    """The two-sided p-value of the paired test named ``test`` (one of TESTS)."""
    if test not in TESTS:
        raise RagtuneError(f"test {test!r}: expected one of {', '.join(TESTS)}")
    return paired_t_test(a, b) if test == "t-test" else randomization_test(a, b, resamples, seed)


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted


def cohens_d(a, b) -> float:
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(diff) < 2:
        return 0.0
    sd = diff.std(ddof=1)
    return float(diff.mean() / sd) if sd > 0 else (0.0 if diff.mean() == 0 else float(np.sign(diff.mean()) * np.inf))


def pareto_front(quality, cost) -> np.ndarray:
    """Mask of points no other point beats on both axes (higher quality, lower cost)."""
    q, c = np.asarray(quality, dtype=float), np.asarray(cost, dtype=float)
    front = np.ones(len(q), dtype=bool)
    for i in range(len(q)):
        better = (q >= q[i]) & (c <= c[i]) & ((q > q[i]) | (c < c[i]))
        front[i] = not better.any()
    return front


@dataclass
class Comparison:
    metric: str
    baseline: str
    test: str
    alpha: float
    table: pd.DataFrame  # one row per configuration, best mean first
    winner: str | None  # config id, or None when nothing beats the baseline significantly

    def verdict(self) -> str:
        if self.winner is None:
            return (f"no configuration beats the baseline {self.baseline} on {self.metric} significantly "
                    f"({self.test}, Holm-corrected, alpha {self.alpha}): keep the baseline")
        row = self.table.loc[self.winner]
        return (f"winner: {self.winner} ({row['name']}): {self.metric} {row['mean']:.4f} vs baseline "
                f"{self.table.loc[self.baseline, 'mean']:.4f}, +{row['delta']:.4f}, p_holm {row['p_holm']:.4g}, "
                f"d {row['effect_size']:.2f}")


def compare(
    summary: pd.DataFrame,
    results: pd.DataFrame,
    metric: str,
    baseline: str,
    test: str = "randomization",
    alpha: float = 0.05,
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    if test not in TESTS:
        raise RagtuneError(f"unknown test {test!r}; expected one of {', '.join(TESTS)}")
    done = summary[summary["status"] == "done"].set_index("config_id")
    if baseline not in done.index:
        raise RagtuneError(f"baseline {baseline} has no completed result (completed: {', '.join(done.index)})")
    if results.empty or metric not in results.columns:
        raise RagtuneError(f"metric {metric!r} is not in the results (have: {', '.join(results.columns)})")
    scores = results.pivot_table(index="query_id", columns="config_id", values=metric, aggfunc="first")
    base = scores[baseline]

    def run_test(a, b) -> float:
        return paired_test(a, b, test, resamples, seed)

    rows = []
    for cid in done.index:
        col = scores[cid]
        both = col.notna() & base.notna()
        a, b = col[both].to_numpy(), base[both].to_numpy()
        low, high = bootstrap_ci(col.dropna(), resamples=resamples, seed=seed)
        is_base = cid == baseline
        rows.append({
            "config_id": cid,
            "name": done.loc[cid, "name"],
            "mean": float(col.mean()),
            "ci_low": low,
            "ci_high": high,
            "delta": float(a.mean() - b.mean()) if len(a) else float("nan"),
            "p_value": np.nan if is_base else run_test(a, b),
            "effect_size": 0.0 if is_base else cohens_d(a, b),
            "queries": int(both.sum()),
            "latency_p50_ms": done.loc[cid].get("latency_p50_ms", np.nan),
            "latency_p95_ms": done.loc[cid].get("latency_p95_ms", np.nan),
            "baseline": is_base,
        })
    table = pd.DataFrame(rows).set_index("config_id")
    others = table.index[~table["baseline"]]
    table["p_holm"] = np.nan
    if len(others):
        table.loc[others, "p_holm"] = holm(table.loc[others, "p_value"].to_numpy())
    table["significant"] = table["p_holm"] < alpha
    table = table.sort_values(["mean", "latency_p95_ms"], ascending=[False, True])
    better = table[table["significant"] & (table["delta"] > 0)]
    winner = None
    if len(better):  # best mean; on a tie, the faster configuration
        top = better[np.isclose(better["mean"], better["mean"].max(), atol=1e-12)]
        winner = str(top.sort_values("latency_p95_ms").index[0])
    return Comparison(metric, baseline, test, alpha, table, winner)


# -- one call for the CLI and the notebook ----------------------------------------------------------------------


def compare_sweeps(folders: list[Path], metric: str | None = None, baseline: str | None = None,
                   test: str = "randomization", alpha: float = 0.05, out: Path | None = None,
                   track: bool = True) -> tuple[Comparison, dict[str, Path]]:
    """Read one or more sweep folders (shards of one sweep, say), compare, write leaderboard and plots."""
    from ragtune.sweep import SweepSpec, read_results

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
    from ragtune.plots import plot_comparison

    paths = plot_comparison(comp, summary, results, out)
    if track and spec is not None:
        from ragtune.tracking import log_comparison

        log_comparison(folders[0], spec.name, comp.table, paths, spec.tracking.mode, spec.tracking.project)
    return comp, paths
