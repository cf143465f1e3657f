"""The statistics behind every comparison: bootstrap intervals, paired tests (``randomization``: Fisher's paired
randomisation test, sign flips, two-sided; ``t-test``: paired Student's t-test, two-sided), a one-sided permutation
test for unpaired groups, Holm's correction, Cohen's d for paired samples (mean difference over the standard
deviation of the differences) and the Pareto front. Pure functions of arrays.
"""

from __future__ import annotations

import numpy as np

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


def permutation_less(a, b, resamples: int = 10_000, seed: int = 0) -> float:
    """One-sided p-value that mean(a) < mean(b) by chance: random relabellings of a + b giving a difference at
    least as low as the observed one (p = (hits + 1) / (resamples + 1))."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    observed = a.mean() - b.mean()
    pooled = np.concatenate([a, b])
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, resamples, 1000):  # blocks keep memory bounded for large query sets
        perms = rng.permuted(np.tile(pooled, (min(1000, resamples - start), 1)), axis=1)
        diffs = perms[:, : len(a)].mean(axis=1) - perms[:, len(a):].mean(axis=1)
        hits += int((diffs <= observed + 1e-12).sum())
    return (hits + 1) / (resamples + 1)
