"""Sweeps: expand a spec into configurations, run each through the evaluation notebook (papermill) or in process,
and collect every per-query score into one Parquet table.

Layout of a sweep folder::

    spec.yaml                    the spec as run
    configs/<config id>/         one folder per configuration
        config.yaml
        notebook.ipynb           the executed notebook (papermill runner)
        result/                  metrics.json, per_query.parquet, ... (written atomically: present means complete)
        failed.json              the error and traceback of a configuration that crashed
    results.parquet              per-query scores of every completed configuration (long format)
    summary.parquet, summary.csv one row per configuration: parameters, status, mean metrics, latency

A rerun skips configurations whose ``result/`` exists, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragtune.config import RagConfig, flatten, format_validation_error, read_yaml, stable_hash
from ragtune.data import load_dataset, resolve_dataset
from ragtune.engine import Engine
from ragtune.errors import ConfigError, RagtuneError
from ragtune.evaluation.run import evaluate
from ragtune.experiments.on_ray import Resources
from ragtune.experiments.space import SearchSpace, TuneSettings
from ragtune.experiments.splits import QuerySplit
from ragtune.workspace import Workspace, atomic_write_text

#: the notebook each configuration runs through; it ships inside the package, so a sweep runs from any folder
DEFAULT_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "evaluate_config.py"


class TrackingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["offline", "online", "disabled"] | None = Field(
        None, description="W&B mode; default: $WANDB_MODE, else online when $WANDB_API_KEY is set, else offline"
    )
    project: str = "ragtune"


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.\-]+$")
    dataset: str = Field(..., description="a dataset folder, or 'sample' for the shipped sample corpus")
    split: str = "test"
    queries: int | None = Field(None, ge=1, description="evaluate only the first N judged queries")
    base: dict[str, Any] = Field(default_factory=dict, description="the RagConfig every entry starts from")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values; the product is run")
    configs: list[dict[str, Any]] = Field(default_factory=list, description="explicit entries: dotted overrides")
    baseline: dict[str, Any] = Field(default_factory=dict, description="dotted overrides of base; default: base")
    metrics: list[str] | None = None
    primary_metric: str = "ndcg@10"
    query_split: QuerySplit | None = Field(None, description="choose on dev queries, report on held-out test queries")
    space: dict[str, Any] | None = Field(None, description="ragtune tune: dotted key -> values or a range "
                                         "(ragtune.experiments.space)")
    tune: TuneSettings = TuneSettings()
    resources: Resources = Field(Resources(), description="--ray: what each configuration's task holds on its node")
    notebook: str | None = Field(None, description="per-config notebook; default the shipped evaluate_config.py")
    tracking: TrackingSpec = TrackingSpec()

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid):
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid key {key!r} needs a non-empty list of values")
        return grid

    # -- loading ------------------------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> SweepSpec:
        data = read_yaml(path, "sweep spec")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping")
        try:
            spec = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, str(path))) from None
        spec.check(source=str(path))
        return spec

    @classmethod
    def of_folder(cls, folder: Path) -> SweepSpec | None:
        """The spec a sweep folder was run with (its ``spec.yaml``), or None when it has none."""
        path = Path(folder) / "spec.yaml"
        return cls.model_validate(read_yaml(path, "sweep spec")) if path.is_file() else None

    def with_overrides(self, source: str = "sweep spec", **changes: Any) -> SweepSpec:
        """A validated copy with top-level fields replaced (``None`` values are ignored)."""
        data = {**self.model_dump(mode="json"), **{k: v for k, v in changes.items() if v is not None}}
        try:
            spec = SweepSpec.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, source)) from None
        spec.check(source)
        return spec

    def check(self, source: str = "sweep spec") -> None:
        """Everything that can be checked before any work: configs, metrics, dataset, notebook."""
        configs = self.expand(source)
        base = self.base_config(source)
        if self.primary_metric not in base.quality_metrics + base.span_metrics:
            raise ConfigError(f"{source}: primary_metric {self.primary_metric!r} is not among the metrics "
                              f"{list(base.quality_metrics)} (answer metrics need a generation section in the base "
                              f"config), nor a span metric ({', '.join(base.span_metrics[:3])}...: datasets with "
                              "reference spans)")
        if not configs and self.space is None:
            raise ConfigError(f"{source}: the sweep is empty (give grid values, configs, or a search space)")
        if self.space is not None:
            self.search_space(source)
        self.dataset_path(source)
        if not self.notebook_path().is_file():
            raise ConfigError(f"{source}: notebook {self.notebook_path()} not found")

    def search_space(self, source: str = "sweep spec") -> SearchSpace:
        if self.space is None:
            raise ConfigError(f"{source}: no search space (add a space: section, see ragtune.experiments.space)")
        return SearchSpace.parse(self.space, self.base_config(source), source)

    def dataset_path(self, source: str = "sweep spec") -> Path:
        path = resolve_dataset(self.dataset)
        if not path.is_dir():
            raise ConfigError(f"{source}: dataset {self.dataset!r} not found (no folder {path.resolve()})")
        return path

    def notebook_path(self) -> Path:
        return Path(self.notebook) if self.notebook else DEFAULT_NOTEBOOK

    # -- expansion ----------------------------------------------------------------------------------------------
    def base_config(self, source: str = "sweep spec") -> RagConfig:
        base = dict(self.base)
        if self.metrics is not None:
            base.setdefault("evaluation", {})
            base["evaluation"] = {**base["evaluation"], "metrics": self.metrics}
        return RagConfig.from_dict(base, source=f"{source}: base")

    def _entry(self, overrides: dict[str, Any], source: str, what: str) -> RagConfig:
        overrides = dict(overrides)
        given = overrides.pop("name", None)  # an entry may name itself; otherwise its overrides name it
        label = str(given) if given else " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in overrides.items()) or "base"
        try:
            cfg = self.base_config(source).with_overrides(flatten(overrides))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {what} {label}: {str(exc).split(': ', 1)[-1]}") from None
        return cfg.model_copy(update={"name": f"{self.name}/{label}"})

    def baseline_config(self, source: str = "sweep spec") -> RagConfig:
        return self._entry(self.baseline, source, "baseline")

    def expand(self, source: str = "sweep spec") -> list[RagConfig]:
        """Every configuration of the sweep, the baseline included, without repeats (by config id)."""
        entries: list[RagConfig] = []
        if self.grid:
            keys = list(self.grid)
            for values in itertools.product(*self.grid.values()):
                entries.append(self._entry(dict(zip(keys, values)), source, "grid entry"))
        for i, overrides in enumerate(self.configs, 1):
            if not isinstance(overrides, dict):
                raise ConfigError(f"{source}: configs[{i}] must be a mapping of overrides")
            entries.append(self._entry(overrides, source, f"configs[{i}]"))
        if entries:
            entries.append(self.baseline_config(source))
        unique: dict[str, RagConfig] = {}
        for cfg in entries:
            unique.setdefault(cfg.id, cfg)
        return list(unique.values())


def shard(configs: list[RagConfig], index: int, count: int) -> list[RagConfig]:
    """Shard ``index`` (1-based) of ``count``: configs ordered by id, dealt round-robin. The same on every runner."""
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {index}/{count}: expected 1 <= i <= n")
    ordered = sorted(configs, key=lambda c: c.id)
    return ordered[index - 1 :: count]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, for example 2/4") from None
    return i, n


# -- running one configuration ---------------------------------------------------------------------------------


def result_dir(out: Path, config_id: str) -> Path:
    return out / "configs" / config_id / "result"


def run_config(
    config_yaml: str,
    dataset: str,
    out_dir: str,
    split: str = "test",
    queries: int | None = None,
    home: str | None = None,
    sweep: str | None = None,
    tracking_mode: str | None = None,
    project: str = "ragtune",
):
    """Evaluate one configuration and write its result folder; what the sweep notebook calls, and the in-process
    runner too. Returns the ``EvalResult``."""
    cfg = RagConfig.from_dict(yaml.safe_load(config_yaml), source="config")
    ds = load_dataset(dataset, split, queries)
    ws = Workspace(Path(home)) if home else Workspace.default()
    return record(evaluate(cfg, ds, ws), out_dir, sweep, tracking_mode, project)


def record(result, out_dir: str | Path, sweep: str | None = None, tracking_mode: str | None = None,
           project: str = "ragtune"):
    """Plot an evaluation, log it to W&B and write ``<out_dir>/result`` (the last step: present means complete)."""
    from ragtune.experiments.plots import plot_eval
    from ragtune.experiments.tracking import log_eval

    out = Path(out_dir)
    images = plot_eval(result, out / "plots")
    # runs land in <sweep folder>/wandb/ (or <out_dir>/wandb/ outside a sweep)
    run_id = log_eval(result, out.parent.parent if sweep else out, group=sweep, mode=tracking_mode, project=project,
                      images=images)
    if run_id:
        result.extra["wandb_run"] = run_id
    result.write(out / "result")
    return result


@dataclass
class Outcome:
    config_id: str
    status: Literal["done", "skipped", "failed"]
    seconds: float = 0.0
    error: str = ""


def run_one(spec: SweepSpec, cfg: RagConfig, out: Path, runner: str, home: Path | None,
             again: bool = False) -> Outcome:
    """Run one configuration into its folder, unless it has a result (``again``: replace that result)."""
    folder = out / "configs" / cfg.id
    if not again and (result_dir(out, cfg.id) / "metrics.json").is_file():
        return Outcome(cfg.id, "skipped")
    write_config(folder, cfg)
    params = {
        "config_yaml": cfg.to_yaml(),
        "dataset": str(spec.dataset_path().resolve()) if spec.dataset != "sample" else "sample",
        "out_dir": str(folder.resolve()),
        "split": spec.split,
        "queries": spec.queries,
        "home": str(home.resolve()) if home else None,
        "sweep": spec.name,
        "tracking_mode": spec.tracking.mode,
        "project": spec.tracking.project,
    }
    start = time.perf_counter()
    try:
        if runner == "papermill":
            _execute_notebook(spec.notebook_path(), folder / "notebook.ipynb", params)
        else:
            run_config(**params)
    except Exception as exc:  # a crashed configuration is recorded and the sweep goes on

        error = f"{type(exc).__name__}: {exc}"
        atomic_write_text(folder / "failed.json", json.dumps(
            {"config_id": cfg.id, "error": error, "traceback": traceback.format_exc()}, indent=1))
        return Outcome(cfg.id, "failed", time.perf_counter() - start, error)
    return Outcome(cfg.id, "done", time.perf_counter() - start)


def write_config(folder: Path, cfg: RagConfig) -> None:
    """A configuration's folder, ready to run: its config.yaml, no failure record from an earlier try."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "failed.json").unlink(missing_ok=True)
    (folder / "config.yaml").write_text(f"# config id: {cfg.id}\n{cfg.to_yaml()}", encoding="utf-8")


def _execute_notebook(source: Path, output: Path, params: dict) -> None:
    import jupytext
    import papermill

    from ragtune.lab import kernel_env

    env = kernel_env()  # the kernel must be this environment's interpreter, with ragtune's quiet kernel spec
    os.environ["PATH"], os.environ["JUPYTER_PATH"] = env["PATH"], env["JUPYTER_PATH"]
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    # the kernel starts in the configuration's folder (nbclient's resources path); papermill's own ``cwd`` would
    # os.chdir this whole process, which the other workers' threads share: interleaved, they left it in a config's
    # folder, where every relative path (the default workspace .ragtune among them) then resolved
    papermill.execute_notebook(notebook, str(output), parameters=params, progress_bar=False,
                               kernel_name="python3", resources={"metadata": {"path": str(output.parent)}})


# -- the sweep -------------------------------------------------------------------------------------------------


@dataclass
class SweepReport:
    out: Path
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def run_sweep(
    spec: SweepSpec,
    out: str | Path | None = None,
    workers: int = 1,
    shard_of: tuple[int, int] = (1, 1),
    runner: Literal["papermill", "inprocess"] = "papermill",
    home: Path | None = None,
    progress: bool = True,
    on_done: Callable[[Outcome], None] | None = None,
    ray: str | None = None,
) -> SweepReport:
    """Run the spec's configurations into ``out`` (``workers`` at a time on this machine, or as tasks on the Ray
    cluster at ``ray``: ``auto``, an address, or ``local``), then collect their results."""
    spec.check()
    if not spec.expand():
        raise ConfigError(f"sweep {spec.name}: no grid or configs to run; the spec has a search space: run "
                          "`ragtune tune` on it")
    out = Path(out) if out else Path("experiments") / "out" / spec.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    configs = shard(spec.expand(), *shard_of)
    report = SweepReport(out)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(configs), desc=f"sweep {spec.name}", unit="config")
    for outcome in _outcomes(spec, configs, out, runner, home, workers, ray):
        report.outcomes.append(outcome)
        if on_done:
            on_done(outcome)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(done=report.count("done"), skipped=report.count("skipped"), failed=report.count("failed"))
    if bar is not None:
        bar.close()
    collect(out)
    from ragtune.experiments.tracking import log_sweep_results

    log_sweep_results(out, spec.name, spec.tracking.mode, spec.tracking.project)
    return report


def _outcomes(spec: SweepSpec, configs: list[RagConfig], out: Path, runner: str, home: Path | None, workers: int,
              ray: str | None) -> Iterator[Outcome]:
    """Each configuration's outcome, as it completes."""
    if ray is not None:
        yield from _on_ray(spec, configs, out, runner, home, ray)
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(run_one, spec, cfg, out, runner, home) for cfg in configs]
        for fut in as_completed(futures):
            yield fut.result()


def build_table(config_yaml: str, dataset: str, split: str, queries: int | None, home: str | None) -> str:
    """Build (or find) one configuration's table; the error as text instead of raised: the configurations that
    search the table then fail on their own, each with its failure record."""
    try:
        cfg = RagConfig.from_dict(yaml.safe_load(config_yaml), source="config")
        ws = Workspace(Path(home)) if home else Workspace.default()
        Engine(cfg, ws).index(load_dataset(dataset, split, queries).corpus)
    except Exception as exc:  # noqa: BLE001 - reported by the configurations' own tasks
        return f"{type(exc).__name__}: {exc}"
    return ""


def _on_ray(spec: SweepSpec, configs: list[RagConfig], out: Path, runner: str, home: Path | None,
            address: str) -> Iterator[Outcome]:
    """``ragtune.experiments.on_ray``: a task per configuration, after one task per table they share."""
    from ragtune.experiments.on_ray import MAX_RETRIES, run_tasks

    todo = []
    for cfg in configs:
        if (result_dir(out, cfg.id) / "metrics.json").is_file():
            yield Outcome(cfg.id, "skipped")
        else:
            todo.append(cfg)
    if not todo:
        return
    # workers do not share the driver's working directory: every path they get is absolute
    dataset = str(spec.dataset_path().resolve()) if spec.dataset != "sample" else "sample"
    spec = spec.model_copy(update={"dataset": dataset, "notebook": str(spec.notebook_path().resolve())})
    out, home = out.resolve(), home.resolve() if home else None
    tables = {stable_hash(c.index_settings): (build_table, (c.to_yaml(), dataset, spec.split, spec.queries,
                                                            str(home) if home else None)) for c in todo}
    calls = [(run_one, (spec, c, out, runner, home), stable_hash(c.index_settings)) for c in todo]
    for i, outcome, lost in run_tasks(address, calls, spec.resources, tables):
        if lost is not None:
            cfg = todo[i]
            error = f"{type(lost).__name__}: lost {MAX_RETRIES + 1} times on the cluster: {lost}"
            (out / "configs" / cfg.id).mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "configs" / cfg.id / "failed.json",
                              json.dumps({"config_id": cfg.id, "error": error}, indent=1))
            outcome = Outcome(cfg.id, "failed", 0.0, error)
        yield outcome


# -- collecting results ------------------------------------------------------------------------------------------


def read_results(folders: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, per-query) over the sweep folders given; a configuration found twice is read once."""
    summary_rows, per_query = [], []
    seen = set()
    for folder in folders:
        folder = Path(folder)
        if not (folder / "configs").is_dir():
            raise RagtuneError(f"{folder}: not a sweep folder (no configs/ inside)")
        spec = SweepSpec.of_folder(folder)
        split = spec.query_split if spec is not None else None
        for cdir in sorted(p for p in (folder / "configs").iterdir() if p.is_dir()):
            if cdir.name in seen or not (cdir / "config.yaml").is_file():
                continue
            cfg = RagConfig.from_yaml(cdir / "config.yaml")
            row: dict[str, Any] = {"config_id": cfg.id, "name": cfg.name, "folder": str(folder)}
            row.update({f"param.{k}": v for k, v in flatten(cfg.model_dump(mode="json")).items()
                        if k != "name" and not isinstance(v, list)})
            metrics_path = cdir / "result" / "metrics.json"
            if metrics_path.is_file():
                seen.add(cdir.name)
                meta = json.loads(metrics_path.read_text())
                row.update(status="done", wandb_run=meta.get("wandb_run"), **meta["metrics"])
                pq = pd.read_parquet(cdir / "result" / "per_query.parquet").reset_index()
                pq.insert(0, "config_id", cfg.id)
                if split is not None:  # which queries choose the winner, and which report it
                    pq["split"] = pq["query_id"].map(split.assign(pq["query_id"]))
                per_query.append(pq)
            elif (cdir / "pruned.json").is_file():  # a tune trial stopped early: its score on the queries it saw
                pruned = json.loads((cdir / "pruned.json").read_text())
                row.update(status="pruned", pruned_queries=pruned["queries"],
                           pruned_score=pruned[spec.primary_metric] if spec else None)
            elif (cdir / "failed.json").is_file():
                row.update(status="failed", error=json.loads((cdir / "failed.json").read_text())["error"])
            else:
                row.update(status="incomplete")
            summary_rows.append(row)
    summary = pd.DataFrame(summary_rows)
    if not summary.empty:  # a config completed in one folder wins over a failed copy in another
        summary = summary.sort_values("status", key=lambda s: s != "done").drop_duplicates("config_id")
    results = pd.concat(per_query, ignore_index=True) if per_query else pd.DataFrame()
    return summary.reset_index(drop=True), results


def collect(out: Path, folders: list[Path] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``results.parquet`` and ``summary.parquet``/``.csv`` into ``out`` (atomically, each file)."""
    summary, results = read_results(folders or [out])
    out.mkdir(parents=True, exist_ok=True)
    for frame, name in ((results, "results.parquet"), (summary, "summary.parquet")):
        tmp = out / f".{name}.{os.getpid()}.tmp"
        frame.to_parquet(tmp)
        os.replace(tmp, out / name)
    tmp = out / f".summary.csv.{os.getpid()}.tmp"
    summary.to_csv(tmp, index=False)
    os.replace(tmp, out / "summary.csv")
    return summary, results


def merge(folders: list[Path], out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copy the configuration folders of several sweep folders (the shards of one sweep) into ``out``, then collect."""
    import shutil

    out = Path(out)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    for folder in map(Path, folders):
        if not (folder / "configs").is_dir():
            raise RagtuneError(f"{folder}: not a sweep folder (no configs/ inside)")
        if (folder / "spec.yaml").is_file() and not (out / "spec.yaml").is_file():
            shutil.copy2(folder / "spec.yaml", out / "spec.yaml")
        for cdir in (folder / "configs").iterdir():
            target = out / "configs" / cdir.name
            complete = (cdir / "result" / "metrics.json").is_file()
            if complete and not (target / "result" / "metrics.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(cdir, target)
            elif not target.exists():
                shutil.copytree(cdir, target)
    return collect(out)
