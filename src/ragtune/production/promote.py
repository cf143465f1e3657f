"""Promotion: freeze the winner of a sweep into ``ragtune/production/release/``, with provenance and floors.

The candidate is the sweep's winner by the rule of the comparison (significant after Holm's correction; on a tie
the faster configuration), or the baseline when nothing beats it. It replaces the current production configuration
only when it is significantly better on the primary metric, or shown to be as good (a one-sided non-inferiority
test within MARGIN) and significantly faster: by a paired test on per-query latency timed again for both,
interleaved in one process (``evaluation.latency``), and by at least MIN_SPEEDUP. The release folder is written
beside its target and swapped in.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ragtune.experiments.compare import compare
from ragtune.stats import bootstrap_ci, paired_test
from ragtune.config import RagConfig
from ragtune.data import load_corpus, load_dataset
from ragtune.workspace import Workspace, atomic_write_dir, atomic_write_text
from ragtune.errors import RagtuneError
from ragtune.evaluation.latency import time_configs
from ragtune.production import RELEASE_DIR, Release, load_release
from ragtune.project import find_project
from ragtune.experiments.sweep import SweepSpec, read_results

REGRESSION_TEST = Path("tests") / "test_production_regression.py"  # in the project folder


def project_regression_test(start: Path | None = None) -> Path | None:
    """Where a promotion writes the regression test: ``tests/test_production_regression.py`` of the project at or
    above ``start`` (the current directory); None outside a project or in one without a ``tests`` folder."""
    root = find_project(start)
    return root / REGRESSION_TEST if root is not None and (root / REGRESSION_TEST).parent.is_dir() else None


@dataclass
class Decision:
    promote: bool
    reason: str
    candidate: RagConfig
    provenance: dict = field(default_factory=dict)
    diff: str = ""
    written: bool = False


def _spec(folder: Path) -> SweepSpec:
    spec = SweepSpec.of_folder(folder)
    if spec is None:
        raise RagtuneError(f"{folder}: no spec.yaml: not a sweep folder written by `ragtune sweep`")
    return spec


def _production_scores(release: Release, spec: SweepSpec, results: pd.DataFrame, workspace: Workspace | None) -> pd.DataFrame:
    """Per-query scores of the production config on the sweep's queries: from the sweep when it ran that config,
    else evaluated now on the sweep's dataset."""
    mine = results[results["config_id"] == release.config.id]
    if not mine.empty:
        return mine.set_index("query_id")
    from ragtune.evaluation.run import evaluate

    ds = load_dataset(spec.dataset, spec.split, spec.queries)
    return evaluate(release.config, ds, workspace).per_query


#: "as good and faster" needs the candidate's median latency lower by at least this share, besides significance:
#: a few per cent is within what a machine's state moves between runs
MIN_SPEEDUP = 0.10

#: ... and its primary metric shown to be no worse than production's by more than this (absolute, on the metric's own
#: scale): one point of nDCG, recall or MRR
MARGIN = 0.01


def decide(folder: Path, release: Release | None, alpha: float = 0.05, test: str = "randomization",
           workspace: Workspace | None = None, latency_rounds: int = 5,
           margin: float = MARGIN) -> tuple[Decision, pd.DataFrame, pd.DataFrame, SweepSpec]:
    spec = _spec(folder)
    summary, results = read_results([folder])
    comp = compare(summary, results, spec.primary_metric, spec.baseline_config().id, test, alpha)
    chosen = comp.winner or comp.baseline
    done = summary.set_index("config_id")
    candidate = RagConfig.from_yaml(folder / "configs" / chosen / "config.yaml")
    why = (f"the sweep's winner ({comp.verdict()})" if comp.winner
           else f"the sweep's baseline: {comp.verdict()}")
    mine = results[results["config_id"] == chosen].set_index("query_id")
    if comp.held_out:  # chosen on dev: decided against production, and reported, on the held-out test queries
        mine = mine[mine["split"] == "test"]
    if release is None:
        return Decision(True, f"no production configuration yet; promoting {why}", candidate), mine, done, spec
    if release.config.id == candidate.id:
        return Decision(False, f"{candidate.id} is already in production (release v{release.version})", candidate), mine, done, spec
    prod = _production_scores(release, spec, results, workspace)
    metric = spec.primary_metric
    both = mine.index.intersection(prod.index)
    a, b = mine.loc[both, metric].to_numpy(float), prod.loc[both, metric].to_numpy(float)
    delta = float(a.mean() - b.mean())
    p = paired_test(a, b, test)  # the test the user chose, against production as within the sweep
    versus = f"{metric} {a.mean():.4f} vs production {b.mean():.4f} (delta {delta:+.4f}, p {p:.4g}, {len(both)} queries)"
    if p < alpha and delta > 0:
        return Decision(True, f"significantly better than production {release.config.id}: {versus}", candidate), mine, done, spec
    if p < alpha:
        return Decision(False, f"significantly worse than production {release.config.id}: {versus}", candidate), mine, done, spec
    # "as good as" needs evidence, not only a difference too small to be significant on a few queries: a one-sided
    # test of non-inferiority, the lower bound of the (1 - 2 alpha) bootstrap interval of the paired difference
    low = bootstrap_ci(a - b, level=1 - 2 * alpha)[0]
    if not low >= -margin:
        return Decision(False, f"not shown to be as good as production {release.config.id} ({versus}): the "
                               f"{1 - 2 * alpha:.0%} interval of the difference reaches {low:+.4f}, beyond the margin "
                               f"of {margin:g}; production stays", candidate), mine, done, spec
    # latency decides only when timed fairly: both configurations again, now, interleaved (evaluation.latency)
    trial = time_configs([candidate, release.config], load_dataset(spec.dataset, spec.split, spec.queries),
                         workspace, latency_rounds)
    la, lb = trial.per_query[candidate.id].to_numpy(float), trial.per_query[release.config.id].to_numpy(float)
    p_lat = paired_test(la, lb, test)
    gain = 1 - float(np.median(la)) / float(np.median(lb))
    timing = (f"latency median {np.median(la):.2f} ms vs {np.median(lb):.2f} ms ({gain:+.0%} faster, p {p_lat:.4g}; "
              f"{trial.describe()})")
    if p_lat < alpha and gain >= MIN_SPEEDUP:
        return Decision(True, f"as good as production ({versus}) and faster: {timing}", candidate), mine, done, spec
    return Decision(False, f"not significantly better than production {release.config.id} ({versus}) and not "
                           f"faster by at least {MIN_SPEEDUP:.0%}: {timing}; production stays", candidate), mine, done, spec


def provenance_for(candidate: RagConfig, per_query: pd.DataFrame, row: pd.Series, spec: SweepSpec, folder: Path,
                   release: Release | None, reason: str) -> dict:
    numeric = per_query.select_dtypes("number")
    quality = [c for c in numeric.columns if not c.endswith("_ms") and numeric[c].notna().any()]
    metrics = {}
    for metric in quality:
        low, high = bootstrap_ci(per_query[metric].dropna())
        metrics[metric] = {"mean": float(per_query[metric].mean()), "ci_low": low, "ci_high": high}
    corpus = load_corpus(spec.dataset_path())
    return {
        "version": (release.version + 1) if release else 1,
        "config_id": candidate.id,
        "config_name": candidate.name,
        "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reason": reason,
        "previous_config_id": release.config.id if release else None,
        "sweep": {"name": spec.name, "folder": str(folder), "primary_metric": spec.primary_metric},
        "wandb_run": None if pd.isna(row.get("wandb_run")) else row.get("wandb_run"),
        "dataset": {"path": spec.dataset, "split": spec.split, "queries": spec.queries,
                    "corpus_fingerprint": corpus.fingerprint, "documents": len(corpus.documents),
                    "judged_queries": int(len(per_query)),
                    # with a query split: the held-out queries the metrics and floors were measured on
                    **({"query_ids": sorted(per_query.index)} if spec.query_split is not None else {})},
        "metrics": metrics,
        "latency_ms": {"p50": float(np.percentile(per_query["latency_ms"], 50)),
                       "p95": float(np.percentile(per_query["latency_ms"], 95))},
        "floors": floors(metrics, candidate.quality_metrics, len(per_query)),
    }


def floors(metrics: dict[str, dict], names: list[str], queries: int) -> dict[str, float]:
    """The regression test and the pipeline's gate fail when a metric falls below its floor: the lower bound of
    its 95% bootstrap interval at promotion, but never above the mean less one query's worth (1/n). When every query
    scored the same (recall 1.0 everywhere) the bootstrap interval has no width, and one lost query out of many is
    no evidence of a regression."""
    return {m: min(metrics[m]["ci_low"], metrics[m]["mean"] - 1.0 / queries) for m in names if m in metrics}


def promote(folder: str | Path, dry_run: bool = False, alpha: float = 0.05, test: str = "randomization",
            release_dir: Path = RELEASE_DIR, regression_test: Path | None = None,
            workspace: Workspace | None = None, latency_rounds: int = 5, margin: float | None = None) -> Decision:
    folder = Path(folder)
    margin = MARGIN if margin is None else margin
    release = load_release(release_dir)
    decision, per_query, summary, spec = decide(folder, release, alpha, test, workspace, latency_rounds, margin)
    if not decision.promote:
        return decision
    cand = decision.candidate
    decision.provenance = provenance_for(cand, per_query, summary.loc[cand.id], spec, folder, release, decision.reason)
    new_yaml = f"# production config, release v{decision.provenance['version']} (id {cand.id})\n{cand.to_yaml()}"
    old_yaml = (release_dir / "config.yaml").read_text(encoding="utf-8") if release else ""
    decision.diff = "".join(difflib.unified_diff(old_yaml.splitlines(True), new_yaml.splitlines(True),
                                                 "production/config.yaml (current)", "production/config.yaml (new)"))
    if dry_run:
        return decision

    def fill(tmp: Path) -> None:
        (tmp / "config.yaml").write_text(new_yaml, encoding="utf-8")
        (tmp / "provenance.json").write_text(json.dumps(decision.provenance, indent=2) + "\n", encoding="utf-8")

    atomic_write_dir(Path(release_dir), fill)
    if regression_test is not None:
        atomic_write_text(Path(regression_test), regression_test_source(decision.provenance, Path(release_dir),
                                                                        Path(regression_test)))
    decision.written = True
    return decision


def regression_test_source(provenance: dict, release_dir: Path, test_path: Path) -> str:
    import os

    relative = Path(os.path.relpath(release_dir.resolve(), test_path.resolve().parent)).as_posix()
    return f'''"""Regression test of the production configuration. Written by `ragtune promote` (release v{provenance["version"]},
config {provenance["config_id"]}, {provenance["promoted_at"]}); regenerated by the next promotion.

It evaluates the frozen configuration on the dataset it was promoted on, and fails when any metric falls below the
lower bound of its 95% confidence interval at promotion (the floors in provenance.json). It uses the project's
workspace ($RAGTUNE_HOME, default .ragtune), as `ragtune eval` does: what the project's sweeps already embedded and
re-ranked (keyed by model and text) is read back, not computed again.
"""

from pathlib import Path

import pytest

from ragtune.workspace import Workspace
from ragtune.production import evaluate_release, load_release

RELEASE = Path(__file__).resolve().parent / "{relative}"


def test_production_config_keeps_its_promoted_quality():
    release = load_release(RELEASE)
    if release is None:
        pytest.skip(f"no production release in {{RELEASE}}")
    dataset = release.provenance["dataset"]["path"]
    if dataset != "sample" and not Path(dataset).is_dir():
        pytest.skip(f"the promotion dataset {{dataset}} is not here")
    result = evaluate_release(release, Workspace.default())
    below = [c for c in release.checks(result.summary) if not c["passed"]]
    assert not below, f"metrics below their promoted floors: {{below}}"
'''
