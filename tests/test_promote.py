import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ragtune.data import load_dataset
from ragtune.errors import ConfigError
from ragtune.production import load_release
from ragtune.production.promote import promote
from ragtune.experiments.sweep import SweepSpec, read_results, run_sweep

REPO = Path(__file__).resolve().parents[1]


def keyword_dataset(root: Path, docs: int = 40, seed: int = 0) -> Path:
    """A BEIR folder where keyword search must win: each document is 80 words drawn at random from the sample
    corpus's vocabulary, and each query is 4 of its document's words. BM25 finds the document almost always;
    a sentence embedder, reading word salad, much less often."""
    import random
    import re

    words = sorted({w.lower() for d in load_dataset("sample").documents for w in re.findall(r"[A-Za-z]{4,}", d.text)})
    rng = random.Random(seed)
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as c, open(root / "queries.jsonl", "w") as q, \
            open(root / "qrels" / "test.tsv", "w") as r:
        for i in range(docs):
            text = rng.sample(words, 80)
            c.write(json.dumps({"_id": f"d{i}", "text": " ".join(text)}) + "\n")
            q.write(json.dumps({"_id": f"q{i}", "text": " ".join(rng.sample(text, 4))}) + "\n")
            r.write(f"q{i}\td{i}\t1\n")
    return root


def sweep(root: Path, name: str, home: Path, dataset: Path, **spec) -> Path:
    data = {"name": name, "dataset": str(dataset), "tracking": {"mode": "disabled"}, **spec}
    out = root / name
    run_sweep(SweepSpec.model_validate(data), out, runner="inprocess", home=home, progress=False)
    return out


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, workspace):
    root = tmp_path_factory.mktemp("promote")
    data = keyword_dataset(root / "data")
    paths = {"release_dir": root / "release", "regression_test": root / "tests" / "test_production.py"}
    # v1: a sweep of the weaker configuration alone (its baseline), promoted because nothing is in production
    first = sweep(root, "dense", workspace.home, data, grid={"retrieval.mode": ["vector"]},
                  baseline={"retrieval.mode": "vector"})
    v1 = promote(first, **paths, workspace=workspace)
    v1_release = load_release(paths["release_dir"])
    # v2: a sweep where BM25 beats it clearly: its winner replaces production
    second = sweep(root, "keyword", workspace.home, data, grid={"retrieval.mode": ["vector", "fts"]},
                   baseline={"retrieval.mode": "vector"})
    v2 = promote(second, **paths, workspace=workspace)
    return {"root": root, "data": data, "paths": paths, "v1": v1, "v1_release": v1_release, "v2": v2,
            "first": first, "second": second}


def run_pytest(test_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                          cwd=REPO, capture_output=True, text=True)


def test_first_promotion_writes_config_provenance_and_regression_test(promoted):
    v1, release = promoted["v1"], promoted["v1_release"]
    assert v1.promote and v1.written and "no production configuration yet" in v1.reason
    prov = release.provenance
    assert release.config.id == v1.candidate.id == prov["config_id"] and prov["version"] == 1
    assert release.config.retrieval.mode == "vector"
    assert prov["dataset"]["corpus_fingerprint"] == load_dataset(promoted["data"]).corpus.fingerprint
    assert prov["dataset"]["judged_queries"] == 40 and prov["sweep"]["name"] == "dense"
    n = prov["dataset"]["judged_queries"]
    for metric, floor in release.floors.items():
        stats = prov["metrics"][metric]
        assert floor == min(stats["ci_low"], stats["mean"] - 1 / n) and stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
    assert set(release.floors) == set(release.config.evaluation.metrics)
    assert "+++ production/config.yaml (new)" in v1.diff


def test_a_significantly_better_winner_replaces_production(promoted):
    v2 = promoted["v2"]
    release = load_release(promoted["paths"]["release_dir"])
    assert v2.written and "significantly better than production" in v2.reason
    assert release.version == 2 and release.config.retrieval.mode == "fts"
    assert release.provenance["previous_config_id"] == promoted["v1_release"].config.id
    assert "-  mode: vector" in v2.diff and "+  mode: fts" in v2.diff
    assert release.provenance["metrics"]["ndcg@10"]["mean"] > promoted["v1_release"].provenance["metrics"]["ndcg@10"]["mean"]


def test_promoting_again_or_promoting_a_weaker_sweep_changes_nothing(promoted, workspace):
    paths = promoted["paths"]
    before = {p.name: p.read_bytes() for p in paths["release_dir"].iterdir()}
    again = promote(promoted["second"], **paths, workspace=workspace)
    assert not again.promote and "already in production" in again.reason
    weaker = promote(promoted["first"], **paths, workspace=workspace)  # vector, against production's BM25
    assert not weaker.promote and "significantly worse than production" in weaker.reason
    assert {p.name: p.read_bytes() for p in paths["release_dir"].iterdir()} == before


def test_dry_run_writes_nothing(tmp_path, promoted, workspace):
    paths = {"release_dir": tmp_path / "release", "regression_test": tmp_path / "t.py"}
    decision = promote(promoted["second"], dry_run=True, **paths, workspace=workspace)
    assert decision.promote and not decision.written and decision.diff
    assert not paths["release_dir"].exists() and not paths["regression_test"].exists()


def test_generated_regression_test_passes_then_fails_on_a_degraded_config(promoted):
    paths = promoted["paths"]
    ok = run_pytest(paths["regression_test"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 passed" in ok.stdout
    # degrade the frozen config on purpose (dense search on this keyword data), keeping the files consistent
    release_dir = paths["release_dir"]
    saved = {p.name: p.read_text() for p in release_dir.iterdir()}
    try:
        release = load_release(release_dir)
        worse = release.config.with_overrides({"retrieval.mode": "vector"})
        (release_dir / "config.yaml").write_text(worse.to_yaml())
        prov = {**release.provenance, "config_id": worse.id}
        (release_dir / "provenance.json").write_text(json.dumps(prov))
        bad = run_pytest(paths["regression_test"])
        assert bad.returncode == 1 and "below their promoted floors" in bad.stdout
    finally:
        for name, text in saved.items():
            (release_dir / name).write_text(text)


def test_damaged_releases_are_clear_errors(promoted, tmp_path):
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(promoted["paths"]["release_dir"], copy)
    text = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(text.replace("top_k: 10", "top_k: 3"))
    with pytest.raises(ConfigError, match="the frozen config was edited"):
        load_release(copy)
    (copy / "config.yaml").write_text("chunking: {size: -1}\n")
    with pytest.raises(ConfigError, match="chunking.size"):
        load_release(copy)
    (copy / "config.yaml").write_text(text)
    (copy / "provenance.json").write_text("{broken")
    with pytest.raises(ConfigError, match=r"provenance.json: not valid JSON"):
        load_release(copy)
    (copy / "provenance.json").unlink()
    with pytest.raises(ConfigError, match="incomplete \\(missing provenance.json\\)"):
        load_release(copy)
    assert load_release(tmp_path / "nothing") is None


def test_the_regression_test_goes_to_the_project_found_from_the_current_folder(tmp_path):
    from ragtune.production.promote import project_regression_test

    repo = Path(__file__).resolve().parents[1]
    assert project_regression_test(repo / "notebooks") == repo / "tests" / "test_production_regression.py"
    assert project_regression_test(tmp_path) is None  # no pipeline.yaml above: no project
    (tmp_path / "pipeline.yaml").write_text("tasks: []\n")
    assert project_regression_test(tmp_path) is None  # a project without tests/
    (tmp_path / "tests").mkdir()
    assert project_regression_test(tmp_path / "tests") == tmp_path / "tests" / "test_production_regression.py"


def test_the_committed_regression_test_is_what_promote_writes_for_the_committed_release():
    from ragtune.production import RELEASE_DIR
    from ragtune.production.promote import regression_test_source

    path = REPO / "tests" / "test_production_regression.py"
    assert path.read_text() == regression_test_source(load_release().provenance, RELEASE_DIR, path)


def same_search_under_two_ids(root: Path, workspace) -> tuple[dict, str, str, Path]:
    """Production is a vector search (top_k 10); a second sweep runs it again beside the same search under another
    id (top_k 11, its baseline and so its candidate): the same scores, until a test plants a difference."""
    data = keyword_dataset(root / "data")
    paths = {"release_dir": root / "release", "regression_test": None}
    base = {"retrieval": {"mode": "vector"}}
    first = sweep(root, "prod", workspace.home, data, base=base, grid={"retrieval.top_k": [10]},
                  baseline={"retrieval.top_k": 10})
    assert promote(first, **paths, workspace=workspace).written
    production = load_release(paths["release_dir"]).config.id
    second = sweep(root, "same", workspace.home, data, base=base, grid={"retrieval.top_k": [10, 11]},
                   baseline={"retrieval.top_k": 11})
    candidate = next(c.name for c in (second / "configs").iterdir() if c.name != production)
    return paths, production, candidate, second


def plant(sweep_folder: Path, config_id: str, change) -> pd.DataFrame:
    """``change`` applied to a configuration's per-query scores in the sweep; the sweep's results read again."""
    path = sweep_folder / "configs" / config_id / "result" / "per_query.parquet"
    frame = pd.read_parquet(path)
    change(frame)
    frame.to_parquet(path)
    return read_results([sweep_folder])[1]


def test_latency_recorded_under_a_planted_load_does_not_decide(tmp_path, workspace):
    """Production's latencies in the sweep carry a planted load (+50 ms a query): on the recorded numbers the
    candidate (the same search under another id) is significantly faster; timed fairly, it is not, and production
    stays, with the reason saying how latency was measured."""
    from ragtune.stats import paired_test

    paths, production, candidate, second = same_search_under_two_ids(tmp_path, workspace)

    def loaded(frame):
        frame["latency_ms"] += 50.0

    recorded = plant(second, production, loaded).pivot_table(index="query_id", columns="config_id", values="latency_ms")
    assert paired_test(recorded[candidate], recorded[production]) < 0.05  # the plant alone would decide

    decision = promote(second, **paths, workspace=workspace, latency_rounds=3)
    assert not decision.promote and not decision.written, decision.reason
    assert "not faster by at least 10%" in decision.reason and "timed now in one process: 40 queries x 3 rounds" \
        in decision.reason
    assert load_release(paths["release_dir"]).config.id == production


def test_a_worse_config_is_not_as_good_because_few_queries_cannot_tell_them_apart(tmp_path, workspace):
    """The candidate loses half a point of nDCG on two of 40 queries: too few for the paired test (p 0.5), so only a
    test of non-inferiority stops a faster but worse configuration from replacing production; no latency is timed."""
    from ragtune.stats import paired_test

    paths, production, candidate, second = same_search_under_two_ids(tmp_path, workspace)

    def worse(frame):
        two = frame.index[frame["ndcg@10"] >= 0.5][:2]
        assert len(two) == 2
        frame.loc[two, "ndcg@10"] -= 0.5

    scores = plant(second, candidate, worse).pivot_table(index="query_id", columns="config_id", values="ndcg@10")
    assert paired_test(scores[candidate], scores[production]) > 0.4  # the paired test cannot tell them apart

    decision = promote(second, **paths, workspace=workspace, latency_rounds=3)
    assert not decision.promote and not decision.written, decision.reason
    assert "not shown to be as good as production" in decision.reason and "timed" not in decision.reason
    loose = promote(second, dry_run=True, **paths, workspace=workspace, latency_rounds=1, margin=0.5)
    assert "timed now in one process" in loose.reason  # within a margin of half a point, latency decides
    assert load_release(paths["release_dir"]).config.id == production
