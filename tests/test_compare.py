import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ragtune.errors import RagtuneError
from ragtune.experiments.compare import compare
from ragtune.stats import bootstrap_ci, cohens_d, holm, paired_t_test, pareto_front, randomization_test


@pytest.mark.parametrize("seed", range(5))
def test_holm_equals_statsmodels(seed):
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(seed).uniform(0, 0.2, size=12)
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-12)


def test_paired_t_test_equals_the_textbook_formula():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.1, 40)
    b = a - rng.normal(0.02, 0.05, 40)
    d = a - b
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    assert paired_t_test(a, b) == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1), rel=1e-9)
    assert paired_t_test(a, a) == 1.0


def test_randomization_test_approaches_the_exact_permutation_p_value():
    rng = np.random.default_rng(2)
    d = rng.normal(0.05, 0.1, 12)
    a, b = d + 0.5, np.full(12, 0.5)
    exact = np.mean([abs(np.mean(d * s)) >= abs(d.mean()) - 1e-12
                     for s in itertools.product([-1, 1], repeat=12)])
    assert randomization_test(a, b, resamples=20_000) == pytest.approx(exact, abs=0.01)
    assert randomization_test(a, a) == 1.0


def test_bootstrap_interval_matches_the_normal_approximation():
    x = np.random.default_rng(3).normal(0.6, 0.2, 400)
    low, high = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert low < x.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)


def test_cohens_d_and_pareto_front():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 1.0, 2.5, 3.0])
    d = a - b
    assert cohens_d(a, b) == pytest.approx(d.mean() / d.std(ddof=1))
    front = pareto_front([0.9, 0.8, 0.85, 0.7], [10.0, 1.0, 20.0, 5.0])
    assert front.tolist() == [True, True, False, False]


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
    assert "winner: better" in comp.verdict()

    only_noise = {k: configs[k] for k in ("base", "noise")}
    comp = compare(*frames(only_noise), "ndcg@10", "base")
    assert comp.winner is None and "keep the baseline" in comp.verdict()


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


def test_paired_test_is_the_one_named():
    from scipy.stats import ttest_rel

    from ragtune.stats import paired_test

    rng = np.random.default_rng(3)
    a, b = rng.random(40), rng.random(40) + 0.1
    assert paired_test(a, b, "t-test") == pytest.approx(ttest_rel(a, b).pvalue)
    assert paired_test(a, b) == randomization_test(a, b)
    with pytest.raises(RagtuneError, match="expected one of randomization, t-test"):
        paired_test(a, b, "wilcoxon")
