"""Answer evaluation on msmarco: throughput of the offline answer metrics, and how they judge real distractors.

    python benchmarks/answer_eval.py

1. Throughput: extractive answers for every judged query (vector search, MiniLM), scored offline (faithfulness,
   hallucination, relevance, context precision/utilisation); queries per second, cold (nothing cached) and warm
   (the embedding cache holds the sentences).
2. Distractors: for each query, a claim that *is* in its context (the first sentence of its best-graded
   passage) and a claim that is not (the first sentence of the best-ranked passage judged at most "related, does
   not answer", grade <= 1, or not judged: on the same topic, but not the context). The context is the best
   passage alone. Reports how often each is flagged unsupported: a check of the support rule on data it was not
   written against.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import dataset_path, machine
from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.engine import Engine
from ragtune.evaluation.run import evaluate
from ragtune.workspace import Workspace
from ragtune.evaluation.answers import AnswerScorer
from ragtune.text import split_sentences
from ragtune.types import Answer, Hit


def main() -> None:
    ds = load_dataset(dataset_path("msmarco"))
    config = RagConfig.from_dict({"retrieval": {"mode": "vector"}, "generation": {"backend": "extractive"}})
    retrieval_only = RagConfig.from_dict({"retrieval": {"mode": "vector"}})
    print(f"# {machine()}; msmarco ({len(ds.documents)} passages, {len(ds.judged())} judged queries), "
          f"config {config.id}")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        evaluate(retrieval_only, ds, ws)  # index and query vectors first: what follows times the answers only
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            res = evaluate(config, ds, Workspace(ws.home))
            total = time.perf_counter() - t0
            gen = res.per_query["generate_ms"].sum() / 1000
            s = res.summary
            print(f"{label}: {len(res.per_query)} queries in {total:.1f} s (answer generation {gen:.1f} s): "
                  f"{len(res.per_query) / total:.1f} queries/s end to end; faithfulness {s['faithfulness']:.3f}, "
                  f"hallucination {s['hallucination']:.3f}, answer relevance {s['answer_relevance']:.3f}, "
                  f"context precision {s['context_precision']:.3f}")

        engine = Engine(retrieval_only, Workspace(ws.home))
        table, _ = engine.index(ds.corpus)
        retriever, scorer = engine.retriever(table), AnswerScorer(engine.embedder)
        docs = {d.id: d.text for d in ds.documents}
        flagged = {"supported": 0, "distractor": 0}
        n = 0
        for q in ds.judged():
            judged = ds.qrels[q.id]
            relevant = sorted((d for d, g in judged.items() if g >= 2 and d in docs), key=lambda d: -judged[d])
            other = next((h.doc_id for h in retriever.search(q.text, 50).documents(50)
                          if judged.get(h.doc_id, 0) <= 1), None)
            if not relevant or other is None:
                continue
            context = [Hit(f"{relevant[0]}#0", relevant[0], 1.0, 1, docs[relevant[0]])]
            for kind, source in (("supported", docs[relevant[0]]), ("distractor", docs[other])):
                claim = split_sentences(source)[0]
                row = scorer.score(q.text, Answer(claim), context)
                flagged[kind] += row["hallucination"] == 1.0
            n += 1
        print(f"distractors: {n} queries; claims from the context flagged unsupported {flagged['supported'] / n:.1%}, "
              f"claims from the best non-relevant passage flagged {flagged['distractor'] / n:.1%}")


if __name__ == "__main__":
    main()
