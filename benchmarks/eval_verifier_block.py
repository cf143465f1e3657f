"""`ragtune eval` with the verifier: answers scored a block at a time (``ANSWER_BLOCK``, the verifier reading all the
block's pairs in one call) against one answer at a time, on the sample's judged questions.

    python benchmarks/eval_verifier_block.py

Extractive answers, ``evaluation.verifier=minilm-nli``; the index and embeddings are built first (warm), each timed
run gets a cold verdict cache of its own, so every pair is computed once in each. Prints seconds per evaluation,
answers/s and the mean faithfulness (which must not move).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import machine
from ragtune.config import RagConfig
from ragtune.data import load_dataset, sample_dataset_path
from ragtune.evaluation import run
from ragtune.workspace import Workspace


def main() -> None:
    ds = load_dataset(sample_dataset_path())
    config = RagConfig.from_dict({"generation": {"backend": "extractive"}, "evaluation": {"verifier": "minilm-nli"}})
    print(f"# {machine()}; sample ({len(ds.judged())} judged questions), config {config.id}")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        run.evaluate(config.with_overrides({"evaluation.verifier": None}), ds, Workspace(home / "warm"))
        for i, block in enumerate((1, run.ANSWER_BLOCK) * 2):
            run.ANSWER_BLOCK = block
            workspace = Workspace(home / "warm")
            workspace.__dict__["pair_scores"] = Workspace(home / f"verdicts-{i}").pair_scores  # cold verdicts
            start = time.perf_counter()
            result = run.evaluate(config, ds, workspace)
            seconds = time.perf_counter() - start
            print(f"block {block:>2}: {seconds:.1f} s, {len(result.per_query) / seconds:.2f} answers/s, "
                  f"faithfulness {result.summary['faithfulness']:.4f}", flush=True)


if __name__ == "__main__":
    main()
