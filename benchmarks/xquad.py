"""Retrieval in other languages, on data this project did not write: XQuAD (Artetxe et al. 2020; the 240 SQuAD v1.1
dev paragraphs and their 1,190 questions, professionally translated; CC BY-SA 4.0; github.com/google-deepmind/xquad),
read as a retrieval task: each question's relevant document is its paragraph. Per language, BM25 with the English
analyser and with the analyser chosen per corpus (fts.language auto), MiniLM and multilingual-e5-small vectors, and
hybrid search with e5 and the detected analyser.

    python benchmarks/xquad.py PATH_TO_XQUAD_CHECKOUT [--languages en de es ar]   # BENCHMARKS.md, "Other languages"
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import machine

from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.evaluation.run import evaluate
from ragtune.workspace import Workspace

SETUPS = {
    "BM25 (English analyser)": {"retrieval": {"mode": "fts"}},
    "BM25 (language auto)": {"retrieval": {"mode": "fts", "fts": {"language": "auto"}}},
    "vector MiniLM": {"retrieval": {"mode": "vector"}, "embedding": {"model": "minilm"}},
    "vector multilingual-e5-small": {"retrieval": {"mode": "vector"}, "embedding": {"model": "multilingual-e5-small"}},
    "hybrid e5 + BM25 (auto)": {"retrieval": {"mode": "hybrid", "fts": {"language": "auto"}},
                                "embedding": {"model": "multilingual-e5-small"}},
}


def to_beir(source: Path, out: Path) -> Path:
    """XQuAD's SQuAD-format JSON as a BEIR folder: paragraphs as documents, questions as queries."""
    data = json.loads(source.read_text(encoding="utf-8"))["data"]
    (out / "qrels").mkdir(parents=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as corpus, \
         open(out / "queries.jsonl", "w", encoding="utf-8") as queries, \
         open(out / "qrels" / "test.tsv", "w", encoding="utf-8") as qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for a, article in enumerate(data):
            for p, paragraph in enumerate(article["paragraphs"]):
                doc = f"a{a}p{p}"
                corpus.write(json.dumps({"_id": doc, "title": "", "text": paragraph["context"]}, ensure_ascii=False)
                             + "\n")
                for qa in paragraph["qas"]:
                    queries.write(json.dumps({"_id": qa["id"], "text": qa["question"]}, ensure_ascii=False) + "\n")
                    qrels.write(f"{qa['id']}\t{doc}\t1\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("xquad", type=Path, help="a checkout of github.com/google-deepmind/xquad")
    ap.add_argument("--languages", nargs="+", default=["en", "de", "es", "ar"])
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "home")
        rows = {}
        for lang in args.languages:
            ds = load_dataset(to_beir(args.xquad / f"xquad.{lang}.json", Path(tmp) / lang))
            for name, cfg in SETUPS.items():
                t0 = time.perf_counter()
                summary = evaluate(RagConfig.from_dict(cfg), ds, ws).summary
                rows.setdefault(name, {})[lang] = round(summary["ndcg@10"], 3)
                print(f"{lang} {name}: nDCG@10 {summary['ndcg@10']:.3f} ({time.perf_counter() - t0:.0f} s)")
        print("\nnDCG@10 by language (%d paragraphs, %d questions each)" % (len(ds.documents), len(ds.judged())))
        header = ["setup", *args.languages]
        print(" | ".join(header))
        for name, by_lang in rows.items():
            print(" | ".join([name, *(f"{by_lang[lang]:.3f}" for lang in args.languages)]))


if __name__ == "__main__":
    main()
