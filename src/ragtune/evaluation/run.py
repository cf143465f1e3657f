"""Evaluation of one configuration on a dataset: every judged query through the engine, retrieval metrics against
the judgments (and span metrics where the dataset has reference spans), answers and their scores when the
configuration generates, summaries, and the files a run writes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ragtune import store
from ragtune.config import RagConfig, stable_hash
from ragtune.data import Dataset
from ragtune.embedding import EmbedStats
from ragtune.engine import Engine
from ragtune.errors import DataError
from ragtune.evaluation import evaluate_run, span_qrels, span_scores, trec_run_lines
from ragtune.evaluation.answers import ANSWER_BLOCK, claims_of
from ragtune.evaluation.slices import metadata_columns, slice_report
from ragtune.generation import add_usage, cost_usd
from ragtune.text import split_sentences
from ragtune.types import Answer, Hit, IndexInfo
from ragtune.workspace import Workspace, atomic_write_dir


@dataclass
class EvalResult:
    config: RagConfig
    dataset: str
    summary: dict[str, float]
    per_query: pd.DataFrame
    run: dict[str, list[str]]  # document ids per query, best first
    hits: dict[str, list[Hit]]  # chunk hits per query, best first
    index: IndexInfo
    embedding: EmbedStats
    extra: dict = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)  # generated answers per query (with generation)

    def to_json(self) -> dict:
        return {
            "config_id": self.config.id,
            "config_name": self.config.name,
            "dataset": self.dataset,
            "metrics": self.summary,
            "index": asdict(self.index),
            "embedding": asdict(self.embedding),
            **self.extra,
        }

    def write(self, out: str | Path) -> Path:
        """Write config, metrics, per-query scores and the TREC run into ``out`` as one atomic step."""
        out = Path(out)

        def fill(tmp: Path) -> None:
            (tmp / "config.yaml").write_text(f"# config id: {self.config.id}\n{self.config.to_yaml()}", "utf-8")
            (tmp / "metrics.json").write_text(json.dumps(self.to_json(), indent=2), "utf-8")
            self.per_query.to_csv(tmp / "per_query.csv")
            self.per_query.to_parquet(tmp / "per_query.parquet")
            (tmp / "run.trec").write_text("\n".join(trec_run_lines(self.run, self.config.id)) + "\n", "utf-8")
            if self.answers:
                (tmp / "answers.jsonl").write_text("".join(
                    json.dumps({"query_id": qid, "query": self.per_query.at[qid, "query"], "answer": a.text,
                                "citations": list(a.citations), "model": a.model, "prompt": a.prompt,
                                "usage": a.usage, "notice": a.notice}) + "\n"
                    for qid, a in self.answers.items()), "utf-8")
            slices = self.slices()
            if not slices.empty:
                slices.to_csv(tmp / "slices.csv", index=False)

        atomic_write_dir(out, fill)
        return out

    def slices(self, metric: str | None = None) -> pd.DataFrame:
        """Per-slice scores of ``metric`` (default: the first configured metric) for every metadata key of the
        queries, each flagged when significantly below the other queries."""
        return slice_report(self.per_query, metric or self.config.evaluation.metrics[0])


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else 0.0


def evaluate(config: RagConfig, dataset: Dataset, workspace: Workspace | None = None, progress: bool = False,
             table=None, engine: Engine | None = None) -> EvalResult:
    """Run every judged query of ``dataset`` through ``config`` and score the results. The index is built from the
    dataset's corpus, unless ``table`` names one already built (the production table, at the version to test).
    ``engine``: the configuration's engine, already loaded (one evaluated on several query sets in turn)."""
    engine = engine or Engine(config, workspace, progress)
    if table is None:
        table, info = engine.index(dataset.corpus)
    else:
        info = IndexInfo(table.name, table.name, stable_hash(config.index_settings), dataset.corpus.source,
                         f"{table.name}@v{table.version}", len(store.distinct(table, "doc_id")), table.count_rows(),
                         False, 0.0, store.count_flagged(table))
    retriever = engine.retriever(table)
    judged = dataset.judged()
    if not judged:
        raise DataError(f"{dataset.name}: no query has a relevance judgment (qrels) or reference span")

    depth = max(config.evaluation.depth, *config.evaluation.span_k)
    vectors = None if not config.embeds_queries else engine.embedder.embed_queries([q.text for q in judged])
    answering = engine.generator is not None
    flagged = {r["id"]: r["injection_reasons"] for r in store.flagged(table)} if answering and info.flagged else {}
    if answering:
        scorer, judge = engine.answer_scorer, engine.judge
    doc_run, chunk_run, rows, answers, answer_rows = {}, {}, [], {}, {}
    queries = judged
    if progress:
        from tqdm.auto import tqdm

        queries = tqdm(judged, desc="queries", unit="q")
    pending = []  # answered turns whose scores wait for the verifier to read a block of answers' pairs in one call

    def score_pending():
        verifier = scorer.known_verdicts([(claims_of(t.answer.text), t.context) for _, t in pending
                                          if scorer.checked(t.answer)])
        for q, t in pending:
            answer_rows[q.id] = _answer_scores(engine, scorer, judge, dataset, q, t, verifier)
        pending.clear()

    for i, q in enumerate(queries):
        turn = engine.answer_one(q.text, retriever, None if vectors is None else vectors[i], flagged=flagged)
        doc_run[q.id] = [h.doc_id for h in turn.found.documents(depth)]
        chunk_run[q.id] = turn.hits
        rows.append({"query_id": q.id, **turn.timings_ms})
        if turn.answer is not None:
            answers[q.id] = turn.answer
            pending.append((q, turn))
            if len(pending) == ANSWER_BLOCK:
                score_pending()
    if pending:
        score_pending()

    timings = pd.DataFrame(rows).set_index("query_id")
    answer_scores = pd.DataFrame.from_dict(answer_rows, orient="index") if answering else None
    timings["latency_ms"] = timings.sum(axis=1)
    scores = evaluate_run(dataset.qrels, doc_run, config.evaluation.metrics)
    parts = [scores]
    if dataset.references:
        parts.append(_span_metrics(config, dataset, table, chunk_run))
    if answer_scores is not None:
        parts.append(answer_scores)
    per_query = pd.concat([*parts, timings], axis=1).loc[[q.id for q in judged]].rename_axis("query_id")
    per_query.insert(0, "query", [q.text for q in judged])
    meta = metadata_columns(judged)
    if not meta.empty:
        per_query = per_query.join(meta)

    summary = summarize(per_query)
    extra = {"queries": len(judged), "queries_without_judgments": len(dataset.queries) - len(judged),
             "documents_skipped_empty": dataset.corpus.skipped_empty}
    if answers:
        extra["generation"] = {"backend": config.generation.backend, "prompt": engine.generator.prompt_version,
                               "degraded_answers": sum(a.degraded for a in answers.values())}
        if engine.judge is not None:
            extra["generation"]["judge_calls"] = engine.judge.calls
    pairs = getattr(engine.reranker, "stats", None)
    if pairs is not None:  # re-ranking through the pair cache: how many pairs the model scored this time
        extra["rerank"] = {"pairs": pairs.requested, "scored_by_model": pairs.computed}
    return EvalResult(config, dataset.name, summary, per_query, doc_run, chunk_run, info, engine.embedder.stats,
                      extra, answers)


def combine(parts: list[EvalResult]) -> EvalResult:
    """One result from evaluations of one configuration, through one engine, on disjoint sets of queries (a trial
    scored on a growing share of them). The engine's counters (embedding, re-ranking pairs) are cumulative: the last
    part's are the totals."""
    last = parts[-1]
    per_query = pd.concat([p.per_query for p in parts])
    return replace(last, summary=summarize(per_query), per_query=per_query,
                   run={q: v for p in parts for q, v in p.run.items()},
                   hits={q: v for p in parts for q, v in p.hits.items()},
                   answers={q: v for p in parts for q, v in p.answers.items()},
                   extra={**last.extra, "queries": len(per_query)})


#: per-query columns that are counts, not scores to average
COUNT_COLUMNS = {"claims", "unsupported_claims", "prompt_tokens", "completion_tokens", "judge_unmeasured"}


def summarize(per_query: pd.DataFrame) -> dict[str, float]:
    """Means of the scores (NaN = unmeasured, left out of the mean and counted), p50/p95 of every stage's latency,
    token and cost totals per query."""
    numeric = per_query.select_dtypes("number")
    summary = {}
    for c in numeric.columns:
        if c.endswith("_ms") or c in COUNT_COLUMNS or c == "cost_usd" or c.startswith("meta."):
            continue
        summary[c] = float(numeric[c].mean()) if numeric[c].notna().any() else float("nan")
        if numeric[c].isna().any():
            summary[f"{c}_unmeasured"] = int(numeric[c].isna().sum())
    for c in (c for c in numeric.columns if c.endswith("_ms")):
        stage = "latency" if c == "latency_ms" else c[: -len("_ms")]
        summary[f"{stage}_p50_ms"] = percentile(numeric[c], 50)
        summary[f"{stage}_p95_ms"] = percentile(numeric[c], 95)
    if "cost_usd" in numeric:
        summary["cost_per_query_usd"] = float(numeric["cost_usd"].mean())
        summary["tokens_per_query"] = float((numeric["prompt_tokens"] + numeric["completion_tokens"]).mean())
    if "judge_unmeasured" in numeric:
        summary["judge_unmeasured"] = int(numeric["judge_unmeasured"].sum())
    return summary


def _answer_scores(engine: Engine, scorer, judge, dataset: Dataset, q, turn, verifier=None) -> dict:
    """One answer's scores (against the context it was given), tokens, cost, and the chunks kept from it."""
    ans, gen = turn.answer, engine.config.generation
    row = scorer.score(q.text, ans, turn.context, dataset.qrels.get(q.id), q.answer, turn.query_vector, verifier)
    if judge is not None and not ans.degraded:
        row.update(judge.score(q.text, ans.text, split_sentences(ans.text), turn.context))
    usage = add_usage(ans.usage, turn.found.usage)  # the question's rewriting counts too
    row.update({"prompt_tokens": int(usage.get("prompt_tokens", 0)),
                "completion_tokens": int(usage.get("completion_tokens", 0)), "degraded": float(ans.degraded),
                "cost_usd": cost_usd(usage, gen), "flagged_chunks_kept_out": len(turn.kept_out)})
    return row


def _span_metrics(config: RagConfig, dataset: Dataset, table, chunk_run) -> pd.DataFrame:
    """Span recall/precision/IoU at each cut-off, and ranking metrics where a chunk overlapping a reference counts."""
    all_chunks = [(r["id"], r["doc_id"], r["start"], r["end"])
                  for r in store.read_columns(table, ["id", "doc_id", "start", "end"])]
    rows, chunk_qrels = {}, {}
    for qid, refs in dataset.references.items():
        if qid not in chunk_run:
            continue
        hits = chunk_run[qid]
        row = {}
        for k in config.evaluation.span_k:
            row.update({f"{name}@{k}": v for name, v in span_scores(hits[:k], refs).items()})
        rows[qid] = row
        chunk_qrels[qid] = span_qrels(all_chunks, refs)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    ranked = evaluate_run(chunk_qrels, {q: [h.chunk_id for h in hits] for q, hits in chunk_run.items()},
                          config.evaluation.metrics)
    return frame.join(ranked.add_prefix("chunk_"), how="outer")
