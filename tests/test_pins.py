"""Pins of the shipped experiments: every config id (the five configs and every configuration the five sweep specs
expand to) and the retrieval results of the five configs on the sample's first QUERIES judged questions. A refactor must leave them unchanged; a
change that means to move them rewrites the pins on purpose:

    .venv/bin/python tests/test_pins.py --write
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
PINS = REPO / "tests" / "data" / "pins.json"
QUALITY = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map", "precision@10")
QUERIES = 20  # the cross-encoder config costs about a second a question on two cores


def shipped_ids() -> dict[str, str]:
    from ragtune.config import RagConfig
    from ragtune.experiments.sweep import SweepSpec

    ids = {f"configs/{p.name}": RagConfig.from_yaml(p).id for p in sorted((REPO / "experiments" / "configs").glob("*.yaml"))}
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        spec = SweepSpec.from_yaml(path)
        ids[f"{path.name}:baseline"] = spec.baseline_config(str(path)).id
        for cfg in spec.expand(str(path)):
            ids[f"{path.name}:{cfg.name}"] = cfg.id
    return ids


def run_digest(run: dict[str, list[str]]) -> str:
    """The documents each query retrieved, in order, as one hash."""
    return hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:16]


def shipped_results(workspace, sample) -> dict[str, dict]:
    from ragtune.config import RagConfig
    from ragtune.evaluation.run import evaluate

    results = {}
    for path in sorted((REPO / "experiments" / "configs").glob("*.yaml")):
        result = evaluate(RagConfig.from_yaml(path), sample, workspace)
        results[path.name] = {
            **{m: round(result.summary[m], 4) for m in QUALITY},
            "run": run_digest({q: docs[:10] for q, docs in result.run.items()}),
        }
    return results


def test_shipped_config_ids_are_pinned():
    pinned = json.loads(PINS.read_text())["ids"]
    assert shipped_ids() == pinned


def pinned_sample():
    from ragtune.data import load_dataset, sample_dataset_path

    return load_dataset(sample_dataset_path(), queries=QUERIES)


def test_shipped_config_results_on_the_sample_are_pinned(workspace):
    pinned = json.loads(PINS.read_text())["results"]
    assert shipped_results(workspace, pinned_sample()) == pinned


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    import tempfile

    from ragtune.workspace import Workspace

    with tempfile.TemporaryDirectory() as home:
        pins = {"ids": shipped_ids(), "results": shipped_results(Workspace(Path(home)), pinned_sample())}
    PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINS}: {len(pins['ids'])} ids, {len(pins['results'])} results")
