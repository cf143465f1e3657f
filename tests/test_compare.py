"""Comparing a sweep's configurations: the leaderboard, Holm-corrected paired tests and the winner rule."""

import numpy as np
import pandas as pd
import pytest

from ragtune.errors import RagtuneError
from ragtune.experiments.compare import compare
from ragtune.stats import holm


def frames(per_config: dict[str, np.ndarray], latency: dict[str, float] | None = None):
    rows, summary = [], []
    for cid, scores in per_config.items():
        rows += [{"config_id": cid, "query_id": f"q{i}", "ndcg@10": s} for i, s in enumerate(scores)]
        summary.append({"config_id": cid, "name": f"s/{cid}", "status": "done", "ndcg@10": scores.mean(),
                        "latency_p50_ms": (latency or {}).get(cid, 1.0), "latency_p95_ms": (latency or {}).get(cid, 1.0)})
    return pd.DataFrame(summary), pd.DataFrame(rows)


def test_winner_only_when_significant_after_correction():
    rng = np.random.default_rng(4)
    base = rng.uniform(0.2, 0.8, 60)
    configs = {"base": base, "better": np.clip(base + 0.08 + rng.normal(0, 0.03, 60), 0, 1),
               "noise": np.clip(base + rng.normal(0, 0.05, 60), 0, 1), "worse": np.clip(base - 0.1, 0, 1)}
    summary, results = frames(configs)
    comp = compare(summary, results, "ndcg@10", "base")
    assert comp.winner == "better"
    t = comp.table
    assert t.loc["better", "significant"] and not t.loc["noise", "significant"]
    assert t.loc["worse", "significant"] and t.loc["worse", "delta"] < 0  # significantly worse is not a winner
    assert t.loc["better", "ci_low"] < t.loc["better", "mean"] < t.loc["better", "ci_high"]
    raw = t.loc[["better", "noise", "worse"], "p_value"].to_numpy()
    assert t.loc[["better", "noise", "worse"], "p_holm"].to_numpy() == pytest.approx(holm(raw))
    assert "winner: s/better (better)" in comp.verdict()

    only_noise = {k: configs[k] for k in ("base", "noise")}
    comp = compare(*frames(only_noise), "ndcg@10", "base")
    assert comp.winner is None
    assert "the baseline s/base (base)" in comp.verdict() and "keep the baseline" in comp.verdict()

def test_the_verdict_says_whether_the_winner_is_ahead_of_the_runner_up():
    """Beating the baseline is not beating the rest: the verdict tests the winner against the next best."""
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(7)
    base = rng.uniform(0.2, 0.6, 80)
    close = {"base": base, "best": base + 0.20 + rng.normal(0, 0.05, 80), "second": base + 0.19 + rng.normal(0, 0.05, 80)}
    comp = compare(*frames(close), "ndcg@10", "base", test="t-test")
    assert comp.winner == "best" and comp.runner_up == "second"
    assert comp.runner_up_p == pytest.approx(ttest_rel(close["best"], close["second"]).pvalue)
    assert comp.runner_up_p > 0.05 and "not significantly ahead of the runner-up s/second" in comp.verdict()

    apart = {**close, "second": base + 0.05 + rng.normal(0, 0.05, 80)}
    comp = compare(*frames(apart), "ndcg@10", "base", test="t-test")
    assert comp.runner_up == "second" and comp.runner_up_p < 0.05
    assert "; significantly ahead of the runner-up s/second" in comp.verdict()
    alone = compare(*frames({"base": base, "best": close["best"]}), "ndcg@10", "base")
    assert alone.runner_up is None and "runner-up" not in alone.verdict()


def test_a_tie_goes_to_the_faster_configuration():
    base = np.linspace(0.1, 0.5, 50)
    configs = {"base": base, "slow": base + 0.2, "fast": base + 0.2}
    comp = compare(*frames(configs, {"base": 1.0, "slow": 50.0, "fast": 5.0}), "ndcg@10", "base", test="t-test")
    assert comp.winner == "fast"

def test_compare_errors_are_clear():
    summary, results = frames({"a": np.ones(5)})
    with pytest.raises(RagtuneError, match="baseline zzz has no completed result"):
        compare(summary, results, "ndcg@10", "zzz")
    with pytest.raises(RagtuneError, match="metric 'mrr@3' is not in the results"):
        compare(summary, results, "mrr@3", "a")
    with pytest.raises(RagtuneError, match="unknown test"):
        compare(summary, results, "ndcg@10", "a", test="anova")
