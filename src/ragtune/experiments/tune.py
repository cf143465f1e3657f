"""``ragtune tune``: Bayesian search (Optuna) over a spec's ``space``, chosen on dev queries, reported on test ones.

Every trial draws a configuration from the space and is scored on a growing share of the dev queries (the spec's
``tune.rungs``); after each share but the last the pruner may stop it (below the median of earlier trials at the
same share). Only dev queries ever reach the search: the test queries are scored for the baseline (before) and for
the chosen configuration (after, through the evaluation notebook, as a sweep runs it), never for a trial.

The folder is a sweep folder, so ``ragtune compare``, ``merge`` and ``promote`` read it unchanged::

    spec.yaml                    the spec as run (with the query split used)
    study.log                    the Optuna study (a journal file): rerun the same command to resume after a kill
    trials.csv                   one row per trial: number, state, dev score, queries scored, config id, parameters
    configs/<config id>/         as in a sweep: config.yaml, result/ (trials: dev queries only), notebook.ipynb for
                                 the chosen one, pruned.json for a pruned trial, failed.json for a crashed one
    results.parquet, summary.*   as in a sweep; pruned trials are in the summary with status "pruned"
"""

from __future__ import annotations

import fcntl
import json
import math
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from ragtune.config import RagConfig
from ragtune.data import Dataset, load_dataset
from ragtune.engine import Engine
from ragtune.errors import ConfigError, RagtuneError
from ragtune.evaluation.run import combine, evaluate
from ragtune.experiments.splits import QuerySplit, unit
from ragtune.experiments.sweep import SweepSpec, run_one, collect, record, result_dir, write_config
from ragtune.workspace import Workspace, atomic_write_text

#: the split a spec without ``query_split`` is tuned with: choosing among many trials needs held-out queries
DEFAULT_SPLIT = QuerySplit(dev=0.7)


@dataclass
class TuneReport:
    out: Path
    trials: pd.DataFrame  # trials.csv
    chosen: str  # config id: the comparison's winner on dev, or the baseline
    failed: list[str]  # errors of configurations that crashed (trials, the baseline or the chosen one's notebook)

    def count(self, state: str) -> int:
        return int((self.trials["state"] == state).sum()) if len(self.trials) else 0

    def params(self, config_id: str) -> dict:
        """What the first trial that drew ``config_id`` drew (empty for the baseline)."""
        rows = self.trials[self.trials["config_id"] == config_id]
        if rows.empty:
            return {}
        row = rows.iloc[0]
        return {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.") and pd.notna(v)}


class Splitter:
    """The dev queries in a fixed order (a hash of the seed and the id), so every trial's first quarter is the
    same quarter, and the rung sizes."""

    def __init__(self, dataset: Dataset, split: QuerySplit, rungs: list[float]):
        judged = [q.id for q in dataset.judged()]
        side = split.assign(judged)
        self.dev = sorted((q for q in judged if side[q] == "dev"), key=lambda q: unit(split.seed + 1, q))
        self.test = [q for q in judged if side[q] == "test"]
        if not self.dev or not self.test:
            raise ConfigError(f"the query split leaves {len(self.dev)} dev and {len(self.test)} test queries of "
                              f"{len(judged)}: tuning needs both (change query_split)")
        self.sizes = sorted({max(1, math.ceil(r * len(self.dev))) for r in rungs})


def run_tune(spec: SweepSpec, out: str | Path | None = None, trials: int = 30, home: Path | None = None,
             progress: bool = True) -> TuneReport:
    """Run (or resume) the study until it holds ``trials`` finished trials, then score the chosen configuration on
    the test queries and compare. Returns the report; the folder holds everything (see the module's docstring)."""
    import optuna

    spec.check()
    space = spec.search_space()
    if spec.query_split is None:
        spec = spec.with_overrides(query_split=DEFAULT_SPLIT.model_dump())
    out = Path(out) if out else Path("experiments") / "out" / spec.name
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        (out / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "utf-8")
        dataset = load_dataset(spec.dataset_path(), spec.split, spec.queries)
        splitter = Splitter(dataset, spec.query_split, spec.tune.rungs)
        ws = Workspace(home) if home else Workspace.default()
        failed: list[str] = []
        baseline = spec.baseline_config()
        outcome = run_one(spec, baseline, out, "inprocess", home)  # all queries: it is not searched
        if outcome.status == "failed":
            raise RagtuneError(f"the baseline {baseline.id} failed: {outcome.error} (see {out}/configs/{baseline.id}"
                               "/failed.json)")
        scored = pd.read_parquet(result_dir(out, baseline.id) / "per_query.parquet").columns
        if spec.primary_metric not in scored:  # a span metric on a dataset without reference spans, say
            raise ConfigError(f"primary_metric {spec.primary_metric!r} is not scored on {spec.dataset} (it scores: "
                              f"{', '.join(c for c in scored if '@' in c or c in ('map', 'mrr'))})")

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=spec.name, storage=study_storage(out / "study.log"), load_if_exists=True, direction="maximize",
            sampler=_sampler(spec), pruner=_pruner(spec))
        _requeue_interrupted(study)
        done = [t for t in study.trials if t.state.is_finished() and not interrupted(t)]
        todo = max(0, trials - len(done))
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=todo, desc=f"tune {spec.name}", unit="trial")
        for _ in range(todo):
            trial = study.ask()
            error = _trial(trial, study, spec, space, dataset, splitter, ws, out)
            if error:
                failed.append(error)
            atomic_write_text(out / "trials.csv", trials_table(study).to_csv(index=False))  # watchable as it runs
            if bar is not None:
                bar.update(1)
                finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
                bar.set_postfix(best=f"{max(t.value for t in finished):.4f}" if finished else "-",
                                pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials))
        if bar is not None:
            bar.close()
        table = trials_table(study)
        atomic_write_text(out / "trials.csv", table.to_csv(index=False))  # also when there was nothing left to run

        chosen = _choose(out, spec)
        if chosen != baseline.id and not _has_test_rows(out, chosen, splitter):
            cfg = RagConfig.from_yaml(out / "configs" / chosen / "config.yaml")
            outcome = run_one(spec, cfg, out, "papermill", home, again=True)  # all queries, through the notebook
            if outcome.status == "failed":
                failed.append(f"{chosen} on the test queries: {outcome.error}")
        collect(out)
        from ragtune.experiments.tracking import log_sweep_results

        log_sweep_results(out, spec.name, spec.tracking.mode, spec.tracking.project)
        return TuneReport(out, table, chosen, failed)


def _trial(trial, study, spec: SweepSpec, space, dataset: Dataset, splitter: Splitter, ws: Workspace,
           out: Path) -> str | None:
    """Draw, evaluate rung by rung on dev queries, tell the study. Returns an error message when the config crashed."""
    from optuna.trial import TrialState

    try:
        drawn = space.suggest(trial, spec.base_config())
        cfg = spec.base_config().with_overrides(drawn).model_copy(update={"name": f"{spec.name}/trial-{trial.number}"})
    except ConfigError as exc:  # a combination the configuration rejects: recorded, and the search goes on
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=TrialState.FAIL)
        return f"trial {trial.number}: {exc}"
    trial.set_user_attr("config_id", cfg.id)
    folder = out / "configs" / cfg.id
    existing = result_dir(out, cfg.id) / "per_query.parquet"
    if existing.is_file():  # drawn before (or the baseline): its dev score is already known
        scores = pd.read_parquet(existing)
        dev = scores.loc[scores.index.intersection(splitter.dev), spec.primary_metric]
        trial.set_user_attr("queries", list(dev.index))
        trial.set_user_attr("repeat", True)
        study.tell(trial, float(dev.mean()))
        return None
    write_config(folder, cfg)
    (folder / "pruned.json").unlink(missing_ok=True)
    engine = Engine(cfg, ws)
    parts, scored = [], 0
    try:
        for size in splitter.sizes:
            parts.append(evaluate(cfg, dataset.subset(splitter.dev[scored:size]), ws, engine=engine))
            scored = size
            value = float(pd.concat([p.per_query[spec.primary_metric] for p in parts]).mean())
            trial.set_user_attr("queries", splitter.dev[:scored])
            trial.report(value, scored)
            if size != splitter.sizes[-1] and trial.should_prune():
                from ragtune.experiments.tracking import log_eval

                run = log_eval(combine(parts), out, spec.name, spec.tracking.mode, spec.tracking.project,
                               tags=("pruned",))  # a W&B run too, with the share of the dev queries it was scored on
                atomic_write_text(folder / "pruned.json", json.dumps(
                    {"config_id": cfg.id, "trial": trial.number, "queries": scored, spec.primary_metric: value,
                     "wandb_run": run}))
                study.tell(trial, state=TrialState.PRUNED)
                return None
        record(combine(parts), folder, spec.name, spec.tracking.mode, spec.tracking.project)
    except Exception as exc:  # a crashed configuration is recorded and the search goes on
        error = f"{type(exc).__name__}: {exc}"
        atomic_write_text(folder / "failed.json", json.dumps(
            {"config_id": cfg.id, "trial": trial.number, "error": error, "traceback": traceback.format_exc()}))
        trial.set_user_attr("error", error)
        study.tell(trial, state=TrialState.FAIL)
        return f"trial {trial.number} ({cfg.id}): {error}"
    study.tell(trial, value)
    return None


def interrupted(trial) -> bool:
    """A trial cut off by a kill (failed with no error of its own); it does not count towards ``--trials``."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and "error" not in trial.user_attrs


def trials_table(study) -> pd.DataFrame:
    rows = [{"trial": t.number, "state": "interrupted" if interrupted(t) else t.state.name.lower(), "value": t.value,
             "queries": len(t.user_attrs.get("queries", [])), "config_id": t.user_attrs.get("config_id"),
             "repeat": bool(t.user_attrs.get("repeat")), "error": t.user_attrs.get("error"),
             **{f"param.{k}": v for k, v in t.params.items()}}
            for t in study.trials]
    return pd.DataFrame(rows)


def _choose(out: Path, spec: SweepSpec) -> str:
    """The configuration the comparison chooses on the dev queries (the winner, or the baseline)."""
    from ragtune.experiments.compare import compare
    from ragtune.experiments.sweep import read_results

    summary, results = read_results([out])
    return compare(summary, results, spec.primary_metric, spec.baseline_config().id).chosen


def _has_test_rows(out: Path, config_id: str, splitter: Splitter) -> bool:
    scores = pd.read_parquet(result_dir(out, config_id) / "per_query.parquet")
    return bool(scores.index.isin(splitter.test).any())


def _requeue_interrupted(study) -> None:
    """Trials left running by a killed process: marked failed (without the ``error`` a crashed configuration
    records: see :func:`interrupted`), their draws queued again."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params)


def study_storage(path: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _sampler(spec: SweepSpec):
    import optuna

    settings = spec.tune
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=settings.startup_trials)


def _pruner(spec: SweepSpec):
    import optuna

    if spec.tune.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=spec.tune.startup_trials, n_warmup_steps=0)


class folder_lock:
    """One ``tune`` per folder at a time (a second would race for the study's trials)."""

    def __init__(self, out: Path):
        self.path = out / ".tune.lock"

    def __enter__(self):
        self.handle = open(self.path, "w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise RagtuneError(f"{self.path.parent}: another `ragtune tune` is running on this folder") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
