"""The statistics every comparison rests on, checked against textbook formulas, scipy and statsmodels."""

import itertools

import numpy as np
import pytest
from scipy import stats

from ragtune.errors import RagtuneError
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


def test_paired_test_is_the_one_named():
    from scipy.stats import ttest_rel

    from ragtune.stats import paired_test

    rng = np.random.default_rng(3)
    a, b = rng.random(40), rng.random(40) + 0.1
    assert paired_test(a, b, "t-test") == pytest.approx(ttest_rel(a, b).pvalue)
    assert paired_test(a, b) == randomization_test(a, b)
    with pytest.raises(RagtuneError, match="expected one of randomization, t-test"):
        paired_test(a, b, "wilcoxon")
