"""Held-out queries: deterministic splits by query id, the winner chosen on dev alone, and reported and promoted on
the test queries that played no part in choosing it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ragtune.errors import RagtuneError
from ragtune.experiments.compare import compare
from ragtune.experiments.splits import QuerySplit
from ragtune.stats import bootstrap_ci, paired_test


def test_a_split_is_deterministic_by_query_id_and_stable_when_queries_are_added():
    ids = [f"q{i}" for i in range(2000)]
    split = QuerySplit(dev=0.7)
    first = split.assign(ids)
    assert first == QuerySplit(dev=0.7).assign(ids)  # the same on every machine and run
    assert 0.67 < sum(v == "dev" for v in first.values()) / len(ids) < 0.73
    more = split.assign(ids + [f"new{i}" for i in range(500)])
    assert {q: more[q] for q in ids} == first  # new queries never move the old ones
    other = QuerySplit(dev=0.7, seed=1).assign(ids)
    assert sum(first[q] != other[q] for q in ids) > 500  # the seed picks another split
    explicit = QuerySplit(test=["q1", "q5"]).assign(["q1", "q2", "q5"])
    assert explicit == {"q1": "test", "q2": "dev", "q5": "test"}


@pytest.mark.parametrize("bad", [{}, {"dev": 0.7, "test": ["q1"]}, {"dev": 1.0}, {"dev": 0}, {"test": []},
                                 {"dev": 0.5, "shuffle": True}])
def test_a_bad_split_is_refused(bad):
    with pytest.raises(ValidationError):
        QuerySplit.model_validate(bad)


def frames(dev: dict[str, np.ndarray], test: dict[str, np.ndarray]):
    rows, summary = [], []
    for cid in dev:
        for part, scores in (("dev", dev[cid]), ("test", test[cid])):
            rows += [{"config_id": cid, "query_id": f"{part}{i}", "ndcg@10": s, "split": part}
                     for i, s in enumerate(scores)]
        summary.append({"config_id": cid, "name": f"s/{cid}", "status": "done", "latency_p95_ms": 1.0})
    return pd.DataFrame(summary), pd.DataFrame(rows)


def test_the_winner_is_chosen_on_dev_and_reported_on_test():
    rng = np.random.default_rng(3)
    base_dev, base_test = rng.uniform(0.2, 0.7, 60), rng.uniform(0.2, 0.7, 40)
    dev = {"base": base_dev, "lucky": base_dev + 0.1 + rng.normal(0, 0.02, 60), "meh": base_dev + 0.01}
    test = {"base": base_test, "lucky": base_test + rng.normal(0, 0.05, 40), "meh": base_test + 0.3}
    summary, results = frames(dev, test)
    comp = compare(summary, results, "ndcg@10", "base")
    assert comp.winner == "lucky" and comp.held_out  # chosen on dev, although "meh" is far better on test
    row = comp.table.loc["lucky"]
    assert row["queries"] == 60 and row["mean"] == pytest.approx(dev["lucky"].mean())
    assert row["test_queries"] == 40 and row["test_mean"] == pytest.approx(test["lucky"].mean())
    by_id = pd.DataFrame(test, index=[f"test{i}" for i in range(40)]).sort_index()  # the table's order
    assert (row["test_ci_low"], row["test_ci_high"]) == pytest.approx(bootstrap_ci(by_id["lucky"]))
    assert comp.held_out_p == pytest.approx(paired_test(by_id["lucky"].to_numpy(), by_id["base"].to_numpy()))
    assert "chosen on 60 dev queries; on the 40 held-out test queries: s/lucky" in comp.verdict()
    noise = {"base": base_dev, "noise": base_dev + rng.normal(0, 0.05, 60)}
    kept = compare(*frames(noise, {"base": base_test, "noise": base_test}), "ndcg@10", "base")
    assert kept.winner is None and "keep the baseline\nchosen on 60 dev queries" in kept.verdict()
    # the test queries never touch the choice: any other test scores, the same winner and dev columns
    changed = compare(*frames(dev, {k: rng.uniform(0, 1, 40) for k in test}), "ndcg@10", "base")
    assert changed.winner == comp.winner
    dev_columns = ["mean", "ci_low", "ci_high", "delta", "p_holm", "significant"]
    assert changed.table[dev_columns].equals(comp.table[dev_columns])


def test_a_split_that_leaves_one_side_empty_is_a_clear_error():
    summary, results = frames({"base": np.ones(5)}, {"base": np.ones(5)})
    with pytest.raises(RagtuneError, match="leaves no test query"):
        compare(summary, results[results["split"] == "dev"], "ndcg@10", "base")


def test_a_sweep_with_a_split_promotes_on_the_held_out_queries(tmp_path, workspace):
    from ragtune.experiments.sweep import SweepSpec, read_results, run_sweep
    from ragtune.production import evaluate_release, load_release
    from ragtune.production.promote import promote

    spec = SweepSpec.model_validate({
        "name": "split", "dataset": "sample", "queries": 30, "tracking": {"mode": "disabled"},
        "query_split": {"dev": 0.6}, "configs": [{"retrieval.mode": "vector"}], "baseline": {"retrieval.mode": "fts"}})
    run_sweep(spec, tmp_path / "sweep", runner="inprocess", home=workspace.home, progress=False)
    _, results = read_results([tmp_path / "sweep"])
    assigned = spec.query_split.assign(results["query_id"].unique())
    assert results["split"].tolist() == results["query_id"].map(assigned).tolist()
    test_ids = sorted(q for q, part in assigned.items() if part == "test")
    decision = promote(tmp_path / "sweep", release_dir=tmp_path / "release", regression_test=None,
                       workspace=workspace)
    assert decision.written
    release = load_release(tmp_path / "release")
    assert release.provenance["dataset"]["query_ids"] == test_ids
    chosen = results[(results["config_id"] == release.config.id) & (results["split"] == "test")]
    assert release.provenance["metrics"]["ndcg@10"]["mean"] == pytest.approx(chosen["ndcg@10"].mean())
    again = evaluate_release(release, workspace)  # the regression test and the gate read the same queries
    assert sorted(again.per_query.index) == test_ids
    assert again.summary["ndcg@10"] == pytest.approx(chosen["ndcg@10"].mean())
