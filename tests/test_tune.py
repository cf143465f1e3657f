"""ragtune tune: a search space that validates and draws conditional keys right, a study that prunes, resumes after
an interrupt, never lets a test query reach the search, and leaves a sweep folder compare reads."""

import json

import optuna
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import RagConfig
from ragtune.data import load_dataset, sample_dataset_path
from ragtune.errors import ConfigError, RagtuneError
from ragtune.experiments import tune as tune_module
from ragtune.experiments.leaderboard import compare_sweeps
from ragtune.experiments.space import SearchSpace
from ragtune.experiments.sweep import SweepSpec, run_sweep
from ragtune.experiments.tune import folder_lock, run_tune, study_storage
from wandb_records import read_run

SPEC = {
    "name": "small-search",
    "dataset": "sample",
    "base": {"chunking": {"size": 128, "overlap": 16}},
    "baseline": {"name": "bm25", "retrieval.mode": "fts"},
    "query_split": {"dev": 0.7},
    "space": {
        "chunking.size": [128, 256],
        "retrieval.mode": ["fts", "vector", "hybrid"],
        "retrieval.fusion": {"values": ["rrf", "linear"], "if": {"retrieval.mode": "hybrid"}},
        "retrieval.rrf_k": {"low": 10, "high": 120, "log": True, "if": {"retrieval.fusion": "rrf"}},
        "retrieval.weight": {"low": 0.1, "high": 0.9, "step": 0.1, "if": {"retrieval.fusion": "linear"}},
    },
    "tune": {"startup_trials": 3, "rungs": [0.25, 1.0], "seed": 1},
    "tracking": {"mode": "offline"},
}
TRIALS = 8


def write_spec(path, **changes):
    path.write_text(yaml.safe_dump({**SPEC, **changes}, sort_keys=False))
    return path


def dev_and_test(spec: SweepSpec) -> tuple[set, set]:
    """The split, computed from the dataset and the spec's split rule (not from the tune's own bookkeeping)."""
    ids = [q.id for q in load_dataset(sample_dataset_path()).judged()]
    side = spec.query_split.assign(ids)
    return {q for q in ids if side[q] == "dev"}, {q for q in ids if side[q] == "test"}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, workspace):
    root = tmp_path_factory.mktemp("tune")
    spec = SweepSpec.from_yaml(write_spec(root / "spec.yaml"))
    report = run_tune(spec, root / "out", TRIALS, workspace.home, progress=False)
    return spec, report


# -- the space ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry, message", [
    ({"retrieval.nonsense": [1, 2]}, "space.retrieval.nonsense: value 1 is not valid"),
    ({"retrieval.mode": ["fts", "bm42"]}, "space.retrieval.mode: value 'bm42' is not valid"),
    ({"chunking.size": {"low": 512, "high": 128}}, "space.chunking.size: a range needs low < high"),
    ({"chunking.size": {"values": [128], "low": 1, "high": 2}}, "give either values"),
    ({"retrieval.weight": {"low": 0, "high": 1, "log": True}}, "a log range needs low > 0"),
    ({"retrieval.rrf_k": {"low": 10, "high": 100, "if": {"retrieval.fussion": "rrf"}}},
     "condition on 'retrieval.fussion'"),
    ({"chunking.size": 256}, "expected a list of values or a mapping"),
])
def test_space_errors_name_the_key(entry, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SearchSpace.parse(entry, RagConfig(), "search.yaml")


def test_conditional_keys_are_drawn_only_under_their_conditions():
    space = SearchSpace.parse(SPEC["space"], RagConfig(), "spec")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    draws = []
    for _ in range(300):
        trial = study.ask()
        draws.append(space.suggest(trial, RagConfig()))
        study.tell(trial, 0.0)
    for d in draws:
        assert ("retrieval.fusion" in d) == (d["retrieval.mode"] == "hybrid")
        assert ("retrieval.rrf_k" in d) == (d.get("retrieval.fusion") == "rrf")  # not under the base's fusion
        assert ("retrieval.weight" in d) == (d.get("retrieval.fusion") == "linear")
        if "retrieval.rrf_k" in d:
            assert isinstance(d["retrieval.rrf_k"], int) and 10 <= d["retrieval.rrf_k"] <= 120
        if "retrieval.weight" in d:  # on the step grid exactly, so equal configurations get equal ids
            assert d["retrieval.weight"] in {round(0.1 * i, 1) for i in range(1, 10)}
    modes = {d["retrieval.mode"] for d in draws}
    assert modes == {"fts", "vector", "hybrid"}
    assert {d.get("retrieval.fusion") for d in draws} == {None, "rrf", "linear"}


def test_a_sweep_of_a_space_only_spec_points_to_tune(tmp_path):
    spec = SweepSpec.from_yaml(write_spec(tmp_path / "s.yaml"))
    with pytest.raises(ConfigError, match="run `ragtune tune`"):
        run_sweep(spec, tmp_path / "out", progress=False)


def test_a_spec_without_grid_configs_or_space_is_empty(tmp_path):
    with pytest.raises(ConfigError, match="the sweep is empty"):
        SweepSpec.from_yaml(write_spec(tmp_path / "s.yaml", space=None))


# -- a study -----------------------------------------------------------------------------------------------------


def test_trials_are_complete_or_pruned_and_recorded(tuned):
    spec, report = tuned
    trials = pd.read_csv(report.out / "trials.csv")
    assert len(trials) == TRIALS and set(trials["state"]) <= {"complete", "pruned"}
    assert (trials["state"] == "pruned").any(), "no trial was pruned: the pruning path is untested"
    summary = pd.read_parquet(report.out / "summary.parquet").set_index("config_id")
    dev, _ = dev_and_test(spec)
    for _, t in trials.iterrows():
        folder = report.out / "configs" / t["config_id"]
        if t["state"] == "pruned":  # stopped after its first share of the dev queries
            assert t["queries"] == -(-len(dev) // 4)
            record = json.loads((folder / "pruned.json").read_text())
            assert record["queries"] == t["queries"] and record["ndcg@10"] == pytest.approx(t["value"])
            if not (folder / "result").exists():
                assert summary.loc[t["config_id"], "status"] == "pruned"
        else:  # complete: scored on every dev query; its value is the mean over them, recomputed here
            assert t["queries"] == len(dev)
            scores = pd.read_parquet(folder / "result" / "per_query.parquet")
            assert scores.loc[sorted(dev), "ndcg@10"].mean() == pytest.approx(t["value"], abs=1e-12)
            assert summary.loc[t["config_id"], "status"] == "done"


def test_the_search_never_sees_a_test_query(tuned):
    spec, report = tuned
    dev, test = dev_and_test(spec)
    study = optuna.load_study(study_name=spec.name, storage=study_storage(report.out / "study.log"))
    assert len(study.trials) == TRIALS
    for t in study.trials:  # what each trial's score was computed on, as the study recorded it
        assert t.user_attrs["queries"] and set(t.user_attrs["queries"]) <= dev
    baseline = spec.baseline_config().id
    for cdir in (report.out / "configs").iterdir():
        path = cdir / "result" / "per_query.parquet"
        if not path.is_file():
            continue
        seen = set(pd.read_parquet(path).index)
        if cdir.name in (baseline, report.chosen):  # scored on all queries, outside the search
            assert seen == dev | test
        else:
            assert seen <= dev
    if report.chosen != baseline:  # the chosen one ran through the evaluation notebook, as a sweep runs it
        assert (report.out / "configs" / report.chosen / "notebook.ipynb").is_file()


def test_compare_reads_the_study_as_a_sweep(tuned):
    spec, report = tuned
    comp, _ = compare_sweeps([report.out], track=False)
    assert comp.chosen == report.chosen
    table = comp.table
    scored = set(table.index[table["test_mean"].notna()])
    assert scored == {spec.baseline_config().id, report.chosen}
    # the held-out score is the mean over the test queries of the per-query file, recomputed here
    _, test = dev_and_test(spec)
    scores = pd.read_parquet(report.out / "configs" / report.chosen / "result" / "per_query.parquet")
    assert table.loc[report.chosen, "test_mean"] == pytest.approx(scores.loc[sorted(test), "ndcg@10"].mean())
    assert table.loc[report.chosen, "test_queries"] == len(test)


def test_every_scored_trial_is_a_wandb_run(tuned):
    spec, report = tuned
    runs = [read_run(d) for d in sorted((report.out / "wandb").glob("offline-run-*"))]
    evals = [r for r in runs if r["run"].job_type == "eval"]
    trials = pd.read_csv(report.out / "trials.csv")
    fresh = trials[~trials["repeat"]]  # a repeat reads a score back: nothing new to log
    complete = set(fresh.loc[fresh["state"] == "complete", "config_id"])
    pruned = fresh[fresh["state"] == "pruned"]
    tagged = [r for r in evals if "pruned" in r["run"].tags]
    assert {r["config"]["config_id"] for r in evals if r not in tagged} == complete | {spec.baseline_config().id}
    assert len(tagged) == len(pruned)  # each pruned trial, with what it was scored on before it was stopped
    assert sorted(r["summary"]["queries"] for r in tagged) == sorted(pruned["queries"])
    assert all(r["run"].run_group == spec.name for r in evals)


def test_the_cli_resumes_a_finished_study_and_prints_the_choice(tuned, workspace):
    spec, report = tuned
    result = CliRunner().invoke(app, ["tune", str(report.out / "spec.yaml"), "--trials", str(TRIALS), "--out",
                                      str(report.out), "--home", str(workspace.home)])
    assert result.exit_code == 0, result.output
    assert f"{TRIALS} trials" in result.output and "held-out test" in result.output
    study = optuna.load_study(study_name=spec.name, storage=study_storage(report.out / "study.log"))
    assert len(study.trials) == TRIALS  # nothing left to run: no new trial
    if report.chosen != spec.baseline_config().id:
        assert "chosen small-search/trial-" in result.output


def test_an_interrupted_trial_is_run_again_on_resume(tmp_path, workspace, monkeypatch):
    spec = SweepSpec.from_yaml(write_spec(tmp_path / "s.yaml", tune={**SPEC["tune"], "pruner": "none"}))
    calls = {"n": 0}
    real = tune_module.evaluate

    def evaluate_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # a trial past the first, in one of its shares of the dev queries
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tune_module, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_tune(spec, tmp_path / "out", 4, workspace.home, progress=False)
    study = optuna.load_study(study_name=spec.name, storage=study_storage(tmp_path / "out" / "study.log"))
    running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 1 and running[0].number == len(study.trials) - 1
    lost = running[0]
    assert not (tmp_path / "out" / "configs" / lost.user_attrs["config_id"] / "result").exists()

    monkeypatch.setattr(tune_module, "evaluate", real)
    report = run_tune(spec, tmp_path / "out", 4, workspace.home, progress=False)
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert trials.loc[lost.number, "state"] == "interrupted"  # the lost one, marked, not counted ...
    assert (trials["state"] == "complete").sum() == 4
    again = trials.loc[lost.number + 1]  # ... and its draw run again first
    assert again["config_id"] == lost.user_attrs["config_id"] and again["state"] == "complete"
    assert report.count("complete") == 4


def test_one_tune_per_folder(tmp_path, workspace):
    spec = SweepSpec.from_yaml(write_spec(tmp_path / "s.yaml"))
    (tmp_path / "out").mkdir()
    with folder_lock(tmp_path / "out"):
        with pytest.raises(RagtuneError, match="another `ragtune tune` is running"):
            run_tune(spec, tmp_path / "out", 2, workspace.home, progress=False)


def test_a_primary_metric_the_dataset_does_not_score_is_refused_before_any_trial(tmp_path, workspace):
    spec = SweepSpec.from_yaml(write_spec(tmp_path / "s.yaml", primary_metric="span_recall@5"))  # a span metric
    with pytest.raises(ConfigError, match="'span_recall@5' is not scored on sample"):
        run_tune(spec, tmp_path / "out", 2, workspace.home, progress=False)
    assert not (tmp_path / "out" / "study.log").exists()


def test_a_primary_metric_nothing_computes_is_refused_by_the_spec(tmp_path):
    with pytest.raises(ConfigError, match="primary_metric 'span_recall@7' is not among the metrics"):
        SweepSpec.from_yaml(write_spec(tmp_path / "s.yaml", primary_metric="span_recall@7"))
