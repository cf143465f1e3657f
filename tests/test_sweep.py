import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ragtune.errors import ConfigError
from ragtune.experiments.sweep import SweepSpec, merge, read_results, run_sweep, shard
from wandb_records import read_run

SPEC = {
    "name": "small",
    "dataset": "sample",
    "queries": 10,
    "base": {"chunking": {"size": 128, "overlap": 16}},
    "grid": {"retrieval.mode": ["fts", "vector", "hybrid"]},
    "configs": [{"retrieval.mode": "hybrid", "retrieval.fusion": "linear"}],
    "baseline": {"retrieval.mode": "fts"},
    "tracking": {"mode": "offline"},
}


def write_spec(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return path


@pytest.fixture(scope="module")
def papermill_sweep(tmp_path_factory, workspace):
    root = tmp_path_factory.mktemp("sweep")
    spec = SweepSpec.from_yaml(write_spec(root / "spec.yaml"))
    moves, cwd = [], os.getcwd()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "chdir", lambda path, chdir=os.chdir: (moves.append(path), chdir(path)))
        report = run_sweep(spec, root / "out", workers=2, home=workspace.home, progress=False)
    here = os.getcwd()
    os.chdir(cwd)  # so that one failure does not move the tests after it
    return spec, report, (moves, cwd, here)


def test_a_sweep_on_two_workers_never_moves_this_process(papermill_sweep):
    """Two workers are threads of one process: a change of its working directory by one (papermill's ``cwd``) moved
    the other and left the caller in a configuration's folder. (papermill still calls chdir around each read and
    write of a notebook, into the folder it was started from, which stays where it is.)"""
    spec, report, (moves, before, after) = papermill_sweep
    assert report.count("done") >= 2 and moves and {str(m) for m in moves} == {before} and after == before
    notebooks = sorted((report.out / "configs").glob("*/notebook.ipynb"))
    assert len(notebooks) == report.count("done")


def test_expansion_dedupes_and_includes_the_baseline(tmp_path):
    spec = SweepSpec.from_yaml(write_spec(tmp_path / "s.yaml", grid={"retrieval.mode": ["vector", "hybrid"],
                                                                    "retrieval.rrf_k": [10, 60]}))
    configs = spec.expand()
    # vector ignores rrf_k (2 configs collapse into 1), hybrid keeps both, plus the linear entry and the fts baseline
    assert len(configs) == 1 + 2 + 1 + 1
    assert len({c.id for c in configs}) == len(configs)
    assert spec.baseline_config().id in {c.id for c in configs}
    assert all(c.name.startswith("small/") for c in configs)


def test_shards_partition_the_sweep_deterministically(tmp_path):
    configs = SweepSpec.from_yaml(write_spec(tmp_path / "s.yaml")).expand()
    parts = [shard(configs, i, 3) for i in (1, 2, 3)]
    ids = [c.id for part in parts for c in part]
    assert sorted(ids) == sorted(c.id for c in configs) and len(ids) == len(set(ids))
    assert [c.id for c in shard(list(reversed(configs)), 2, 3)] == [c.id for c in parts[1]]
    with pytest.raises(ConfigError, match="expected 1 <= i <= n"):
        shard(configs, 4, 3)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"gird": {}}, "gird: unknown key"),
        ({"grid": {}, "configs": []}, "the sweep is empty"),
        ({"grid": {"chunking.size": []}}, "grid key 'chunking.size' needs a non-empty list"),
        ({"grid": {"chunking.sise": [1]}}, "chunking.sise: unknown key"),
        ({"grid": {"chunking.size": [64, -1]}}, "grid entry size=-1"),
        ({"dataset": "/nonexistent/data"}, "dataset '/nonexistent/data' not found"),
        ({"primary_metric": "mrr@3"}, "primary_metric 'mrr@3' is not among the metrics"),
        ({"metrics": ["ndcg@10", "bleu"]}, "unknown metric 'bleu'"),
        ({"name": "has space"}, "name"),
    ],
)
def test_bad_specs_fail_before_any_work(tmp_path, changes, message):
    path = write_spec(tmp_path / "bad.yaml", **changes)
    with pytest.raises(ConfigError) as info:
        SweepSpec.from_yaml(path)
    assert message in str(info.value) and "bad.yaml" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_papermill_sweep_end_to_end(papermill_sweep):
    spec, report, _ = papermill_sweep
    out = report.out
    assert report.count("done") == 4 and report.count("failed") == 0
    summary = pd.read_parquet(out / "summary.parquet")
    results = pd.read_parquet(out / "results.parquet")
    assert sorted(summary["config_id"]) == sorted(c.id for c in spec.expand())
    assert (summary["status"] == "done").all()
    assert len(results) == 4 * 10 and results.groupby("config_id").size().eq(10).all()
    # the summary's means are the means of the per-query table
    for cid, grp in results.groupby("config_id"):
        row = summary.set_index("config_id").loc[cid]
        assert row["ndcg@10"] == pytest.approx(grp["ndcg@10"].mean())
    # each configuration's executed notebook is kept, with its outputs
    for cid in summary["config_id"]:
        nb = json.loads((out / "configs" / cid / "notebook.ipynb").read_text())
        assert any(cell.get("outputs") for cell in nb["cells"] if cell["cell_type"] == "code")
        assert (out / "configs" / cid / "plots" / "per_query.png").stat().st_size > 1000


def test_offline_wandb_runs_hold_config_metrics_and_table(papermill_sweep):
    spec, report, _ = papermill_sweep
    runs = {d: read_run(d) for d in sorted((report.out / "wandb").glob("offline-run-*"))}
    evals = {d: r for d, r in runs.items() if r["run"].job_type == "eval"}
    assert len(evals) == 4
    summary = pd.read_parquet(report.out / "summary.parquet").set_index("config_id")
    for run_dir, run in evals.items():
        assert run["run"].run_group == "small" and run["run"].project == "ragtune"
        cid = run["config"]["config_id"]
        assert run["config"]["retrieval"]["mode"] == summary.loc[cid, "param.retrieval.mode"]
        assert run["summary"]["ndcg@10"] == pytest.approx(summary.loc[cid, "ndcg@10"])
        assert "latency_p95_ms" in run["summary"] and run["summary"]["queries"] == 10
        assert run["history"]["per_query._type"] == "table-file" and run["history"]["per_query.nrows"] == 10
        assert run["history"]["per_query_plot._type"] == "image-file"
        table = next((run_dir / "files" / "media" / "table").glob("per_query*.table.json"))
        data = json.loads(table.read_text())
        assert len(data["data"]) == 10 and "ndcg@10" in data["columns"]
        assert summary.loc[cid, "wandb_run"] == run["run"].run_id
    (sweep_run,) = [r for r in runs.values() if r["run"].job_type == "sweep"]
    assert sweep_run["run"].run_group == "small" and "small-results" in sweep_run["artifacts"]


def test_rerun_skips_completed_configs(papermill_sweep, workspace):
    spec, report, _ = papermill_sweep
    again = run_sweep(spec, report.out, runner="inprocess", home=workspace.home, progress=False)
    assert again.count("skipped") == 4 and again.count("done") == 0


def test_shards_together_equal_the_unsharded_sweep(papermill_sweep, workspace, tmp_path):
    spec, report, _ = papermill_sweep
    for i in (1, 2):
        run_sweep(spec, tmp_path / f"shard{i}", shard_of=(i, 2), runner="inprocess", home=workspace.home,
                  progress=False)
    merged, merged_results = merge([tmp_path / "shard1", tmp_path / "shard2"], tmp_path / "merged")
    whole, whole_results = read_results([report.out])
    quality = ["ndcg@10", "recall@100", "mrr@10", "map"]
    a = merged.set_index("config_id").sort_index()[quality]
    b = whole.set_index("config_id").sort_index()[quality]
    pd.testing.assert_frame_equal(a, b)
    key = ["config_id", "query_id"]
    pd.testing.assert_frame_equal(merged_results.sort_values(key)[key + quality].reset_index(drop=True),
                                  whole_results.sort_values(key)[key + quality].reset_index(drop=True))


def test_a_crashing_config_is_recorded_and_the_sweep_goes_on(tmp_path, workspace):
    spec = SweepSpec.from_yaml(write_spec(
        tmp_path / "s.yaml", grid={"retrieval.mode": ["fts"]},
        configs=[{"embedding.model": "openai:none", "embedding.base_url": "http://127.0.0.1:9/v1"}],
        tracking={"mode": "disabled"}))
    report = run_sweep(spec, tmp_path / "out", runner="inprocess", home=workspace.home, progress=False)
    assert report.count("failed") == 1 and report.count("done") == 1
    failed = next(o for o in report.outcomes if o.status == "failed")
    record = json.loads((tmp_path / "out" / "configs" / failed.config_id / "failed.json").read_text())
    assert "127.0.0.1:9" in record["error"] and "Traceback" in record["traceback"]
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet").set_index("config_id")
    assert summary.loc[failed.config_id, "status"] == "failed"
    assert not (tmp_path / "out" / "configs" / failed.config_id / "result").exists()


def test_killed_sweep_resumes_with_only_the_missing_configs(tmp_path, workspace):
    spec_path = write_spec(tmp_path / "s.yaml", tracking={"mode": "disabled"},
                           grid={"retrieval.mode": ["fts", "vector", "hybrid"], "retrieval.top_k": [5, 10]})
    out = tmp_path / "out"
    total = len(SweepSpec.from_yaml(spec_path).expand())
    cmd = [sys.executable, "-m", "ragtune.cli", "sweep", str(spec_path), "--out", str(out),
           "--home", str(workspace.home)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not list(out.glob("configs/*/result")):
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its notebook kernels
        proc.wait()
    complete = {p.parent.name for p in out.glob("configs/*/result")}
    assert 1 <= len(complete) < total
    for result in out.glob("configs/*/result"):  # nothing half-written: a result folder is whole or absent
        assert {"metrics.json", "per_query.parquet", "run.trec"} <= {p.name for p in result.iterdir()}
    report = run_sweep(SweepSpec.from_yaml(spec_path), out, runner="inprocess", home=workspace.home, progress=False)
    assert {o.config_id for o in report.outcomes if o.status == "skipped"} == complete
    assert report.count("done") == total - len(complete)
    assert len(pd.read_parquet(out / "results.parquet")) == total * 10
