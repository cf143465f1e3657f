"""Comparisons that hold up: a leaderboard with bootstrap confidence intervals, a paired test of every configuration
against the baseline on per-query scores (``ragtune.stats``), Holm's correction across the sweep, effect sizes, and a
winner named only when its gain is significant after correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ragtune.errors import RagtuneError
from ragtune.stats import TESTS, bootstrap_ci, cohens_d, holm, paired_test


@dataclass
class Comparison:
    metric: str
    baseline: str
    test: str
    alpha: float
    table: pd.DataFrame  # one row per configuration, best mean first
    winner: str | None  # config id, or None when nothing beats the baseline significantly

    def verdict(self) -> str:
        base = self.table.loc[self.baseline]
        if self.winner is None:
            return (f"no configuration beats the baseline {base['name']} ({self.baseline}) on {self.metric} "
                    f"significantly ({self.test}, Holm-corrected, alpha {self.alpha}): keep the baseline")
        row = self.table.loc[self.winner]
        return (f"winner: {row['name']} ({self.winner}): {self.metric} {row['mean']:.4f} vs baseline "
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
