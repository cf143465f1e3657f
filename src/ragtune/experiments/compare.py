"""Comparisons that hold up: a leaderboard with bootstrap confidence intervals, a paired test of every configuration
against the baseline on per-query scores (``ragtune.stats``), Holm's correction across the sweep, effect sizes, and a
winner named only when its gain is significant after correction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    runner_up: str | None = None  # the next best configuration other than the baseline, when there is a winner
    runner_up_p: float = float("nan")  # the paired test of the winner against it
    # with a query split: the choice above is made on the dev queries; the table's test_* columns hold every
    # configuration's held-out score, and this is the chosen one against the baseline on those queries
    held_out_p: float = float("nan")

    @property
    def chosen(self) -> str:
        return self.winner or self.baseline

    @property
    def held_out(self) -> bool:
        return "test_mean" in self.table.columns

    def verdict(self) -> str:
        base = self.table.loc[self.baseline]
        if self.winner is None:
            return (f"no configuration beats the baseline {base['name']} ({self.baseline}) on {self.metric} "
                    f"significantly ({self.test}, Holm-corrected, alpha {self.alpha}): keep the baseline"
                    + self._held_out_line())
        row = self.table.loc[self.winner]
        text = (f"winner: {row['name']} ({self.winner}): {self.metric} {row['mean']:.4f} vs baseline "
                f"{self.table.loc[self.baseline, 'mean']:.4f}, +{row['delta']:.4f}, p_holm {row['p_holm']:.4g}, "
                f"d {row['effect_size']:.2f}")
        if self.runner_up is not None:  # beating the baseline is not beating the rest: say how close the next one is
            second = self.table.loc[self.runner_up]
            gap = row["mean"] - second["mean"]
            judged = "significantly" if self.runner_up_p < self.alpha else "not significantly"
            text += (f"; {judged} ahead of the runner-up {second['name']} ({self.runner_up}): "
                     f"{gap:+.4f}, p {self.runner_up_p:.4g}")
        return text + self._held_out_line()

    def _held_out_line(self) -> str:
        if not self.held_out:
            return ""
        row, base = self.table.loc[self.chosen], self.table.loc[self.baseline]
        if np.isnan(row["test_mean"]):  # a tune trial chosen but not yet scored on the test queries
            return f"\nchosen on {int(row['queries'])} dev queries; not scored on the held-out test queries yet"
        line = (f"\nchosen on {int(row['queries'])} dev queries; on the {int(row['test_queries'])} held-out test "
                f"queries: {row['name']} {self.metric} {row['test_mean']:.4f} "
                f"(95% CI {row['test_ci_low']:.3f}-{row['test_ci_high']:.3f})")
        if self.chosen != self.baseline:
            line += (f" vs baseline {base['test_mean']:.4f}, {row['test_mean'] - base['test_mean']:+.4f}, "
                     f"p {self.held_out_p:.4g}")
        return line


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
    """The leaderboard and the winner. When ``results`` has a ``split`` column (a sweep with a query split), the
    winner is chosen on the dev queries alone, and every configuration's test score is added beside (``test_*``)."""
    if "split" not in results.columns or results["split"].isna().all():
        return _choose(summary, results, metric, baseline, test, alpha, resamples, seed)
    parts = {name: results[results["split"] == name] for name in ("dev", "test")}
    for name, part in parts.items():
        if part.empty:
            raise RagtuneError(f"the query split leaves no {name} query among the {results['query_id'].nunique()} "
                               "scored: change query_split in the spec")
    comp = _choose(summary, parts["dev"], metric, baseline, test, alpha, resamples, seed)
    held = parts["test"].pivot_table(index="query_id", columns="config_id", values=metric, aggfunc="first")
    for cid in comp.table.index.intersection(held.columns):  # a tune's trials are scored on dev queries only
        low, high = bootstrap_ci(held[cid].dropna(), resamples=resamples, seed=seed)
        comp.table.loc[cid, ["test_mean", "test_ci_low", "test_ci_high", "test_queries"]] = (
            float(held[cid].mean()), low, high, int(held[cid].notna().sum()))
    if comp.chosen != baseline and comp.chosen in held.columns:
        both = held[comp.chosen].notna() & held[baseline].notna()
        comp.held_out_p = paired_test(held.loc[both, comp.chosen].to_numpy(), held.loc[both, baseline].to_numpy(),
                                      test, resamples, seed)
    return comp


def _choose(summary: pd.DataFrame, results: pd.DataFrame, metric: str, baseline: str, test: str, alpha: float,
            resamples: int, seed: int) -> Comparison:
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
    runner_up, runner_up_p = None, float("nan")
    rest = table.index[(table.index != winner) & ~table["baseline"]]
    if winner is not None and len(rest):
        runner_up = str(rest[0])  # the table is sorted best mean first
        both = scores[winner].notna() & scores[runner_up].notna()
        runner_up_p = run_test(scores.loc[both, winner].to_numpy(), scores.loc[both, runner_up].to_numpy())
    return Comparison(metric, baseline, test, alpha, table, winner, runner_up, runner_up_p)


def compare_results(results: Mapping[str, Any], metric: str, baseline: str, test: str = "randomization",
                    alpha: float = 0.05) -> Comparison:
    """:func:`compare` for evaluations held in memory (a notebook's ``evaluate`` results: anything with a
    ``summary`` dict and a ``per_query`` frame indexed by query id), keyed by a name that serves as id and name."""
    summary = pd.DataFrame([{"config_id": name, "name": name, "status": "done",
                             **{k: r.summary.get(k, np.nan) for k in ("latency_p50_ms", "latency_p95_ms")}}
                            for name, r in results.items()])
    scores = pd.concat([r.per_query.reset_index().assign(config_id=name) for name, r in results.items()])
    return compare(summary, scores, metric, baseline, test, alpha)
