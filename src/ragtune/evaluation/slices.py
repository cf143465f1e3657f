"""Metrics per slice of the queries (topic, language, user group: any key of the queries' metadata), and the bias
check: a slice whose scores are significantly below the rest of the queries is flagged.

Each slice is tested against the queries outside it with a one-sided permutation test of the difference in means
(slice lower), and the p-values of all slices of all keys are corrected together with Holm's method, so that
looking at many slices does not manufacture a flag.
"""

from __future__ import annotations

import pandas as pd

from ragtune.stats import holm, permutation_less

META_PREFIX = "meta."


def slice_report(per_query: pd.DataFrame, metric: str, min_size: int = 5, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (key, value) with at least ``min_size`` queries scored on ``metric``: size, mean, the mean of
    the other queries, the difference, p, Holm-corrected p, and ``flagged`` (significantly below the rest)."""
    rows = []
    keys = [c for c in per_query.columns if c.startswith(META_PREFIX)]
    for key in keys:
        frame = per_query[[key, metric]].dropna()
        for value, group in frame.groupby(key):
            rest = frame.loc[frame[key] != value, metric]
            if len(group) < min_size or len(rest) < min_size:
                continue
            scores = group[metric].to_numpy(float)
            rows.append({"key": key[len(META_PREFIX):], "value": value, "queries": len(group),
                         "mean": scores.mean(), "rest_mean": rest.mean(), "delta": scores.mean() - rest.mean(),
                         "p": permutation_less(scores, rest.to_numpy(float))})
    report = pd.DataFrame(rows, columns=["key", "value", "queries", "mean", "rest_mean", "delta", "p"])
    report["p_holm"] = holm(report["p"]) if len(report) else []
    report["flagged"] = (report["p_holm"] < alpha) & (report["delta"] < 0)
    report.insert(0, "metric", metric)
    return report


def metadata_columns(queries) -> pd.DataFrame:
    """``meta.<key>`` columns from the queries' metadata (scalar values only), indexed by query id."""
    rows = {q.id: {f"{META_PREFIX}{k}": v for k, v in (q.metadata or {}).items()
                   if isinstance(v, (str, int, bool))} for q in queries}
    return pd.DataFrame.from_dict(rows, orient="index")
