"""The ``ragtune`` command line. Each command parses its options and calls library functions; nothing more."""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ragtune.errors import ConfigError, RagtuneError


def _fail(exc: RagtuneError) -> None:
    typer.secho(f"error: {exc}", err=True, fg="red")
    raise typer.Exit(2)


class _App(typer.Typer):
    """Typer with the one error handler: a RagtuneError from any command is printed as ``error: ...`` (it says what
    is wrong and where) and exits with status 2, with no traceback."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def deco(fn):
            @functools.wraps(fn)
            def run(*a, **kw):
                try:
                    return fn(*a, **kw)
                except RagtuneError as exc:
                    _fail(exc)

            register(run)
            return fn

        return deco


app = _App(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Measure, compare and promote retrieval-augmented generation configurations on LanceDB.",
)
console = Console(width=None if sys.stdout.isatty() else 160)

ConfigOpt = typer.Option(None, "--config", "-c", help="RagConfig YAML (defaults when omitted)")
SetOpt = typer.Option(None, "--set", "-s", help="override a config value: KEY=VALUE, e.g. chunking.size=512")
HomeOpt = typer.Option(None, "--home", help="workspace folder for caches and indexes [env RAGTUNE_HOME, .ragtune]")
DbOpt = typer.Option(None, "--db", help="LanceDB URI [env RAGTUNE_DB, <home>/lancedb]")


def load_config(path: Optional[Path], overrides: Optional[list[str]]):
    from ragtune.config import RagConfig

    config = RagConfig.from_yaml(path) if path else RagConfig()
    if overrides:
        pairs = key_values(overrides, "--set", "chunking.size=512")
        config = config.with_overrides({key: yaml.safe_load(value) for key, value in pairs.items()})
    return config


def key_values(items: Optional[list[str]], option: str, example: str) -> dict[str, str]:
    """``KEY=VALUE`` options as a dict; a malformed one is an error naming the option and an example."""
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE (for example {option} {example})")
        pairs[key.strip()] = value
    return pairs


def _workspace(home: Optional[Path], db: Optional[str]):
    from ragtune.workspace import Workspace

    ws = Workspace.default()
    return Workspace(home or ws.home, db or ws.db_uri)


def metrics_table(summary: dict[str, float], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in summary.items():
        table.add_row(name, f"{value:.2f}" if name.endswith("_ms") else f"{value:.4f}")
    return table


@app.command("eval")
def eval_cmd(
    dataset: str = typer.Option(..., "--dataset", "-d", help="BEIR-format folder, a folder with docs/, 'sample', "
                                "or a question/answer set (.jsonl ours, .json llama-index LabelledRagDataset)"),
    corpus: Optional[str] = typer.Option(None, "--corpus", help="for a question/answer set: the documents it is "
                                         "about (default: its contexts)"),
    config: Optional[Path] = ConfigOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for metrics, per-query scores, run, config"),
    split: str = typer.Option("test", help="qrels split: qrels/<split>.tsv"),
    queries: Optional[int] = typer.Option(None, help="evaluate only the first N judged queries"),
    set_: Optional[list[str]] = SetOpt,
    home: Optional[Path] = HomeOpt,
    db: Optional[str] = DbOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Index a dataset with a configuration, run its queries and score them against the judgments."""
    from ragtune.data import load_dataset
    from ragtune.evaluation.run import evaluate

    cfg = load_config(config, set_)
    ds = load_dataset(dataset, split, queries, corpus)
    result = evaluate(cfg, ds, _workspace(home, db), progress=not quiet)
    if out:
        result.write(out)
    console.print(f"{ds.name} · {cfg.name or 'config'} ({cfg.id}) · {result.extra['queries']} queries",
                  highlight=False)
    unjudged = result.extra["queries_without_judgments"]
    if unjudged:
        console.print(f"{unjudged} of {len(ds.queries)} queries have no relevance judgment and are not scored",
                      highlight=False)
    console.print(metrics_table(result.summary))
    idx = result.index
    emb = result.embedding
    console.print(
        f"index {idx.table}: {idx.chunks} chunks from {idx.documents} documents "
        f"({'built' if idx.built else 'reused'}); texts embedded by the model: {emb.computed}, "
        f"found in the cache: {emb.requested - emb.computed}", highlight=False
    )
    _warn_truncated(idx)
    pairs = result.extra.get("rerank")
    if pairs:
        console.print(f"re-ranked pairs scored by the model: {pairs['scored_by_model']}, found in the cache: "
                      f"{pairs['pairs'] - pairs['scored_by_model']}", highlight=False)
    gen = result.extra.get("generation")
    if gen:
        console.print(f"answers: {gen['backend']} (prompt {gen['prompt']}), {gen['degraded_answers']} degraded"
                      + (f", {gen['judge_calls']} judge calls" if "judge_calls" in gen else ""), highlight=False)
    for metric in (cfg.evaluation.metrics[0], *(["faithfulness"] if gen else [])):
        for _, row in result.slices(metric).query("flagged").iterrows():
            console.print(f"[red]slice below the rest[/]: {row['key']}={row['value']} ({row['queries']} queries) "
                          f"{metric} {row['mean']:.4f} vs {row['rest_mean']:.4f} (Holm p {row['p_holm']:.4f})")
    if out:
        console.print(f"wrote {out}/ (metrics.json, per_query.csv and .parquet, run.trec, config.yaml"
                      + (", answers.jsonl" if gen else "") + ", slices.csv where queries carry metadata)")
    else:
        console.print("nothing saved (--out DIR writes the metrics, per-query scores and run)", style="dim")


@app.command()
def index(
    corpus: str = typer.Option(..., "--corpus", help="BEIR folder, corpus.jsonl, a folder of documents, or 'sample'"),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    home: Optional[Path] = HomeOpt,
    db: Optional[str] = DbOpt,
    ray: Optional[str] = typer.Option(None, "--ray", help="chunk and embed on a Ray cluster (Ray Data): auto "
                                      "(ray start), an address, or local (needs the ray extra)"),
) -> None:
    """Build (or reuse) the LanceDB table for a corpus under a configuration's chunking and embedder."""
    from ragtune.data import load_corpus
    from ragtune.engine import Engine

    cfg = load_config(config, set_)
    engine = Engine(cfg, _workspace(home, db), progress=True)
    steps = None
    if ray:
        from ragtune.cluster import steps_on_ray

        steps = steps_on_ray(ray, cfg, engine.workspace)
    _, info = engine.index(load_corpus(corpus, stream=True), steps)
    state = "built" if info.built else "up to date"
    console.print(f"{info.table}: {info.chunks} chunks from {info.documents} documents, {state} ({info.seconds:.1f} s)"
                  + (f"; {info.flagged} flagged as possible prompt injection (`ragtune flagged`)" if info.flagged
                     else ""))
    _warn_truncated(info)


def _warn_truncated(info) -> None:
    if info.truncated:
        console.print(f"{info.truncated} of {info.chunks} chunks are longer than the embedder reads: the rest of each "
                      "is not in its vector (chunking.tokenizer: embedder sizes chunks in the model's tokens)",
                      style="yellow")


def _table_for(engine, corpus: Optional[str]):
    """The index of ``corpus`` under the engine's config (built if need be), else the last one built with its
    chunking and embedding settings."""
    from ragtune.data import load_corpus

    if corpus:
        return engine.index(load_corpus(corpus, stream=True))[0]
    entry = engine.workspace.latest_index_for(engine.config)
    if entry is None:
        raise ConfigError("no index matches this config's chunking and embedding settings yet: "
                          "pass --corpus PATH (or run `ragtune index` or `ragtune eval` first)")
    return engine.open_table(entry["key"])


@app.command()
def search(
    query: str = typer.Argument(..., help="the question or keywords"),
    config: Optional[Path] = ConfigOpt,
    corpus: Optional[str] = typer.Option(None, "--corpus", help="corpus to search [the last one indexed with these settings]"),
    k: Optional[int] = typer.Option(None, "-k", help="results to show [retrieval.top_k]"),
    chunks: bool = typer.Option(False, "--chunks", help="list chunks rather than documents"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines"),
    set_: Optional[list[str]] = SetOpt,
    home: Optional[Path] = HomeOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Search an index with a configuration's retrieval (and re-ranking) settings."""
    from ragtune.engine import Engine

    cfg = load_config(config, set_)
    engine = Engine(cfg, _workspace(home, db))
    table = _table_for(engine, corpus)
    k = k or cfg.retrieval.top_k
    result = engine.retriever(table).search(query, k)
    hits = result.chunks(k) if chunks else result.documents(k)
    if as_json:
        for h in hits:
            print(json.dumps({"rank": h.rank, "doc_id": h.doc_id, "chunk_id": h.chunk_id, "score": h.score,
                              "start": h.start, "end": h.end, "text": h.text}))
        return
    table_out = Table(title=f"{query!r} · {cfg.retrieval.mode} · {sum(result.timings_ms.values()):.0f} ms")
    for col in ("#", "document", "score", "text"):
        table_out.add_column(col, overflow="fold")
    for h in hits:
        snippet = " ".join(h.text.split())
        table_out.add_row(str(h.rank), h.doc_id, f"{h.score:.4f}", snippet[:160] + ("…" if len(snippet) > 160 else ""))
    console.print(table_out)


@app.command("flagged")
def flagged_cmd(
    config: Optional[Path] = ConfigOpt,
    corpus: Optional[str] = typer.Option(None, "--corpus", help="corpus whose index to list [the last one indexed "
                                         "with these settings]"),
    published: bool = typer.Option(False, "--published", help="the production table the service answers from"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines"),
    set_: Optional[list[str]] = SetOpt,
    home: Optional[Path] = HomeOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """List the chunks that the injection scan flagged when they were indexed (kept from generators)."""
    from ragtune import store
    from ragtune.engine import Engine

    ws = _workspace(home, db)
    if published:
        from ragtune.production.publish import open_published

        table = open_published(ws)
    else:
        table = _table_for(Engine(load_config(config, set_), ws), corpus)
    rows = store.flagged(table)
    if as_json:
        for r in rows:
            print(json.dumps({"chunk_id": r["id"], "doc_id": r["doc_id"], "score": round(r["injection_score"], 4),
                              "reasons": r["injection_reasons"].split(", "), "text": r["text"]}))
        return
    out = Table(title=f"{table.name}: {len(rows)} of {table.count_rows()} chunks flagged as possible prompt injection")
    for col in ("chunk", "score", "reasons", "text"):
        out.add_column(col, overflow="fold")
    for r in rows:
        snippet = " ".join(r["text"].split())
        out.add_row(r["id"], f"{r['injection_score']:.3f}", r["injection_reasons"], snippet[:160])
    console.print(out)


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="sweep spec YAML (experiments/*.yaml)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="sweep folder [experiments/out/<name>]"),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="configurations run in parallel"),
    shard: str = typer.Option("1/1", "--shard", help="run shard i of n: the grid split the same way on every runner"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="override the spec's dataset"),
    queries: Optional[int] = typer.Option(None, help="override: only the first N judged queries"),
    in_process: bool = typer.Option(False, "--in-process", help="call the evaluation directly, not via papermill"),
    ray: Optional[str] = typer.Option(None, "--ray", help="run each configuration as a task on a Ray cluster: auto "
                                      "(ray start), an address, or local (needs the ray extra)"),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Run every configuration of a sweep spec (resumable), then collect results.parquet and summary.parquet."""
    from ragtune.experiments.sweep import SweepSpec, parse_shard, run_sweep

    sweep_spec = SweepSpec.from_yaml(spec).with_overrides(str(spec), dataset=dataset, queries=queries)
    report = run_sweep(sweep_spec, out, workers, parse_shard(shard), "inprocess" if in_process else "papermill",
                       home or _workspace(None, None).home, ray=ray)
    counts = {s: report.count(s) for s in ("done", "skipped", "failed")}
    console.print(f"sweep {sweep_spec.name} shard {shard}: {counts['done']} run, {counts['skipped']} already complete, "
                  f"{counts['failed']} failed -> {report.out}/results.parquet")
    for o in report.outcomes:
        if o.status == "failed":
            console.print(f"  [red]failed[/] {o.config_id}: {o.error} (see {report.out}/configs/{o.config_id}/failed.json)")
    if shard == "1/1" and counts["done"] + counts["skipped"]:
        from ragtune.experiments.leaderboard import compare_sweeps

        try:
            comp, plots = compare_sweeps([report.out], track=False)
        except RagtuneError as exc:  # the baseline failed, say: the runs are kept; say why there is no leaderboard
            console.print(f"no leaderboard: {exc}", highlight=False)
        else:
            print_comparison(comp, plots)
    if counts["failed"]:
        raise typer.Exit(1)


@app.command()
def tune(
    spec: Path = typer.Argument(..., help="spec YAML with a space: section (experiments/search.yaml)"),
    trials: int = typer.Option(30, "--trials", "-n", min=1, help="finished trials the study should hold (resumes)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="study folder [experiments/out/<name>]"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="override the spec's dataset"),
    queries: Optional[int] = typer.Option(None, help="override: only the first N judged queries"),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Search the spec's space with Optuna (TPE, pruning on growing shares of the dev queries), then score the
    chosen configuration on the held-out test queries through the evaluation notebook. Rerun to resume."""
    from ragtune.experiments.sweep import SweepSpec
    from ragtune.experiments.tune import run_tune

    sweep_spec = SweepSpec.from_yaml(spec).with_overrides(str(spec), dataset=dataset, queries=queries)
    report = run_tune(sweep_spec, out, trials, home or _workspace(None, None).home)
    console.print(f"tune {sweep_spec.name}: {len(report.trials)} trials, {report.count('complete')} complete, "
                  f"{report.count('pruned')} pruned, {report.count('fail')} failed"
                  + (f", {report.count('interrupted')} cut off by a kill and drawn again" if report.count('interrupted')
                     else "") + f" -> {report.out}/trials.csv",
                  highlight=False)
    for error in report.failed:
        console.print(f"  [red]failed[/] {error}", highlight=False)
    from ragtune.experiments.leaderboard import compare_sweeps

    comp, plots = compare_sweeps([report.out], track=False)
    print_comparison(comp, plots, limit=10)
    drawn = report.params(comp.chosen)
    if drawn:
        console.print(f"chosen {comp.table.loc[comp.chosen, 'name']}: "
                      + ", ".join(f"{k} {v}" for k, v in drawn.items()), highlight=False)


@app.command()
def merge(
    folders: list[Path] = typer.Argument(..., help="sweep folders to join (the shards of one sweep)"),
    out: Path = typer.Option(..., "--out", "-o", help="the merged sweep folder"),
) -> None:
    """Join the folders of a sharded sweep into one."""
    from ragtune.experiments.sweep import merge as merge_folders

    summary, _ = merge_folders(folders, out)
    console.print(f"{out}: {int((summary['status'] == 'done').sum())} completed configurations")


@app.command("compare")
def compare_cmd(
    folders: list[Path] = typer.Argument(..., help="one sweep folder, or several (shards)"),
    metric: Optional[str] = typer.Option(None, help="metric to compare [the spec's primary metric]"),
    baseline: Optional[str] = typer.Option(None, help="baseline config id [the spec's baseline]"),
    test: str = typer.Option("randomization", help="paired test: randomization | t-test"),
    alpha: float = typer.Option(0.05, help="significance level after Holm's correction"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="where leaderboard and plots go [<sweep>/compare]"),
) -> None:
    """Leaderboard with bootstrap intervals, paired significance tests against the baseline, Holm-corrected."""
    from ragtune.experiments.leaderboard import compare_sweeps

    comp, plots = compare_sweeps(folders, metric, baseline, test, alpha, out)
    print_comparison(comp, plots)


def print_comparison(comp, plots: dict[str, Path], limit: int | None = None) -> None:
    """The leaderboard: configurations by name (id beside), best mean first, and the verdict. ``limit``: only the
    best N rows, and the baseline's."""
    queries = int(comp.table["queries"].max()) if len(comp.table) else 0
    held = comp.held_out
    console.print(f"{comp.metric} on {queries} {'dev ' if held else ''}queries · baseline "
                  f"{comp.table.loc[comp.baseline, 'name']} ({comp.baseline}) · {comp.test}, Holm-corrected"
                  + (" · test: held-out queries, not used to choose" if held else ""), highlight=False)
    table = Table()
    columns = ["config", "id", "mean", "95% CI", "delta", "p (Holm)", "d", "p95 ms"]
    for col in columns + (["test mean", "test 95% CI"] if held else []):
        table.add_column(col, justify="left" if col in ("config", "id") else "right")
    shown = comp.table if limit is None else comp.table[
        (comp.table.reset_index().index < limit) | comp.table["baseline"].to_numpy()]
    for cid, row in shown.iterrows():
        mark = " (baseline)" if row["baseline"] else (" *" if row["significant"] else "")
        cells = [str(row["name"]).split("/", 1)[-1] + mark, cid, f"{row['mean']:.4f}",
                 f"{row['ci_low']:.3f}-{row['ci_high']:.3f}", f"{row['delta']:+.4f}",
                 "" if row["baseline"] else f"{row['p_holm']:.4f}", f"{row['effect_size']:.2f}",
                 f"{row['latency_p95_ms']:.1f}"]
        if held:
            cells += ["", ""] if math.isnan(row["test_mean"]) else [  # a tune's trials: scored on dev queries only
                f"{row['test_mean']:.4f}", f"{row['test_ci_low']:.3f}-{row['test_ci_high']:.3f}"]
        table.add_row(*cells)
    console.print(table)
    if len(shown) < len(comp.table):
        console.print(f"({len(comp.table) - len(shown)} more rows in leaderboard.csv)", highlight=False)
    console.print(comp.verdict(), highlight=False)
    if plots:
        console.print(f"wrote leaderboard.csv, verdict.txt and {len(plots)} plots to {next(iter(plots.values())).parent}",
                      highlight=False)


@app.command()
def promote(
    folder: Path = typer.Argument(..., help="a sweep folder (experiments/out/<name>)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the decision and the diff, write nothing"),
    alpha: float = typer.Option(0.05, help="significance level"),
    test: str = typer.Option("randomization", help="paired test: randomization | t-test"),
    margin: Optional[float] = typer.Option(None, help="how much worse on the primary metric (absolute) may be "
                                                       "shown and still count as good as production, so that a faster "
                                                       "configuration replaces it [default: 0.01]"),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Freeze a sweep's winner as the production config (only if it beats the current one), with provenance and a
    regression test."""
    from ragtune.production import RELEASE_DIR
    from ragtune.production.promote import project_regression_test
    from ragtune.production.promote import promote as run_promote

    regression_test = project_regression_test()
    decision = run_promote(folder, dry_run, alpha, test, regression_test=regression_test,
                           workspace=_workspace(home, None), margin=margin)
    console.print(decision.reason, highlight=False)
    if decision.diff:
        console.print(decision.diff, highlight=False, markup=False)
    if decision.written:
        p = decision.provenance
        console.print(f"promoted {p['config_id']} as release v{p['version']}: {RELEASE_DIR}", highlight=False)
        console.print(f"regression test: {regression_test}" if regression_test else
                      "no regression test written: not in a project folder with a tests/ folder", highlight=False)
    elif decision.promote:
        console.print("dry run: nothing written")


@app.command()
def lab(
    port: int = typer.Option(8888, help="port to serve on"),
    ip: str = typer.Option("localhost", "--ip", help="interface to listen on (0.0.0.0: every interface)"),
    token: Optional[str] = typer.Option(None, "--token", help="the access token [a random one, printed]"),
    no_token: bool = typer.Option(False, "--no-token", help="no token: anyone who reaches the port gets a shell"),
    no_browser: bool = typer.Option(False, "--no-browser", help="do not open a browser"),
) -> None:
    """Open JupyterLab on the project's notebooks (jupytext: the .py notebooks open as notebooks)."""
    import os

    from ragtune.lab import kernel_env, lab_command, notebooks_folder

    if no_token and token is not None:
        raise ConfigError("--token and --no-token: give one of them")
    if no_token and ip not in ("localhost", "127.0.0.1", "::1"):
        typer.secho(f"warning: --no-token on {ip}: anyone who can reach port {port} can run code as you", err=True,
                    fg="yellow")
    folder = notebooks_folder()
    program, argv = lab_command(port, no_browser, folder, ip=ip, token="" if no_token else token)
    os.execvpe(program, argv, kernel_env(home=folder.parent / ".ragtune"))


@app.command("config")
def config_cmd(
    config: Optional[Path] = typer.Argument(None, help="RagConfig YAML (defaults when omitted)"),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """Validate a configuration and print it fully resolved, with its id."""
    cfg = load_config(config, set_)
    sys.stdout.write(f"# config id: {cfg.id}\n{cfg.to_yaml()}")


@app.command()
def guard(
    prompts: Path = typer.Argument(..., help='JSONL, one {"text": ...} per line'),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL verdicts, same order: flagged, score, reasons"),
    detector: str = typer.Option("ngram", help="ngram (rules + shipped classifier) | rules | hf:<local folder>"),
    threshold: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="flag from this score on "
                                              "[default: the detector's own]"),
) -> None:
    """Check texts for prompt injection with the detector the service uses."""
    from ragtune.detectors.batch import guard_file

    summary = guard_file(prompts, out, detector, threshold, progress=sys.stderr.isatty())
    console.print(f"{summary['flagged']} of {summary['rows']} flagged ({summary['detector']}, threshold "
                  f"{summary['threshold']:.3f}) -> {out}")


@app.command()
def judge(
    answers: Path = typer.Argument(..., help='JSONL, one {"question", "contexts": [...], "answer"} per line'),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL verdicts, same order: hallucinated, score, "
                             "faithfulness, claims"),
    verifier: Optional[str] = typer.Option(None, help="minilm-nli: the shipped NLI adapter, blended with the "
                                           "embedding heuristic; hf-nli:<folder>: a local Hugging Face NLI model "
                                           "decides each claim [default: the config's evaluation.verifier, else the "
                                           "embedding heuristic of ragtune eval]"),
    threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="hallucinated from this score on (0.5: any claim "
                                    "unsupported, as in ragtune eval)"),
    config: Optional[Path] = ConfigOpt,
    overrides: Optional[list[str]] = SetOpt,
    home: Optional[Path] = HomeOpt,
) -> None:
    """Check answers against their contexts with the offline scorer of `ragtune eval` (the config's embedder)."""
    from ragtune.detectors.batch import judge_file
    from ragtune.engine import Engine

    overrides = [*(overrides or []), *([f"evaluation.verifier={verifier}"] if verifier else [])]
    engine = Engine(load_config(config, overrides), _workspace(home, None))
    summary = judge_file(answers, out, engine.answer_scorer, progress=sys.stderr.isatty(), threshold=threshold)
    console.print(f"{summary['hallucinated']} of {summary['rows']} answers hallucinated (mean score "
                  f"{summary['mean_score']:.3f}) -> {out}")


pipeline_app = _App(no_args_is_help=True, help="The production pipeline (pipeline.yaml): status and scheduling.")
app.add_typer(pipeline_app, name="pipeline")
RepoOpt = typer.Option(Path("."), "--repo", help="the repo root holding pipeline.yaml")


@pipeline_app.command("status")
def pipeline_status(
    home: Optional[Path] = HomeOpt,
    out: Path = typer.Option(Path("runs/production"), "--out", help="the pipeline's product folder (env.yaml: out)"),
    corpus: Optional[str] = typer.Option(None, "--corpus", help="check this corpus against the last ingest: exit "
                                         "3 when the index is stale (documents changed since)"),
) -> None:
    """What is published, how fresh the last ingest was, and (with --corpus) whether the index is stale."""
    from ragtune.production.publish import published

    record = published(_workspace(home, None))
    if record is None:
        console.print("nothing published yet: run `ploomber build`")
        raise typer.Exit(1)
    console.print(f"published: {record['table']} v{record['version']} (release v{record.get('release')}, config "
                  f"{record.get('config_id')}) at {record['published_at']}", highlight=False)
    ingested = out / "ingest.json"
    if ingested.is_file():
        fresh = json.loads(ingested.read_text(encoding="utf-8"))
        console.print(f"last ingest: {fresh['documents']} documents, {fresh['added']} added, {fresh['changed']} "
                      f"changed, {fresh['removed']} removed, oldest ingested {fresh['oldest_document_ingested_at']}",
                      highlight=False)
    if corpus is not None:
        from ragtune.production.pipeline import stale

        is_stale = stale(corpus, ingested)
        if is_stale:
            console.print(f"stale: {corpus} has changed since the last ingest; run `ploomber build`")
            raise typer.Exit(3)
        console.print(f"fresh: {corpus} is what was last ingested")


@pipeline_app.command("schedule")
def pipeline_schedule(
    cron: Optional[str] = typer.Option(None, "--cron", help='crontab schedule, e.g. "0 2 * * *" (02:00 daily)'),
    install: bool = typer.Option(False, "--install", help="add the entry to your crontab (replacing an earlier one)"),
    systemd: Optional[Path] = typer.Option(None, "--systemd", help="write a systemd service and timer into this folder"),
    on_calendar: str = typer.Option("*-*-* 02:00:00", help="systemd OnCalendar= for --systemd"),
    repo: Path = RepoOpt,
    home: str = typer.Option(".ragtune", "--home", help="workspace (env.yaml: home), holds the build lock"),
) -> None:
    """Run `ploomber build` on a schedule: print (or --install) a crontab entry, or write systemd units."""
    from ragtune.production import schedule as sched

    repo = repo.resolve()
    if systemd is not None:
        for name, text in sched.systemd_units(on_calendar, repo, home).items():
            systemd.mkdir(parents=True, exist_ok=True)
            (systemd / name).write_text(text, encoding="utf-8")
            console.print(f"wrote {systemd / name}")
        console.print("enable: copy them to ~/.config/systemd/user/ and run "
                      "`systemctl --user enable --now ragtune-pipeline.timer`")
        return
    if cron is None:
        raise ConfigError("give --cron SCHEDULE (crontab) or --systemd FOLDER")
    entry = sched.cron_entry(cron, repo, home)
    if install:
        sched.install_cron(entry, repo)
        console.print("installed in your crontab:")
    sys.stdout.write(entry + "\n")


@pipeline_app.command("export-airflow")
def pipeline_export_airflow(
    out: Path = typer.Option(..., "--out", "-o", help="the DAG file to write (into Airflow's dags/ folder)"),
    cron: Optional[str] = typer.Option(None, "--cron", help="the DAG's schedule (crontab syntax); none: manual"),
    repo: Path = RepoOpt,
    env: Optional[list[str]] = typer.Option(None, "--env", help="KEY=VALUE: a pipeline.yaml placeholder for every "
                                            "task (corpus, dataset, home, release, out, tracking); repeatable"),
) -> None:
    """An Airflow DAG running each Ploomber task as one operator, wired like pipeline.yaml."""
    from ragtune.workspace import atomic_write_text
    from ragtune.production.schedule import airflow_dag

    values = key_values(env, "--env", "corpus=/data/docs")
    atomic_write_text(out, airflow_dag(repo.resolve(), cron, env=values))
    console.print(f"wrote {out}")


# -- the query path -------------------------------------------------------------------------------------------

SettingsOpt = typer.Option(None, "--settings", help="service settings YAML (rate limit, review rules, generation)")


def _service(home: Optional[Path], settings: Optional[Path]):
    from ragtune.service.core import QueryService, load_settings

    return QueryService(_workspace(home, None), load_settings(settings))


@app.command()
def query(
    question: str = typer.Argument(..., help="the question"),
    home: Optional[Path] = HomeOpt,
    settings: Optional[Path] = SettingsOpt,
    as_json: bool = typer.Option(False, "--json", help="print the whole response as JSON"),
) -> None:
    """Answer one question from the published production index, with citations (audited like a served request)."""
    response = _service(home, settings).ask(question, client_id="cli")
    if as_json:
        sys.stdout.write(json.dumps(response, indent=1, ensure_ascii=False) + "\n")
    elif response["status"] in ("answered", "degraded"):
        console.print(response["answer"], highlight=False, markup=False)
        for c in response["citations"]:
            console.print(f"  [{c['n']}] {c['doc_id']}: {c['snippet']}", highlight=False, markup=False)
        if response.get("notice"):
            console.print(f"[yellow]{response['notice']}[/]")
    else:
        console.print(f"{response['status']}: {response['reason']}", highlight=False, markup=False)
    console.print(f"request {response['request_id']} ({response['latency_ms']['total']:.0f} ms)", style="dim")
    if response["status"] not in ("answered", "degraded", "pending_review"):
        raise typer.Exit(1)


@app.command()
def serve(
    port: int = typer.Option(8080, help="port"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    home: Optional[Path] = HomeOpt,
    settings: Optional[Path] = SettingsOpt,
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="server processes, up to one per core (the rate "
                                "limit and the answer cache are then shared through SQLite)"),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="one line per request on stdout"),
) -> None:
    """Serve the published production configuration over HTTP: POST /query, GET /health, GET /review/{id}."""
    import os

    import uvicorn

    from ragtune.service.app import create_app, listening_socket

    service = _service(home, settings)
    service.warm()  # fail now, not at the first request, when nothing is published; load the models
    if not service.settings.anonymous and not service.keys.active():
        typer.secho("warning: no API key exists, so every /query will be refused (401): create one with "
                    "`ragtune keys create NAME`, or set `anonymous: true` in the settings", err=True, fg="yellow")
    pub = service.current().record
    release = f", release v{pub['release']}" if pub.get("release") else ""
    console.print(f"serving {pub['table']} version {pub['version']} (config {pub.get('config_id')}{release}) from "
                  f"{service.workspace.home} on http://{host}:{port} with {workers} "
                  f"worker{'s' if workers > 1 else ''}: POST /query, GET /health; audit log in "
                  f"{service.workspace.home / 'audit'}; Ctrl-C stops", highlight=False, soft_wrap=True)
    # uvicorn at info: start-up, one access line per request, shutdown
    logs = {"log_level": "info", "access_log": access_log}
    if workers == 1:
        uvicorn.run(create_app(service), host=host, port=port, **logs)
    else:
        os.environ["RAGTUNE_HOME"] = str(service.workspace.home)
        os.environ["RAGTUNE_SERVICE_WORKERS"] = str(workers)
        if settings:
            os.environ["RAGTUNE_SERVICE_SETTINGS"] = str(settings.resolve())
        sock = listening_socket(host, port)
        uvicorn.run("ragtune.service.app:from_environment", factory=True, fd=sock.fileno(), workers=workers, **logs)
    console.print("stopped", highlight=False)


keys_app = _App(no_args_is_help=True, help="API keys of the query service (stored hashed in the workspace).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(name: str = typer.Argument(..., help="who the key is for: the identity in rate limits and audits"),
                home: Optional[Path] = HomeOpt) -> None:
    """Create a key and print it, once: only its hash is kept."""
    from ragtune.service.keys import KeyStore

    key = KeyStore(_workspace(home, None).home / "keys.sqlite").create(name)
    print(key)
    typer.secho(f"key for {name!r}: shown this once; send it as 'Authorization: Bearer <key>'", err=True)


@keys_app.command("list")
def keys_list(home: Optional[Path] = HomeOpt) -> None:
    """The keys by name, when they were created and revoked (never the keys themselves)."""
    from ragtune.service.keys import KeyStore

    for k in KeyStore(_workspace(home, None).home / "keys.sqlite").list():
        state = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
        print(f"{k['name']}\tcreated {k['created_at']}\t{state}")


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="the key's name"), home: Optional[Path] = HomeOpt) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    from ragtune.service.keys import KeyStore

    KeyStore(_workspace(home, None).home / "keys.sqlite").revoke(name)
    console.print(f"revoked {name}")


review_app = _App(no_args_is_help=True, help="The human-review queue of held-back answers.")
app.add_typer(review_app, name="review")


@review_app.command("list")
def review_list(status: str = typer.Option("pending", help="pending | approved | rejected | all"),
                home: Optional[Path] = HomeOpt) -> None:
    """Answers waiting for (or past) review."""
    from ragtune.service.review import ReviewQueue

    items = ReviewQueue(_workspace(home, None).home / "reviews.sqlite").list(None if status == "all" else status)
    table = Table(title=f"reviews ({status})", title_justify="left")
    for col in ("id", "created", "status", "question", "reasons"):
        table.add_column(col)
    for r in items:
        table.add_row(r["id"], r["created_at"], r["status"], r["question"][:60], "; ".join(r["reasons"]))
    console.print(table)


def _decide(review_id: str, approve: bool, note: str, reviewer: str, home: Optional[Path]) -> None:
    from ragtune.service.core import QueryService

    decision = QueryService(_workspace(home, None)).decide(review_id, approve, reviewer, note)
    console.print(f"review {review_id}: {decision['status']} by {reviewer}")


NoteOpt = typer.Option("", "--note", help="why")
ReviewerOpt = typer.Option(None, "--reviewer", help="who decides [$USER]")


@review_app.command("approve")
def review_approve(review_id: str, note: str = NoteOpt, reviewer: Optional[str] = ReviewerOpt,
                   home: Optional[Path] = HomeOpt) -> None:
    """Release a held answer (the caller fetches it at GET /review/ID)."""
    import os

    _decide(review_id, True, note, reviewer or os.environ.get("USER", "unknown"), home)


@review_app.command("reject")
def review_reject(review_id: str, note: str = NoteOpt, reviewer: Optional[str] = ReviewerOpt,
                  home: Optional[Path] = HomeOpt) -> None:
    """Reject a held answer."""
    import os

    _decide(review_id, False, note, reviewer or os.environ.get("USER", "unknown"), home)


audit_app = _App(no_args_is_help=True, help="The audit log of the query path.")
app.add_typer(audit_app, name="audit")


@audit_app.command("show")
def audit_show(request_id: str, home: Optional[Path] = HomeOpt) -> None:
    """What the model saw when it answered: the request's record, with the text of every chunk it was given
    (read back from the table version it was served from, and checked against the recorded hash)."""
    from ragtune.service.audit import AuditLog, seen_chunks

    ws = _workspace(home, None)
    damaged = []
    mine = [r for r in AuditLog(ws.home / "audit").records(damaged) if r.get("request_id") == request_id]
    for place in damaged:
        typer.secho(f"warning: {place}: damaged audit line, skipped", err=True, fg="yellow")
    record = next((r for r in mine if not r.get("event")), None)
    if record is None:
        raise RagtuneError(f"no audit record for request {request_id} in {ws.home / 'audit'}")
    chunks, events = seen_chunks(ws.db, record), [r for r in mine if r.get("event")]
    sys.stdout.write(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    for c in chunks:
        flag = "" if c["unchanged"] else " [red]TEXT CHANGED[/]"
        console.print(f"--- {c['chunk_id']} (score {c['score']:.4f}){flag}")
        console.print(c["text"], highlight=False, markup=False)
    for e in events:
        console.print(f"{e['time']} {e['event']}: {e.get('status')} by {e.get('reviewer')} {e.get('note', '')}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
