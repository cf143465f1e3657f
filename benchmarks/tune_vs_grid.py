"""`ragtune tune` against the grid it replaces: the same space, run once as a grid (every configuration, in
process) and once as an Optuna study of N trials, each from its own cold workspace (both pay their embedding).
Reported: the grid's best dev score with its 95% interval, the study's best, whether the study reached the grid's
interval, both wall-clock times, and each chosen configuration's score on the held-out test queries.

    python benchmarks/tune_vs_grid.py msmarco [--trials 30]     # results in BENCHMARKS.md, "Search against a grid"
    python benchmarks/tune_vs_grid.py chunking [--trials 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import dataset_path, machine

from ragtune.experiments.leaderboard import compare_sweeps
from ragtune.experiments.sweep import SweepSpec, run_sweep
from ragtune.experiments.tune import run_tune

SPACES = {
    # short passages: first stage, fusion, embedder and re-ranking depth matter, chunking barely does
    "msmarco": {
        "primary_metric": "ndcg@10",
        "base": {"chunking": {"strategy": "sentence", "size": 256, "overlap": 32}},
        "space": {
            "retrieval.mode": ["fts", "vector", "hybrid"],
            "embedding.model": {"values": ["minilm", "bge-small"], "if": {"retrieval.mode": ["vector", "hybrid"]}},
            "retrieval.fusion": {"values": ["rrf", "linear"], "if": {"retrieval.mode": "hybrid"}},
            "rerank.model": [None, "cross-encoder"],
            "rerank.depth": {"values": [20, 50], "if": {"rerank.model": "cross-encoder"}},
        },
    },
    # three long documents, span-labelled: chunking is the question. Span IoU, not recall, is the objective: five
    # results of a big window cover most of three documents (recall 1.0) and say nothing about where the answer is
    "chunking": {
        "primary_metric": "span_iou@5",
        "base": {"embedding": {"model": "minilm"}, "retrieval": {"mode": "vector"}},
        "space": {
            "chunking.strategy": ["sentence", "token"],
            "chunking.size": [64, 128, 256, 512],
            "chunking.overlap": [0, 32],
            "retrieval.mode": ["vector", "hybrid"],
            "retrieval.window": [None, 1, 2],
        },
    },
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=sorted(SPACES))
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    setup = SPACES[args.dataset]
    common = {"dataset": str(dataset_path(args.dataset)), "primary_metric": setup["primary_metric"],
              "base": setup["base"], "query_split": {"dev": 0.7}, "tracking": {"mode": "disabled"},
              "baseline": {"name": "bm25", "retrieval.mode": "fts"}, "queries": setup.get("queries")}
    root = Path(tempfile.mkdtemp(prefix="tune-vs-grid-"))
    # the grid: every configuration of the space (conditional keys only where their condition holds)
    full = {**common, "name": f"{args.dataset}-grid", "space": setup["space"]}
    spec = SweepSpec.model_validate(full)
    grid_spec = SweepSpec.model_validate({**common, "name": f"{args.dataset}-grid", "configs": _all_configs(spec)})
    print(f"{machine()}\n{args.dataset}: grid of {len(grid_spec.expand())} configurations, tune {args.trials} trials")
    start = time.perf_counter()
    run_sweep(grid_spec, root / "grid", runner="inprocess", home=root / "grid-home", progress=False)
    grid_s = time.perf_counter() - start
    grid, _ = compare_sweeps([root / "grid"], track=False)
    start = time.perf_counter()
    report = run_tune(spec.model_copy(update={"name": f"{args.dataset}-tune"}), root / "tune", args.trials,
                      root / "tune-home", progress=False)
    tune_s = time.perf_counter() - start
    tuned, _ = compare_sweeps([root / "tune"], track=False)

    m = setup["primary_metric"]
    best = grid.table.sort_values("mean", ascending=False).iloc[0]
    top = tuned.table.sort_values("mean", ascending=False).iloc[0]
    print(f"grid: {len(grid.table)} configurations in {grid_s:.0f} s; best dev {m} {best['mean']:.4f} "
          f"(95% CI {best['ci_low']:.3f}-{best['ci_high']:.3f}), {best['name']}")
    print(f"tune: {len(report.trials)} trials ({report.count('complete')} complete, {report.count('pruned')} pruned, "
          f"{report.trials['config_id'].nunique()} distinct) in {tune_s:.0f} s; best dev {m} {top['mean']:.4f}: "
          f"{'within' if top['mean'] >= best['ci_low'] else 'below'} the grid's interval; time {tune_s / grid_s:.2f}x "
          "the grid's")
    for name, comp in (("grid", grid), ("tune", tuned)):
        row = comp.table.loc[comp.chosen]
        print(f"{name} chose {row['name']} ({comp.chosen}): dev {row['mean']:.4f}, held-out test {row['test_mean']:.4f} "
              f"({row['test_ci_low']:.3f}-{row['test_ci_high']:.3f}, {int(row['test_queries'])} queries); "
              f"baseline test {comp.table.loc[comp.baseline, 'test_mean']:.4f}, p {comp.held_out_p:.3g}")
    print(f"folders: {root}")


def _all_configs(spec: SweepSpec) -> list[dict]:
    """Every distinct configuration of a categorical space, as dotted overrides (by walking the conditions)."""
    space = spec.search_space()
    draws: list[dict] = [{}]
    for key, param in space.params.items():
        grown = []
        for d in draws:
            chosen = {**{k: v for k, v in _base_values(spec).items() if k not in space.params}, **d}
            grown.extend([{**d, key: v} for v in param.values] if param.active(chosen) else [d])
        draws = grown
    return draws


def _base_values(spec: SweepSpec) -> dict:
    from ragtune.config import flatten

    return flatten(spec.base_config().model_dump(mode="json"))


if __name__ == "__main__":
    main()
